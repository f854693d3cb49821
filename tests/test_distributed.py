"""DDP through tools/train.py and tools/test.py on CPU (gloo): 2 processes, identical results."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402

from mtu_toolkit.engine import setup_safe_loading  # noqa: E402

# runs tools/train.py's own code, then has every rank dump its weights
DRIVER = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tools!r})
import train
from mmengine.runner import Runner
args = train.parse_args(sys.argv[1:])
runner = Runner.from_cfg(train.build_cfg(args))
wrapped = type(runner.model).__name__
init = {{k: v.clone() for k, v in runner.model.module.state_dict().items()}}
runner.train()
rank = dist.get_rank()
torch.save(dict(state=runner.model.module.state_dict(), init=init, wrapper=wrapped,
                world=dist.get_world_size()), f'{{args.work_dir}}/rank{{rank}}.pth')
train.finish_distributed(runner)
report_threads(f'rank {{rank}}')
"""

# runs tools/test.py's main, then says which threads the rank still has
TEST_DRIVER = """
import sys
sys.path.insert(0, {tools!r})
import test
code = test.main(sys.argv[1:])
report_threads('rank')
sys.exit(code)
"""

# prints the names of this process's threads (Linux: gloo's are gloo_tcp_loop and
# pt_gloo_runloop) in one write, as the ranks share the pipe
THREADS = """
import os
def report_threads(who):
    tasks = os.listdir('/proc/self/task')
    names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in tasks]
    os.write(1, f'{who} threads after the run: {" ".join(names)}\\n'.encode())
"""


def _check_no_gloo_threads(output):
    """Every rank reported its threads after the run, and none of them is gloo's: the process
    group was destroyed whole (a gloo thread alive at interpreter exit can abort the rank)."""
    if not os.path.isdir('/proc/self/task'):
        return
    lines = [line for line in output.splitlines() if 'threads after the run:' in line]
    assert len(lines) == 2 and not any('gloo' in line for line in lines), lines


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_ranks_agree(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'), videos=3)
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=3, val_interval=3,
                       ckpt_interval=3)
    driver = tmp_path / 'driver.py'
    driver.write_text(THREADS + DRIVER.format(tools=os.path.join(ROOT, 'tools')))
    work = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), str(driver), cfg,
         '--launcher', 'pytorch', '--work-dir', str(work)],
        cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(work / f'rank{r}.pth', weights_only=True) for r in range(2)]
    assert all(r['wrapper'] == 'MTUDistributedDataParallel' and r['world'] == 2 for r in ranks)
    setup_safe_loading()
    final = torch.load(work / 'iter_3.pth', weights_only=True)['state_dict']
    for key, value in ranks[0]['state'].items():
        assert torch.equal(value, ranks[1]['state'][key]), key
        assert torch.equal(value, final[key]), key
    # the ranks trained on different clips (the sampler splits the data by rank) for 3 x 3
    # per-frame steps: identical weights that moved from the start need the all-reduce
    moved = [k for k, v in ranks[0]['init'].items() if not torch.equal(v, ranks[0]['state'][k])]
    assert len(moved) > len(ranks[0]['init']) // 2
    assert 'Iter(train) [3/3]' in proc.stdout + proc.stderr
    # no rank may abort at exit: each one destroys its process group after the run
    assert 'terminate called' not in proc.stderr
    _check_no_gloo_threads(proc.stdout)

    # tools/test.py on two ranks: the sampler splits the clips, the metric gathers them all
    test_dir = tmp_path / 'test'
    test_driver = tmp_path / 'test_driver.py'
    test_driver.write_text(THREADS + TEST_DRIVER.format(tools=os.path.join(ROOT, 'tools')))
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
         str(test_driver), cfg, str(work / 'iter_3.pth'),
         '--launcher', 'pytorch', '--work-dir', str(test_dir), '--out-dir',
         str(tmp_path / 'frames')],
        cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'terminate called' not in proc.stderr
    _check_no_gloo_threads(proc.stdout)
    report = json.loads((test_dir / 'test_results.json').read_text())
    single = json.loads(_single_process_test(cfg, work / 'iter_3.pth', tmp_path / 'single'))
    assert [s['sequence'] for s in report['sequences']] == \
        [s['sequence'] for s in single['sequences']]
    assert report['overall']['PSNR'] == pytest.approx(single['overall']['PSNR'], abs=1e-3)
    # both ranks' frames in the one folder rank 0 named, put in place whole
    assert sorted(os.listdir(tmp_path / 'frames')) == [s['sequence'] for s in report['sequences']]
    assert all(len(os.listdir(tmp_path / 'frames' / s['sequence'])) == s['frames']
               for s in report['sequences'])
    assert not list(tmp_path.glob('frames.*'))


def _single_process_test(cfg, ckpt, work_dir):
    subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'test.py'), cfg, str(ckpt),
                    '--work-dir', str(work_dir)], env=tool_env(), check=True,
                   capture_output=True, timeout=300)
    return (work_dir / 'test_results.json').read_text()


# a stand-in for torchrun: starts one worker that sets the guard, then waits to be killed
LAUNCHER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, '-c', {worker!r}], stdout=subprocess.PIPE, text=True,
                          start_new_session=True)  # torchrun's workers have sessions of their own
print(worker.pid, worker.stdout.readline().strip(), flush=True)
time.sleep(120)
"""
WORKER = """
import signal, sys, time
from mtu_toolkit.engine.launch import stop_with_launcher
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
print('guarded' if stop_with_launcher('pytorch') else 'unguarded', flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_workers_stop_when_the_launcher_is_killed():
    # kill -9 (or the OOM killer) on torchrun forwards nothing: the workers, re-parented, kept
    # training and writing checkpoints
    launcher = subprocess.Popen([sys.executable, '-c', LAUNCHER.format(worker=WORKER)],
                                stdout=subprocess.PIPE, text=True, env=tool_env())
    try:
        pid, state = launcher.stdout.readline().split()
        assert state == 'guarded'
        pid = int(pid)
        launcher.kill()
        launcher.wait(timeout=30)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            pytest.fail('the worker outlived its launcher')
    finally:
        launcher.kill()

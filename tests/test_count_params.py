"""tools/analysis/count_params.py on the real configs, against the paper's table
(docs/network.md)."""
import glob
import os.path as osp
import runpy
import sys

import pytest
from mmengine.config import Config

from mtu_toolkit.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TABLE = {'mtu1': '0.538', 'mtu2': '1.037', 'mtu4': '2.036', 'mtu10': '5.031',
         'mtu10_l': '13.803'}


@pytest.mark.parametrize('variant', sorted(TABLE))
def test_count_params_tool_prints_paper_counts(variant, capsys, monkeypatch):
    config = osp.join(ROOT, 'configs', 'mtu', f'{variant}_dvd.py')
    monkeypatch.setattr(sys, 'argv', ['count_params.py', config])
    runpy.run_path(osp.join(ROOT, 'tools', 'analysis', 'count_params.py'), run_name='__main__')
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f'params: {TABLE[variant]}M'
    assert lines[1].startswith('training params: ')


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(ROOT, 'configs', 'mtu', '*.py'))
                                          + glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py'))))
def test_every_config_builds(config):
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mtu'
    MODELS.build(cfg.model)
    for loader in ('train_dataloader', 'test_dataloader'):
        assert DATASETS.get(cfg[loader].dataset.type) is not None


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(ROOT, 'configs', 'ablations',
                                                             '*.py'))))
def test_every_ablation_config_builds_and_runs(config):
    import torch
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(channels=8, num_blocks=1)
    model = MODELS.build(cfg.model).train()
    inputs = torch.rand(1, 6, 3, 16, 20)
    samples = dict(gt=torch.rand(1, 2, 3, 16, 20), flow=torch.zeros(1, 2, 2, 16, 20))
    losses = model(inputs, samples, mode='loss')
    assert ('loss_motion' in losses) == (cfg.model.motion_loss is not None)


def test_count_params_docstring_and_checkout_run(tmp_path):
    """The module docstring's MTU2 example is what the tool prints, run from a checkout with the
    package not installed (the editable install's finder taken away, cwd outside the repo)."""
    import subprocess
    tool = osp.join(ROOT, 'tools', 'analysis', 'count_params.py')
    code = ('import runpy, sys\n'
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            'sys.argv = sys.argv[1:]\n'
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    proc = subprocess.run([sys.executable, '-c', code, tool,
                           osp.join(ROOT, 'configs', 'mtu', 'mtu2_dvd.py')],
                          cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    with open(tool) as f:
        doc = f.read().split('"""')[1].splitlines()
    documented = [ln.split('(')[0].strip() for ln in doc if 'params:' in ln]
    assert documented == printed == ['params: 1.037M', 'training params: 1.039M']

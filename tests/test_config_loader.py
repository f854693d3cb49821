"""mtu_toolkit.engine.config_loader: checked --cfg-options and one-line errors of the tools."""
import glob
import os
import re
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402

from mtu_toolkit.checked_registry import UnknownComponentError  # noqa: E402
from mtu_toolkit.engine.config_loader import (  # noqa: E402
    ArgumentError, ConfigError, close_keys, dotted_keys, load_config, run_tool, user_error)
import prewarmed  # noqa: E402

DEMO = osp.join(ROOT, 'configs', 'demo', 'mtu2_synthetic.py')


def _load(options):
    return load_config(DEMO, options)


# ---------------------------------------------------------------------------------------------
# --cfg-options


def test_a_number_given_as_text_is_refused():
    with pytest.raises(ConfigError, match=r'train_cfg.max_iters=abc: expected a number '
                                          r'\(the config has \d+\)'):
        _load({'train_cfg.max_iters': 'abc'})
    assert _load({'train_cfg.max_iters': 9}).train_cfg.max_iters == 9


def test_existing_keys_are_set_like_mmengine_does():
    cfg = _load({'train_cfg.max_iters': 7, 'param_scheduler.0.end': 11,
                 'model.backbone.num_units': 4, 'optim_wrapper.optimizer.betas': (0.5, 0.9)})
    ref = Config.fromfile(DEMO)
    untouched = ref.param_scheduler[1].begin
    assert cfg.train_cfg.max_iters == 7
    assert cfg.param_scheduler[0].end == 11 and cfg.param_scheduler[1].begin == untouched
    assert cfg.model.backbone.num_units == 4 and cfg.model.backbone.channels == 26
    assert tuple(cfg.optim_wrapper.optimizer.betas) == (0.5, 0.9)
    # the same as mmengine's unchecked merge
    ref.merge_from_dict({'train_cfg.max_iters': 7, 'param_scheduler.0.end': 11,
                         'model.backbone.num_units': 4,
                         'optim_wrapper.optimizer.betas': (0.5, 0.9)})
    assert cfg.to_dict() == ref.to_dict()


def test_misspelt_top_level_key_names_the_real_one():
    with pytest.raises(ConfigError) as err:
        _load({'max_iters': 1})
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('--cfg-options max_iters: no such key in ')
    assert 'did you mean train_cfg.max_iters?' in msg and '+max_iters=' in msg


@pytest.mark.parametrize('key, suggestion', [
    ('train_cfg.max_iter', 'train_cfg.max_iters'),
    ('model.backbone.num_unit', 'model.backbone.num_units'),
    ('model.backbon.num_units', 'model.backbone.num_units'),
    ('lr', 'optim_wrapper.optimizer.lr'),
])
def test_misspelt_nested_keys(key, suggestion):
    with pytest.raises(ConfigError, match=f'did you mean {suggestion}[?]'):
        _load({key: 1})


def test_unknown_key_without_any_close_match():
    with pytest.raises(ConfigError) as err:
        _load({'zzz_qqq': 1})
    assert 'did you mean' not in str(err.value) and '+zzz_qqq=...' in str(err.value)


def test_plus_adds_new_keys_top_level_and_nested():
    cfg = _load({'+my_new_key': 1, '+optim_wrapper.optimizer.weight_decay': 0.01,
                 '+model.extra.deep': 'x'})
    assert cfg.my_new_key == 1
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.01
    assert cfg.optim_wrapper.optimizer.lr == 1e-3  # siblings kept
    assert cfg.model.extra == dict(deep='x')
    # '+' on an existing key just sets it
    assert _load({'+train_cfg.max_iters': 3}).train_cfg.max_iters == 3


@pytest.mark.parametrize('key, message', [
    ('param_scheduler.2.end', 'param_scheduler has 2 items (indices 0-1)'),
    ('param_scheduler.first.end', 'param_scheduler is a list: index its items by number'),
    ('train_cfg.max_iters.x',
     f'train_cfg.max_iters is {Config.fromfile(DEMO).train_cfg.max_iters} (int), not a dict'),
    ('optim_wrapper.optimizer.betas.0', 'betas is (0.9, 0.999) (tuple)'),
    ('+param_scheduler.5.end', 'param_scheduler has 2 items'),
    ('+train_cfg.max_iters.x', 'not a dict or list'),
    ('model..type', 'empty key'),
])
def test_paths_that_cannot_be_set(key, message):
    with pytest.raises(ConfigError, match='^--cfg-options .*' + message.replace('(', r'\(')
                       .replace(')', r'\)').replace('.', r'\.')):
        _load({key: 1})


@pytest.mark.parametrize('item', ["custom_hooks=[dict(type=EMAHook,momentum=0.5)]",
                                  "custom_hooks=[dict(type='EMAHook')]",
                                  "model.backbone=dict(num_units=4)", "x={'a': 1}"])
def test_a_dict_in_config_syntax_is_one_line(item, capsys):
    """mmengine's parser recursed without end on the first (RecursionError) and kept the others
    as text, which the Runner failed on later with a traceback."""
    import argparse
    from mtu_toolkit.engine.config_loader import add_cfg_options_argument
    parser = argparse.ArgumentParser(prog='train.py')
    add_cfg_options_argument(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(['--cfg-options', item])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    key = item.split('=')[0]
    assert line == (f'train.py: error: --cfg-options {item}: a dict cannot be given here (values '
                    'are numbers, text, [lists] or (tuples)); set its keys one by one '
                    f'({key}.KEY=VALUE), or write it in a config that inherits this one (_base_)')
    args = parser.parse_args(['--cfg-options', 'a=[1,(2,3)]', 'b=dictionary', 'c=x',
                              'd={}.pth', 'e=dict'])  # (filename_tmpl='{}.pth' is text)
    assert args.cfg_options == {'a': [1, (2, 3)], 'b': 'dictionary', 'c': 'x', 'd': '{}.pth',
                                'e': 'dict'}


def test_a_value_mmengine_cannot_parse_is_one_line(capsys):
    import argparse
    from mtu_toolkit.engine.config_loader import add_cfg_options_argument
    parser = argparse.ArgumentParser(prog='train.py')
    add_cfg_options_argument(parser)
    with pytest.raises(SystemExit):  # (mmengine's parser recursed without end)
        parser.parse_args(['--cfg-options', 'name=f(a,b)'])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'train.py: error: --cfg-options name=f(a,b): mmengine cannot parse this value (brackets '
        'are read as lists and tuples); set it in a config that inherits this one (_base_)')


def test_runner_arguments_are_known_even_when_the_config_leaves_them_out():
    cfg = _load({'work_dir': '/tmp/x', 'auto_scale_lr': dict(base_batch_size=8)})
    assert 'work_dir' not in Config.fromfile(DEMO)
    assert cfg.work_dir == '/tmp/x' and cfg.auto_scale_lr == dict(base_batch_size=8)


def test_dotted_keys_and_close_keys():
    keys = dotted_keys({'a': {'b': 1, 'c': [dict(d=2), 3]}, 'e': (1, 2)})
    assert keys == ['a', 'a.b', 'a.c', 'a.c.0', 'a.c.0.d', 'a.c.1', 'e']
    known = ['train_cfg.max_iters', 'train_cfg.val_interval', 'train_cfg.type', 'max_epochs']
    assert close_keys('max_iters', known) == ['train_cfg.max_iters']
    assert close_keys('train_cfg.max_iter', known) == ['train_cfg.max_iters']
    assert close_keys('nothing_like_it', known) == []


# ---------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize('text, message', [
    ('x = (\n', r'^config \S+bad\.py, line 1: syntax error: '),
    ("_base_ = ['missing_base.py']\n", r'a file it inherits from does not exist: \S+missing_base'),
    ('x = y + 1\n', r"cannot be parsed \(NameError: name 'y' is not defined\)"),
    ("custom_imports = dict(imports=['no_such_plugin_pkg'], allow_failed_imports=False)\n",
     r"custom_imports cannot be imported \(No module named 'no_such_plugin_pkg'\)"),
])
def test_bad_config_files_are_one_line(tmp_path, text, message):
    path = tmp_path / 'bad.py'
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(str(path))
    assert '\n' not in str(err.value)


def test_missing_config_and_folder(tmp_path):
    with pytest.raises(ConfigError, match=r'config \S+nope\.py does not exist$'):
        load_config(str(tmp_path / 'nope.py'))
    with pytest.raises(ConfigError, match='is not a file'):
        load_config(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# run_tool


def _raiser(exc):
    def main(argv):
        raise exc
    return main


def test_run_tool_prints_one_line_and_returns_the_code(capsys, monkeypatch):
    monkeypatch.delenv('MTU_DEBUG', raising=False)
    assert run_tool(_raiser(ConfigError('config x.py does not exist')), []) == 2
    assert capsys.readouterr().err == 'error: config x.py does not exist\n'
    assert run_tool(_raiser(ArgumentError('bad --out')), []) == 2
    assert capsys.readouterr().err == 'error: bad --out\n'
    assert run_tool(_raiser(FileNotFoundError(2, 'No such file or directory', 'a.pth')),
                    []) == 1
    assert capsys.readouterr().err == 'error: No such file or directory: a.pth\n'
    from mtu_toolkit.apis import CheckpointError
    assert run_tool(_raiser(CheckpointError('checkpoint c.pth: other')), []) == 4
    assert capsys.readouterr().err == 'error: checkpoint c.pth: other\n'
    assert run_tool(lambda argv: None, []) == 0
    assert run_tool(lambda argv: 3, []) == 3


def test_registry_error_becomes_one_line_with_the_close_match(capsys, monkeypatch):
    monkeypatch.delenv('MTU_DEBUG', raising=False)
    from mtu_toolkit.registry import MODELS
    import mtu_toolkit.models  # noqa: F401

    def main(argv):
        MODELS.build(dict(type='FANHead'))

    assert run_tool(main, []) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: 'FANHead' is not a registered model in scope 'mtu'")
    assert err[0].endswith('did you mean: FANMCHead?')
    # without a close match: the first scope's known names instead
    message, code = user_error(UnknownComponentError(
        "'Zzz' is not a registered model in scope 'mtu'.\n  known in mtu::model: A, B\n"
        "  known in mmengine::model: C"))
    assert (message, code) == ("'Zzz' is not a registered model in scope 'mtu'. known in "
                               'mtu::model: A, B', 2)
    # a scope that registers none of its own (mtu::optimizer): the first one that has names
    message, _ = user_error(UnknownComponentError(
        "'Xyz' is not a registered optimizer in scope 'mtu'.\n  known in mtu::optimizer: "
        "(none)\n  known in mmengine::optimizer: Adam, SGD"))
    assert message.endswith('. known in mmengine::optimizer: Adam, SGD')


def test_a_tool_that_is_done_ignores_ctrl_c_while_python_shuts_down():
    """After the tool's work and its last line, a Ctrl-C during Python's exit handlers printed
    a traceback; run as a script (argv None), run_tool leaves the signals ignored."""
    code = ('import signal\n'
            'from mtu_toolkit.engine.config_loader import run_tool\n'
            'assert run_tool(lambda argv: 0, []) == 0\n'
            'assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # (called in-process)\n'
            'assert run_tool(lambda argv: 3) == 3\n'
            'print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, '
            'signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)\n')
    proc = prewarmed.run([sys.executable, '-c', code], env=tool_env(), capture_output=True,
                         text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['True', 'True']


def test_debug_and_bugs_keep_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv('MTU_DEBUG', raising=False)
    with pytest.raises(ConfigError):
        run_tool(_raiser(ConfigError('x')), ['cfg.py', '--debug'])
    with pytest.raises(ConfigError):
        run_tool(_raiser(ConfigError('x')), ['cfg.py', '--deb'])  # argparse's abbreviation
    monkeypatch.setenv('MTU_DEBUG', '1')
    with pytest.raises(ConfigError):
        run_tool(_raiser(ConfigError('x')), [])
    monkeypatch.setenv('MTU_DEBUG', '0')
    assert run_tool(_raiser(ConfigError('x')), []) == 2
    for bug in (ZeroDivisionError('bug'), KeyError('k'), ValueError('v'), TypeError('t')):
        with pytest.raises(type(bug)):
            run_tool(_raiser(bug), [])
    with pytest.raises(SystemExit):  # argparse's own exit passes through
        run_tool(_raiser(SystemExit(2)), [])
    assert capsys.readouterr().err == 'error: x\n'


# ---------------------------------------------------------------------------------------------
# the tools, end to end (subprocesses: what a user sees)


def _tool(args, cwd, env=None):
    return prewarmed.run([sys.executable] + args, cwd=cwd, env=env or tool_env(),
                         capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    data = make_dvd_tree(str(root / 'data'), videos=1, frames=4)
    good = write_config(str(root / 'tiny.py'), data)
    bad_type = write_config(str(root / 'tiny_bad_type.py'), data,
                            model=dict(backbone=dict(mc_head=dict(type='FANHead'))))
    return root, good, bad_type


def _one_error_line(proc):
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err and err[-1].startswith('error: '), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return err[-1]


def test_train_refuses_a_misspelt_option_before_any_work(tiny):
    root, good, _ = tiny
    work = root / 'work_misspelt'
    proc = _tool([osp.join(ROOT, 'tools', 'train.py'), good, '--work-dir', str(work),
                  '--cfg-options', 'max_iters=1'], root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f'error: --cfg-options max_iters: no such key in {good}; did you mean '
        'train_cfg.max_iters? (to add a new key on purpose, write +max_iters=...)']
    assert not work.exists()


def test_train_unknown_type_is_one_line_and_debug_shows_the_traceback(tiny):
    root, _, bad_type = tiny
    args = [osp.join(ROOT, 'tools', 'train.py'), bad_type, '--work-dir', str(root / 'w_bad')]
    proc = _tool(args, root)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "'FANHead' is not a registered model" in line and 'did you mean: FANMCHead?' in line
    proc = _tool(args + ['--debug'], root)
    assert proc.returncode == 1
    assert 'Traceback' in proc.stderr and 'UnknownComponentError' in proc.stderr


def test_train_failing_before_training_leaves_no_log_folder(tiny, tmp_path):
    root, good, _ = tiny
    work = tmp_path / 'work'
    (work / '20200101_000000').mkdir(parents=True)  # an earlier run's log folder: kept
    (work / '20200101_000000' / '20200101_000000.log').write_text('earlier run')
    (work / 'notes.txt').write_text('mine')
    before = sorted(os.listdir(work))
    # fails building the model (in the Runner's __init__), then the dataset (in train())
    for option in ('model.backbone.mc_head.type=Nope', 'train_dataloader.dataset.type=Nope'):
        proc = _tool([osp.join(ROOT, 'tools', 'train.py'), good, '--work-dir', str(work),
                      '--cfg-options', option], root)
        assert proc.returncode == 2 and "'Nope' is not a registered" in _one_error_line(proc)
        # no <timestamp> folder of this run, nor its copy of the config
        assert sorted(os.listdir(work)) == before, option
    assert (work / '20200101_000000' / '20200101_000000.log').read_text() == 'earlier run'
    # a work dir the failed run made is gone as well; a copy of an earlier run's config stays
    fresh = tmp_path / 'fresh'
    proc = _tool([osp.join(ROOT, 'tools', 'train.py'), good, '--work-dir', str(fresh),
                  '--cfg-options', 'train_dataloader.dataset.type=Nope'], root)
    assert proc.returncode == 2 and not fresh.exists()
    (work / 'tiny.py').write_text('# the copy an earlier run wrote')
    proc = _tool([osp.join(ROOT, 'tools', 'train.py'), good, '--work-dir', str(work),
                  '--cfg-options', 'train_dataloader.dataset.type=Nope'], root)
    assert proc.returncode == 2 and sorted(os.listdir(work)) == sorted(before + ['tiny.py'])


class _FailAfterFirstIter(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        raise RuntimeError('after the first iteration')


def _tiny_runner_cfg(config, work, **options):
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work)
    cfg.merge_from_dict(options)
    return cfg


def test_training_runner_keeps_folders_it_did_not_make_or_that_trained(tiny, tmp_path):
    from mtu_toolkit.engine.runner import TrainingRunner
    from mtu_toolkit.registry import HOOKS
    root, good, _ = tiny

    class SameSecond(TrainingRunner):  # another run started in the same second
        def setup_env(self, env_cfg):
            super().setup_env(env_cfg)
            self._timestamp = '20990101_000000'

    work = tmp_path / 'same_second'
    (work / '20990101_000000').mkdir(parents=True)
    (work / '20990101_000000' / 'other.log').write_text('the other run')
    with pytest.raises(UnknownComponentError):
        SameSecond.from_cfg(_tiny_runner_cfg(good, work, **{'model.type': 'Nope'}))
    assert (work / '20990101_000000' / 'other.log').read_text() == 'the other run'
    # a run that failed in its first iteration keeps its log folder
    HOOKS.register_module(name='_FailAfterFirstIter', module=_FailAfterFirstIter, force=True)
    work = tmp_path / 'trained'
    runner = TrainingRunner.from_cfg(_tiny_runner_cfg(
        good, work, custom_hooks=[dict(type='_FailAfterFirstIter')]))
    with pytest.raises(RuntimeError, match='after the first iteration'):
        runner.train()
    assert osp.isfile(work / runner.timestamp / f'{runner.timestamp}.log')


TOOLS = sorted(osp.relpath(p, osp.join(ROOT, 'tools'))
               for p in glob.glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True))


@pytest.mark.parametrize('tool', TOOLS)
def test_ctrl_c_while_a_tool_imports_is_one_line(tool, tmp_path):
    # a torch whose import takes long: Ctrl-C arrives while the tool's modules load
    (tmp_path / 'torch').mkdir()
    (tmp_path / 'torch' / '__init__.py').write_text(
        'import os, time\nopen(os.environ["READY"], "w").close()\ntime.sleep(60)\n')
    ready = tmp_path / 'ready'
    env = dict(tool_env(), READY=str(ready),
               PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', tool)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert ready.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.split() == 'interrupted while starting; nothing done'.split(), err[-2000:]


def test_test_tool_missing_checkpoint(tiny, tmp_path):
    root, good, _ = tiny
    proc = _tool([osp.join(ROOT, 'tools', 'test.py'), good, str(tmp_path / 'none.pth')], root)
    assert proc.returncode != 0
    assert _one_error_line(proc) == f'error: checkpoint {tmp_path / "none.pth"} does not exist'


@pytest.mark.parametrize('tool', ['deblur_video', 'export'])
def test_inference_tools_unknown_type_is_one_line(tiny, tmp_path, tool):
    root, _, bad_type = tiny
    extra = ['in.mp4', str(tmp_path / 'out.mp4')] if tool == 'deblur_video' else [
        str(tmp_path / 'out.pt')]
    proc = _tool([osp.join(ROOT, 'tools', f'{tool}.py'), bad_type, 'none'] + extra, root)
    assert proc.returncode == 2
    assert 'did you mean: FANMCHead?' in _one_error_line(proc)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('options, message', [
    ({'model.backbone.num_units': 0}, 'MTUNet: num_units must be an integer >= 1, got 0'),
    ({'model.backbone.channels': -3}, 'MTUNet: channels must be an integer >= 1'),
    ({'model.backbone.mc_head.smooth': 4}, 'CorrelationMCHead: smooth must be odd'),
    ({'model.backbone.mc_head.max_displacement': -2}, 'max_displacement must be an integer'),
    ({'model.backbone.mc_head.type': 'FANMCHead'}, "unexpected keyword argument "
                                                   "'max_displacement'.*_delete_=True"),
    # a misspelt argument (added on purpose with '+', as a config file can): the one meant
    ({'+model.backbone.num_unitz': 2}, "MTUNet.__init__.. got an unexpected keyword argument "
                                       "'num_unitz'; did you mean 'num_units'\\?$"),
    ({'model.backbone.weight_init': 'normall'}, "^MTUNet: weight_init must be one of"),
    ({'model.deblur_loss.aux_reduction': 'avg'},
     "^MultiOutputDeblurLoss: aux_reduction must be 'mean' or 'sum', got 'avg'$"),
    ({'model.infer_dtype': 'fp16'}, "^MTURestorer: infer_dtype must be None"),
])
def test_component_arguments_are_one_line_at_build(options, message):
    from mtu_toolkit.registry import MODELS
    cfg = _load(options)
    with pytest.raises(Exception) as caught:
        MODELS.build(cfg.model)
    line, code = user_error(caught.value)
    assert code == 2 and re.search(message, line), line


def test_a_missing_required_argument_is_one_line():
    from mtu_toolkit.registry import TRANSFORMS
    with pytest.raises(TypeError) as caught:
        TRANSFORMS.build(dict(type='ClipRandomCrop'))
    assert user_error(caught.value) == (
        "ClipRandomCrop.__init__() missing 1 required positional argument: 'size' (the config "
        'must give it)', 2)
    # a function of ours called wrongly is a bug, not the user's: its traceback stays
    assert user_error(TypeError("helper() missing 1 required positional argument: 'x'")) is None
    assert user_error(TypeError("NotAComponent.__init__() missing 1 required positional "
                                "argument: 'x'")) is None
    try:  # a component built wrongly by the toolkit's own code, not by the registry
        from mtu_toolkit.datasets.transforms import ClipRandomCrop
        ClipRandomCrop()
    except TypeError as err:
        assert user_error(err) is None


def test_a_missing_argument_of_a_parent_constructor_is_one_line():
    """mmengine's MultiStepLR passes its arguments on to its parent's __init__, which finds
    one missing; a component that builds another one wrongly in its own __init__ is a bug."""
    import torch
    import torch.nn as nn
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    from mtu_toolkit.registry import MODELS
    wrapper = OptimWrapper(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    with pytest.raises(TypeError) as caught:
        PARAM_SCHEDULERS.build(dict(type='MultiStepLR', by_epoch=False, optimizer=wrapper))
    assert user_error(caught.value) == (
        "MultiStepParamScheduler.__init__() missing 1 required positional argument: "
        "'milestones' (the config must give it)", 2)

    @MODELS.register_module(force=True)
    class BuildsACropWrongly(nn.Module):
        def __init__(self):
            super().__init__()
            from mtu_toolkit.datasets.transforms import ClipRandomCrop
            ClipRandomCrop()

    with pytest.raises(TypeError) as caught:
        MODELS.build(dict(type='BuildsACropWrongly'))
    assert user_error(caught.value) is None

    from mtu_toolkit.models.mc_heads import CorrelationMCHead

    @MODELS.register_module(force=True)
    class CallsItsParentWrongly(CorrelationMCHead):  # the config gives feat_channels
        def __init__(self, motion_channels, feat_channels):
            super().__init__(motion_channels)

    with pytest.raises(TypeError) as caught:
        MODELS.build(dict(type='CallsItsParentWrongly', motion_channels=2, feat_channels=4))
    assert user_error(caught.value) is None


def test_an_unknown_name_in_mmengines_registries_is_one_line():
    from mmengine.registry import LOG_PROCESSORS, WEIGHT_INITIALIZERS, DefaultScope
    from mmengine.registry import MODELS as MM_MODELS
    with DefaultScope.overwrite_default_scope('mmengine'):  # (a config's default_scope)
        with pytest.raises(KeyError) as caught:
            MM_MODELS.build(dict(type='MTURestorer'))
        assert user_error(caught.value) == (
            "MTURestorer is not in the mmengine::model registry (the toolkit's components are "
            "in scope 'mtu': set default_scope='mtu')", 2)
    # our scope: a misspelt name of a registry the toolkit does not extend (its name has a
    # space), and of one it extends (the Runner's log processor: our registry's message)
    with DefaultScope.overwrite_default_scope('mtu'):
        with pytest.raises(KeyError) as caught:
            WEIGHT_INITIALIZERS.build(dict(type='Norml'))
        assert user_error(caught.value) == (
            'Norml is not in the mmengine::weight initializer registry; did you mean: '
            'Normal, TruncNormal?', 2)
        with pytest.raises(KeyError) as caught:
            LOG_PROCESSORS.build(dict(type='LogProcesor'))
        assert user_error(caught.value) == (
            "'LogProcesor' is not a registered log processor in scope 'mtu' (nor in the scopes "
            "it inherits from). did you mean: LogProcessor?", 2)


def test_optimiser_keys_of_the_two_optimiser_recipe_are_named():
    """README's '+optim_wrapper.optimizer.weight_decay' example, on the two-optimiser recipe."""
    from mtu_toolkit.engine.optim_wrappers import MTUOptimWrapperConstructor
    cfg = load_config(osp.join(ROOT, 'configs', 'mtu', 'mtu2_dvd.py'),
                      {'+optim_wrapper.optimizer.weight_decay': 1e-4}).optim_wrapper
    with pytest.raises(ValueError) as caught:
        MTUOptimWrapperConstructor({k: v for k, v in cfg.items() if k != 'constructor'})
    line, code = user_error(caught.value)
    assert code == 2 and line.startswith('optim_wrapper.optimizer: expected an optimiser-wrapper')
    assert "(this config's optimisers are optim_wrapper.deblur and optim_wrapper.motion: e.g. " \
        'optim_wrapper.deblur.optimizer.<key>)' in line
    # before the schedule's check, which read the entry as a third optimiser (the configs
    # with a schedule per optimiser)
    from mtu_toolkit.engine.launch import check_training_settings
    cfg = load_config(osp.join(ROOT, 'configs', 'mtu', 'mtu10_dvd.py'),
                      {'+optim_wrapper.optimizer.weight_decay': 1e-4})
    assert isinstance(cfg.param_scheduler, dict) and 'type' not in cfg.param_scheduler
    with pytest.raises(ValueError) as caught:
        check_training_settings(cfg)
    line, code = user_error(caught.value)
    assert code == 2 and line.startswith('optim_wrapper.optimizer: expected an optimiser-wrapper')


def test_a_crop_size_below_one_is_refused():
    from mtu_toolkit.registry import TRANSFORMS
    with pytest.raises(ValueError, match='size must be a positive integer'):
        TRANSFORMS.build(dict(type='ClipRandomCrop', size=0))

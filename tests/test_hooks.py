import os
import os.path as osp
import re
from types import SimpleNamespace

import cv2
import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.visualization import Visualizer

from mtu_toolkit.engine.hooks import (AtomicCheckpointHook, SaveRestoredFramesHook,
                                      VideoVisualizationHook, make_strip)
from mtu_toolkit.registry import HOOKS


def _read_rgb(path):
    return torch.from_numpy(cv2.imread(path)[..., ::-1].copy())


def test_make_strip_panels():
    a, b, c = (torch.rand(3, 10, 12) for _ in range(3))
    strip = torch.from_numpy(make_strip(a, b, c, gap=4))
    assert strip.shape == (10, 3 * 12 + 2 * 4, 3) and strip.dtype == torch.uint8
    for k, img in enumerate((a, b, c)):
        panel = strip[:, k * 16:k * 16 + 12].permute(2, 0, 1)
        assert torch.equal(panel, img.mul(255).round().byte())
    assert (strip[:, 12:16] == 255).all()
    assert make_strip(a, b, None).shape == (10, 2 * 12 + 4, 3)


def test_visualization_hook_writes_strips(tmp_path):
    vis = Visualizer(name='test_vis_hook', save_dir=str(tmp_path),
                     vis_backends=[dict(type='LocalVisBackend')])
    runner = SimpleNamespace(visualizer=vis, iter=7)
    hook = HOOKS.build(dict(type='VideoVisualizationHook', max_sequences=1))
    assert isinstance(hook, VideoVisualizationHook)
    inputs = torch.randint(0, 256, (2, 3 + 4, 3, 8, 10), dtype=torch.uint8)
    outputs = [dict(pred=torch.rand(3, 3, 8, 10), gt=torch.rand(3, 3, 8, 10), key=f's{i}',
                    frame_indices=[4, 5, 6]) for i in range(2)]
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, dict(inputs=inputs), outputs)
    files = sorted(os.listdir(tmp_path / 'vis_data' / 'vis_image'))
    assert files == ['val_s0_5_7.png']  # one sequence only, middle frame, at iter 7
    strip = _read_rgb(str(tmp_path / 'vis_data' / 'vis_image' / files[0]))
    expected = make_strip(inputs[0, 1 + 2].float() / 255, outputs[0]['pred'][1],
                          outputs[0]['gt'][1])
    assert torch.equal(strip, torch.from_numpy(expected))


def test_save_restored_frames(tmp_path):
    """The frames go into a temporary folder that becomes out_dir when the test ends: an
    interrupted test leaves no partial folder that looks like a whole result."""
    hook = SaveRestoredFramesHook(out_dir=str(tmp_path / 'out'))
    pred = torch.rand(2, 3, 9, 11)
    hook.before_test()
    hook.after_test_iter(None, 0, None, [dict(pred=pred, key='seqA', frame_indices=[3, 4])])
    assert not (tmp_path / 'out').exists()
    hook.after_test()
    assert os.listdir(tmp_path) == ['out']
    assert sorted(os.listdir(tmp_path / 'out' / 'seqA')) == ['00003.png', '00004.png']
    img = _read_rgb(str(tmp_path / 'out' / 'seqA' / '00004.png')).permute(2, 0, 1)
    assert torch.equal(img, pred[1].mul(255).round().byte())
    # interrupted: nothing of it stays, the earlier result is untouched
    again = SaveRestoredFramesHook(out_dir=str(tmp_path / 'out'), overwrite=True)
    again.before_test()
    again.after_test_iter(None, 0, None, [dict(pred=pred, key='seqB', frame_indices=[0, 1])])
    again.abort()
    assert os.listdir(tmp_path) == ['out'] and os.listdir(tmp_path / 'out') == ['seqA']
    # without overwrite, a folder that another run filled meanwhile is not replaced
    third = SaveRestoredFramesHook(out_dir=str(tmp_path / 'out'))
    third.before_test()
    with pytest.raises(ValueError, match='another run filled it'):
        third.after_test()
    assert os.listdir(tmp_path) == ['out'] and os.listdir(tmp_path / 'out') == ['seqA']
    # with it, the whole folder is replaced
    again.before_test()
    again.after_test_iter(None, 0, None, [dict(pred=pred, key='seqB', frame_indices=[0, 1])])
    again.after_test()
    assert os.listdir(tmp_path) == ['out'] and os.listdir(tmp_path / 'out') == ['seqB']


def test_frames_folder_checks(tmp_path, monkeypatch):
    """--out-dir may not be or hold what the test reads or writes, even with --overwrite (it
    replaced a folder holding the checkpoint and config with the frames), nor be a mount
    point (the final rename failed after the whole test, and the frames were lost)."""
    from mtu_toolkit.engine.hooks.restored_frames_hook import check_frames_folder
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'iter_4.pth').write_bytes(b'x')
    for inputs in ([str(run / 'iter_4.pth')], [str(run)], [str(tmp_path / 'run' / '.' )]):
        with pytest.raises(ValueError, match=rf'^{run}: holds {re.escape(inputs[0])}, which '
                           'this test reads or writes; give another folder$'):
            check_frames_folder(str(run), True, inputs + [None])
    with pytest.raises(ValueError, match='pass --overwrite to replace it'):
        check_frames_folder(str(run), False)
    check_frames_folder(str(run), True, [str(tmp_path / 'elsewhere.pth')])
    check_frames_folder(str(tmp_path / 'new' / 'deeper'), False)
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ValueError, match='is a file'):
        check_frames_folder(str(tmp_path / 'file'))
    monkeypatch.setattr(osp, 'ismount', lambda p: p == str(run))
    with pytest.raises(ValueError, match='is a mount point, which the finished folder cannot '
                       'replace; give a folder inside it'):
        check_frames_folder(str(run) + '/', True)


def test_frames_replace_the_folder_a_link_points_to(tmp_path):
    """--out-dir results/ (a link, with the slash README's example has): the folder the link
    points to gets the frames and the link stays (the link was replaced by a folder, and a
    dangling one left beside it)."""
    target = tmp_path / 'big_disk_results'
    target.mkdir()
    (target / 'old.png').write_bytes(b'x')
    os.symlink(target, tmp_path / 'results')
    hook = SaveRestoredFramesHook(out_dir=str(tmp_path / 'results') + '/', overwrite=True)
    hook.before_test()
    hook.after_test_iter(None, 0, None, [dict(pred=torch.rand(1, 3, 4, 4), key='s')])
    hook.after_test()
    assert osp.islink(tmp_path / 'results') and os.listdir(target) == ['s']
    assert sorted(os.listdir(tmp_path)) == ['big_disk_results', 'results']


def test_swapping_a_folder_in_leaves_the_old_or_the_new(tmp_path, monkeypatch):
    from mtu_toolkit import fileio
    old, new = tmp_path / 'out', tmp_path / 'out.tmp-new'
    old.mkdir()
    new.mkdir()
    (old / 'a').write_text('old')
    (new / 'a').write_text('new')
    replace = os.replace

    def failing(src, dst):
        if src == str(new):
            raise OSError('no space')
        return replace(src, dst)

    monkeypatch.setattr(os, 'replace', failing)
    with pytest.raises(OSError):
        fileio.swap_in_folder(str(new), str(old))
    assert (old / 'a').read_text() == 'old'  # put back
    monkeypatch.setattr(os, 'replace', replace)
    aside = fileio.swap_in_folder(str(new), str(old))
    assert (old / 'a').read_text() == 'new' and (tmp_path / osp.basename(aside)).is_dir()
    # named as a temporary: a sweep removes it when an interrupted deletion leaves it
    assert re.fullmatch(r'out\.tmp-mtu\d+-\d+', osp.basename(aside))


class _Runner:
    """What CheckpointHook touches of a Runner; ``fail`` makes save_checkpoint crash mid-write."""

    def __init__(self, work_dir):
        self.work_dir = str(work_dir)
        self.message_hub = MessageHub.get_instance('test_atomic_ckpt')
        self.logger = MMLogger.get_instance('test_atomic_ckpt')
        self.iter, self.epoch, self.fail = 0, 0, False
        self.cfg = SimpleNamespace(get=lambda *a: {})
        self._hooks = []

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        path = osp.join(out_dir, filename)
        ckpt = dict(state_dict=dict(w=torch.full((4,), float(self.iter))))
        for hook in self._hooks:
            hook.before_save_checkpoint(self, ckpt)
        if self.fail:
            with open(path, 'wb') as f:
                f.write(b'half a checkpoint')
            raise OSError('disk full')
        torch.save(ckpt, path)


def test_atomic_checkpoint_survives_crash(tmp_path):
    runner = _Runner(tmp_path)
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    runner._hooks = [hook]
    hook.before_train(runner)
    hook._save_checkpoint(runner)  # iter_1.pth
    last = (tmp_path / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'iter_1.pth')
    runner.iter, runner.fail = 1, True
    with pytest.raises(OSError, match='disk full'):
        hook._save_checkpoint(runner)  # crashes while writing iter_2
    # the crash left the previous checkpoint usable: not rotated away, still the last one
    assert not (tmp_path / 'iter_2.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == last
    ckpt = torch.load(last, weights_only=True)
    assert torch.equal(ckpt['state_dict']['w'], torch.zeros(4))
    assert 'rng_state' in ckpt and ckpt['rng_state']['torch'].dtype == torch.uint8
    runner.fail = False
    hook._save_checkpoint(runner)  # a later save succeeds and rotates iter_1 away
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == ['iter_2.pth']


@pytest.mark.parametrize('keep', [-1, 0])
def test_keeping_every_checkpoint(tmp_path, keep):
    """max_keep_ckpts=-1 (mmengine's default: keep all) or 0: every checkpoint stays (the
    hook read mmengine's keep_ckpt_ids, which exists only when it rotates, and the run failed
    at its first save with nothing saved)."""
    runner = _Runner(tmp_path)
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=keep)
    runner._hooks = [hook]
    hook.before_train(runner)
    for it in range(3):
        runner.iter = it
        hook._save_checkpoint(runner)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == [
        'iter_1.pth', 'iter_2.pth', 'iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


def test_checkpoint_hook_refuses_a_misspelt_argument_when_built():
    # mmengine passes unknown keywords on to runner.save_checkpoint: the run trained up to its
    # first save and failed there with nothing saved
    from mtu_toolkit.checked_registry import ComponentArgumentError
    from mtu_toolkit.engine.config_loader import user_error
    with pytest.raises(ComponentArgumentError) as info:
        HOOKS.build(dict(type='AtomicCheckpointHook', intervall=1, by_epoch=False))
    line, code = user_error(info.value)
    assert code == 2 and "takes no argument 'intervall' (did you mean 'interval'?)" in line
    HOOKS.build(dict(type='AtomicCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=2,
                     save_best='PSNR', rule='greater', save_last=True))


def test_a_resume_records_its_start_only_in_its_own_folder(tmp_path):
    """Resumed from a checkpoint of its own folder, a run names it in last_checkpoint when
    training starts; a fork from another folder into a checkpoint out_dir that does not
    exist yet leaves every record alone (it raised FileNotFoundError)."""
    import logging
    old, work = tmp_path / 'old', tmp_path / 'new'
    old.mkdir()
    work.mkdir()
    (old / 'iter_2.pth').write_bytes(b'x')
    (old / 'last_checkpoint').write_text(str(old / 'iter_6.pth'))
    fork = SimpleNamespace(work_dir=str(work), _load_from=str(old / 'iter_2.pth'),
                           _resume=True, logger=logging.getLogger('test'))
    AtomicCheckpointHook(interval=1, out_dir=str(tmp_path / 'ckpts')).before_train(fork)
    assert not (work / 'last_checkpoint').exists()
    assert (old / 'last_checkpoint').read_text() == str(old / 'iter_6.pth')
    own = SimpleNamespace(work_dir=str(old), _load_from=str(old / 'iter_2.pth'),
                          _resume=True, logger=logging.getLogger('test'))
    AtomicCheckpointHook(interval=1).before_train(own)
    assert (old / 'last_checkpoint').read_text() == str(old / 'iter_2.pth')

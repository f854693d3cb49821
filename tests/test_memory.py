"""Huge-page advice for the long-lived inference buffers: given where it applies, never where it
does not, values untouched, and the buffers of the direct form and the MC head's warp use it."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn

import mtu_toolkit.memory as memory
from mtu_toolkit.deploy import DirectConv2d, direct_conv_isa

THP = osp.exists('/sys/kernel/mm/transparent_hugepage/enabled')


def test_advice_applies_to_large_cpu_tensors_only(monkeypatch):
    big = memory.empty_huge(3, memory.MIN_BYTES // 4)  # 3 x 4 MB: whole 2 MB pages inside
    assert big.shape == (3, memory.MIN_BYTES // 4) and big.dtype == torch.float32
    if sys.platform.startswith('linux') and THP:
        assert memory.advise_huge_pages(big)
    assert not memory.advise_huge_pages(torch.empty(memory.MIN_BYTES // 4 - 1))  # too small
    monkeypatch.setattr(memory, 'ENABLED', False)
    assert not memory.advise_huge_pages(big)


def test_advised_memory_holds_what_is_written():
    t = memory.empty_huge(2, 5, 1024, 1024)
    values = torch.arange(t.numel(), dtype=torch.float32).view_as(t)
    t.copy_(values)
    assert torch.equal(t, values)


def test_inference_buffers_are_advised(monkeypatch):
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    advised = []
    monkeypatch.setattr(memory, 'advise_huge_pages', lambda t: advised.append(t) or True)
    layer = DirectConv2d(nn.Conv2d(4, 4, 3, padding=1), relu=False, winograd=False,
                         reuse_output=True)
    x = torch.rand(1, 4, 512, 520)  # a 4.3 MB output
    with torch.inference_mode():
        out = layer([x])
        summed = layer([x, x], sum_inputs=True)
    assert any(t.data_ptr() == out.data_ptr() for t in advised)  # the reused output
    assert any(t.data_ptr() == layer._kept._buffers['sum'].data_ptr() for t in advised)  # the inputs' sum
    assert summed.data_ptr() == out.data_ptr()


def test_the_warp_buffer_is_advised(monkeypatch):
    from mtu_toolkit.models.mc_heads.correlation import CorrelationMCHead
    from mtu_toolkit.ops import uses_extension
    feat = torch.rand(1, 4, 512, 520)
    if not uses_extension(feat):
        pytest.skip('the compiled ops are not built')
    advised = []
    monkeypatch.setattr(memory, 'advise_huge_pages', lambda t: advised.append(t) or True)
    head = CorrelationMCHead(8, 4).eval()
    head.reuse_warp_output = True
    motion = torch.zeros(1, 2, 128, 130, dtype=torch.int64)
    with torch.inference_mode():
        out = head.warp(feat, motion)
    assert torch.equal(out, feat) and advised and advised[0].data_ptr() == out.data_ptr()


def test_kept_buffer_is_reused_while_it_fits():
    """The same tensor while shape, dtype and layout fit; a fresh one when any changes."""
    a = memory.kept_buffer(None, (1, 3, 8, 8), torch.float32, 'cpu')
    assert memory.kept_buffer(a, (1, 3, 8, 8), torch.float32, torch.device('cpu')) is a
    assert memory.kept_buffer(a, (1, 3, 8, 9), torch.float32, 'cpu').shape == (1, 3, 8, 9)
    assert memory.kept_buffer(a, (1, 3, 8, 8), torch.float64, 'cpu').dtype == torch.float64
    last = memory.kept_buffer(a, (1, 3, 8, 8), torch.float32, 'cpu', torch.channels_last)
    assert last is not a and last.is_contiguous(memory_format=torch.channels_last)
    assert memory.kept_buffer(last, (1, 3, 8, 8), torch.float32, 'cpu',
                              torch.channels_last) is last


def test_the_pool_lets_go_of_buffers_it_no_longer_hands_out(monkeypatch):
    """Buffers of a size no longer asked for leave the pool MAX_AGE requests after their last
    hand-out (once unreferenced); one still held stays with its holder; release_recycled
    empties the pool at once."""
    import threading
    monkeypatch.setattr(memory, '_POOLS', threading.local())
    monkeypatch.setattr(memory, 'MAX_AGE', 100)
    old = [memory.recycled_empty((2, 8), torch.float32, 'cpu') for _ in range(3)]
    held = old.pop()
    ptrs = {t.data_ptr() for t in old}
    del old
    for _ in range(200):  # frames of another size: one buffer, reused every time
        new = memory.recycled_empty((3, 8), torch.float32, 'cpu')
        del new
    pool = memory._thread_pool().tensors
    assert [t.shape for t in pool] == [(3, 8), (2, 8)] and pool[1] is held
    assert not ptrs & {t.data_ptr() for t in pool}
    assert memory.recycled_empty((3, 8), torch.float32, 'cpu').shape == (3, 8)
    assert memory.release_recycled() == (24 + 16) * 4
    assert memory._thread_pool().tensors == [] and held.shape == (2, 8)


def test_a_recycled_copy_is_the_callers_own(monkeypatch):
    """recycled_copy gives equal values in a buffer nothing else holds; a buffer the caller
    dropped is written again, one it holds is not."""
    import threading
    monkeypatch.setattr(memory, '_POOLS', threading.local())
    monkeypatch.setattr(memory, 'RECYCLE_BYTES', 0)
    src = torch.rand(3, 4, 5)[:, 1:]  # a view: the copy is contiguous
    a = memory.recycled_copy(src)
    assert torch.equal(a, src) and a.is_contiguous() and a.data_ptr() != src.data_ptr()
    b = memory.recycled_copy(src)
    assert b.data_ptr() != a.data_ptr()
    ptr = a.data_ptr()
    del a
    assert memory.recycled_copy(src * 2).data_ptr() == ptr

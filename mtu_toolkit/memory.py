"""Long-lived inference buffers on huge pages, where the system allows them.

The CPU inference forms keep their large intermediate tensors from frame to frame: the conv
layers' reused outputs and recycled pool, the motion layer's input sum
(``mtu_toolkit.deploy.DirectConv2d``), the normalised motion features and the warp's output
(``CorrelationMCHead``), and the converted input window (``MTURestorer.restore_frame``). Their
owners keep each one with :func:`kept_buffer`, which allocates through :func:`empty_huge`. On
Linux with transparent huge pages set to "always" or "madvise", that asks for 2 MB pages
before the buffer is first written. Why: a strided convolution's strip walks down every row of
dozens of channel planes, a new 4 KB page per plane and row, and misses the TLB on most of
them; on 2 MB pages it does not (figures in docs/benchmarks.md).

In every other case the result is exactly ``torch.empty``: another OS, huge pages "never", a
tensor under :data:`MIN_BYTES`, a device other than the CPU, or ``MTU_HUGE_PAGES=0`` in the
environment. The advice never changes a value.
"""
import ctypes
import os
import sys

import torch

#: the huge page size the advice is given in whole pages of (x86-64 and most ARM64 Linux)
HUGE_PAGE = 2 << 20
#: smaller tensors are left alone (a huge page would mostly hold other allocations)
MIN_BYTES = 4 << 20
_MADV_HUGEPAGE = 14  # <sys/mman.h>, Linux


def _load_madvise():
    if not sys.platform.startswith('linux'):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _load_madvise()
#: set False (or ``MTU_HUGE_PAGES=0`` in the environment) to allocate plain tensors
ENABLED = os.environ.get('MTU_HUGE_PAGES', '1') != '0'


def advise_huge_pages(t):
    """Ask Linux to back the whole 2 MB pages inside ``t``'s memory with huge pages.

    Args:
        t (Tensor): a CPU tensor, best one whose pages were not written yet (a fresh
            ``torch.empty``: pages written before keep their 4 KB pages until the kernel
            collapses them).

    Returns:
        bool: whether the advice was given and taken (False where it does not apply, see the
        module doc).
    """
    nbytes = t.numel() * t.element_size()
    if not ENABLED or _MADVISE is None or t.device.type != 'cpu' or nbytes < MIN_BYTES:
        return False
    start = -(-t.data_ptr() // HUGE_PAGE) * HUGE_PAGE
    end = (t.data_ptr() + nbytes) // HUGE_PAGE * HUGE_PAGE
    # (a failure, e.g. huge pages "never", only means 4 KB pages: nothing to report)
    return end > start and _MADVISE(start, end - start, _MADV_HUGEPAGE) == 0


def empty_huge(*size, **kwargs):
    """``torch.empty(*size, **kwargs)``, advised for huge pages (:func:`advise_huge_pages`)."""
    t = torch.empty(*size, **kwargs)
    advise_huge_pages(t)
    return t


def writable_here(buf):
    """Whether ``buf`` can be written in place here: a tensor made under
    ``torch.inference_mode`` cannot be, outside it."""
    return torch.is_inference_mode_enabled() or not buf.is_inference()


def kept_buffer(buf, shape, dtype, device, memory_format=torch.contiguous_format):
    """``buf`` if it still fits (a tensor of ``shape``, ``dtype`` and ``device``, dense in
    ``memory_format``), else a fresh :func:`empty_huge` one: the buffer an owner keeps from call
    to call (a fresh large tensor page-faults on every first touch). ``buf`` may be None.
    A buffer made under ``torch.inference_mode`` is not kept outside it, where it could not be
    written in place."""
    if buf is not None and buf.shape == tuple(shape) and buf.dtype == dtype \
            and buf.device == torch.device(device) \
            and buf.is_contiguous(memory_format=memory_format) \
            and writable_here(buf):
        return buf
    return empty_huge(shape, dtype=dtype, device=device, memory_format=memory_format)

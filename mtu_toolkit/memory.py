"""Long-lived inference buffers on huge pages, where the system allows them.

The CPU inference forms keep their large intermediate tensors from frame to frame: the conv
layers' reused outputs, the motion layer's input sum
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

Large tensors that leave the call making them (the direct conv layers' outputs, the frames
``restore_frame`` returns) come from a pool of recycled ones instead (:func:`recycled_empty`):
an earlier one that nothing references any more is written again. The pool belongs to the
thread, holds at most :data:`POOL_BYTES`, and lets go of what it has not handed out for
:data:`MAX_AGE` requests (e.g. the buffers of an earlier frame size, a few frames after the
size changed); :func:`release_recycled` empties it at once (after the last clip of a session,
say: deleting a model does not, the pool is not the model's).

Neither kept nor pooled buffers are used while a trace or an ONNX export records the ops
(:func:`tracing`): the graph would hold the buffer as a constant and copy into it, which ONNX
cannot express and a TorchScript step would share between calls.
"""
import ctypes
import math
import os
import sys
import threading

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


def tracing():
    """Whether a TorchScript trace or an ONNX export is recording the ops."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


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


class KeptBuffers:
    """The buffers one module keeps from call to call (:func:`kept_buffer`), by name, for the
    first thread that asks: another thread calling the same module gets fresh tensors every
    call, so two threads never write one buffer (a model served from two threads gave wrong
    frames). A copy or a pickle (``copy.deepcopy``, a ``multiprocessing`` worker) starts with
    none: multiprocessing moves pickled tensors into shared memory, so kept buffers sent along
    would be written by two processes at once.
    """

    def __init__(self):
        self._owner, self._buffers = None, {}

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def mine(self):
        """Whether this thread is the owner (the first that asked, from now on)."""
        if self._owner is None:
            self._owner = threading.get_ident()
        return self._owner == threading.get_ident()

    def get(self, name, shape, dtype, device, memory_format=torch.contiguous_format):
        """Buffer ``name`` of ``shape`` (see :func:`kept_buffer`); a fresh one in another
        thread than the owner, or while :func:`tracing`."""
        if tracing() or not self.mine():
            return empty_huge(shape, dtype=dtype, device=device, memory_format=memory_format)
        buf = kept_buffer(self._buffers.get(name), shape, dtype, device, memory_format)
        self._buffers[name] = buf
        return buf

    def workspace(self, name):
        """An empty uint8 CPU tensor kept as ``name``, which an op grows in place to what it
        needs (the argmax's scratch); None in another thread than the owner (the op then
        allocates its own); None while :func:`tracing` too."""
        if tracing() or not self.mine():
            return None
        buf = self._buffers.get(name)
        if buf is None or not writable_here(buf):  # (one made under inference_mode cannot grow)
            buf = self._buffers[name] = torch.empty(0, dtype=torch.uint8)
        return buf


#: Tensors of this many bytes or more are recycled (:func:`recycled_empty`). The C library
#: serves allocations this large from memory it maps for them or trims from its heap when they
#: are freed, so a fresh one often page-faults on every first touch (figures in
#: ``docs/benchmarks.md``); smaller ones it keeps.
RECYCLE_BYTES = 1 << 20
#: The most bytes a thread's pool holds. A buffer joins it only when every pooled one of its
#: shape is still referenced, so at a fixed frame size the pool holds about the most outputs
#: alive at once in a frame (at 720p ~0.3 GB for MTU2, ~0.5 GB for MTU10-L).
POOL_BYTES = 1 << 30
#: A pooled buffer not handed out in this thread's last MAX_AGE requests leaves the pool once
#: nothing references it (a frame makes 26 requests with MTU2, 94 with MTU10-L: a buffer of an
#: earlier size goes after 5 to 20 frames of another).
MAX_AGE = 512
_POOLS = threading.local()


class _Pool:
    """One thread's recycled buffers, newest first, with the request count of their last
    hand-out (``last``, aligned with ``tensors``)."""

    def __init__(self):
        self.tensors, self.last, self.requests = [], [], 0


def _thread_pool():
    if not hasattr(_POOLS, 'pool'):
        _POOLS.pool = _Pool()
    return _POOLS.pool


def _unreferenced(tensors, i):
    """Whether ``tensors[i]`` is referenced by the list alone: no other Python reference to the
    tensor and no other tensor (a view) on its storage. False where torch cannot say."""
    try:
        # the list, getrefcount's argument; the tensor's and the temporary wrapper's storage refs
        return (sys.getrefcount(tensors[i]) == 2
                and torch._C._storage_Use_Count(tensors[i].untyped_storage()._cdata)
                == _LONE_USES)
    except AttributeError:  # a torch without the (private) storage use count: never reuse
        return False


def _storage_uses():
    """The storage use count of a tensor referenced once, as _unreferenced reads it."""
    t = torch.empty(1)
    try:
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata)
    except AttributeError:
        return -1


_LONE_USES = _storage_uses()


def recyclable(shape, dtype):
    """Whether a tensor of ``shape`` and ``dtype`` is large enough to be recycled (never while
    :func:`tracing`)."""
    return math.prod(shape) * dtype.itemsize >= RECYCLE_BYTES and not tracing()


def recycled_empty(shape, dtype, device):
    """An uninitialised tensor of ``shape``, ``dtype`` and ``device`` for a result that may
    outlive the call (a layer's output, the recurrent state): a pooled one that nothing
    references any more, else a fresh :func:`empty_huge` one, which joins the pool (the oldest
    leave it beyond :data:`POOL_BYTES`)."""
    pool = _thread_pool()
    pool.requests += 1
    tensors, device = pool.tensors, torch.device(device)
    for i in range(len(tensors)):  # (indexing: a loop variable would be one more reference)
        if tensors[i].shape == shape and tensors[i].dtype == dtype \
                and tensors[i].device == device and writable_here(tensors[i]) \
                and _unreferenced(tensors, i):
            pool.last[i] = pool.requests
            buf = tensors[i]
            break
    else:
        buf = empty_huge(shape, dtype=dtype, device=device)
        tensors.insert(0, buf)
        pool.last.insert(0, pool.requests)
        total = 0
        for i in range(len(tensors)):
            total += tensors[i].numel() * tensors[i].element_size()
            if total > POOL_BYTES:
                del tensors[i:], pool.last[i:]
                break
    if pool.requests % 64 == 0:
        _let_go_of_old(pool)
    return buf


def _let_go_of_old(pool):
    """Drop the unreferenced buffers not handed out in the last :data:`MAX_AGE` requests."""
    for i in reversed(range(len(pool.tensors))):
        if pool.requests - pool.last[i] > MAX_AGE and _unreferenced(pool.tensors, i):
            del pool.tensors[i], pool.last[i]


def recycled_copy(t):
    """A contiguous copy of ``t`` that is the caller's own, from the pool when large (a CPU
    tensor of :data:`RECYCLE_BYTES` or more that autograd does not record)."""
    if t.device.type != 'cpu' or not recyclable(t.shape, t.dtype) \
            or (t.requires_grad and torch.is_grad_enabled()):
        return t.clone(memory_format=torch.contiguous_format)
    return recycled_empty(t.shape, t.dtype, t.device).copy_(t)


def release_recycled():
    """Let go of this thread's pool of recycled buffers (those still referenced stay with
    their holders). Returns the bytes the pool held."""
    pool = _thread_pool()
    held = sum(t.numel() * t.element_size() for t in pool.tensors)
    pool.tensors.clear()
    pool.last.clear()
    return held

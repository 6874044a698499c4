"""Buffers and memory plan of the training engine (:mod:`._fastpath`).

A :class:`Workspace` holds every buffer of one network's training or prediction for
batches up to a size: the activation panels (their width from the L2 cache,
:func:`choose_tiles`), derivative codes, gradient buffers, the bias gradients' panel
sums, and a buffer for a layer's values gathered into CSC order.
It sizes them to the activation budget and the memory the machine has free:
micro-batches when a batch would not fit, no CSC views (the lean variant) when
not even small micro-batches would.  The CSC views themselves (:class:`_Transposed`)
are cached per weight matrix between calls for networks up to
:data:`_PREDICT_CACHE_MAX_NNZ` connections.
"""
import os
import weakref

import numba
import numpy as np

from . import _kernels as K
from . import _panels as P
from . import config as cfg


def _default_budget():
    """A third of the physical memory, between 512 MiB and 8 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(8 << 30, max(512 << 20, total // 3)))


# Activations of one (micro-)batch may use at most this many bytes by default
# (config.ACTIVATION_BUDGET overrides it); larger batches are split into
# micro-batches whose gradients are summed.
DEFAULT_ACTIVATION_BUDGET = _default_budget()
# Buffers are also sized to what the machine has free when they are made: at most
# this fraction of MemAvailable (the rest is left to the page cache, other processes
# and the allocator's slack).
AVAILABLE_FRACTION = 0.9
# Micro-batches smaller than this (or than the batch) make the engine drop the CSC
# views of the weights, if that lets it use larger ones: the forward pass then
# scatters from the CSR arrays (about 2x slower per connection, 8 bytes per
# connection less).
_LEAN_MICRO = 16


def available_memory():
    """Bytes the kernel says could be allocated without swapping (None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n):
    return "%.2f GiB" % (n / 2 ** 30)


_MIN_PANEL = 32
_MAX_PANEL = 128


# force the number of batch panels (None: choose_tiles decides); the tests use it to
# run training batches through the multi-panel code path
PANELS = None

_CACHE_LINE = 64


def _aligned_empty(n, dtype, fill=None):
    """A 1-d array of ``n`` items whose first byte sits on a cache line.

    The kernels load 32-byte vectors from the unit rows of the panels; numpy aligns
    to 16 bytes only, and a vector load split over two cache lines made the forward
    kernel 1.15x slower and the backward 1.05x (1000 x 1000 layer at 4 %)."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + _CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % _CACHE_LINE
    out = raw[start:start + n * dtype.itemsize].view(dtype)
    if fill is not None:
        out.fill(fill)
    return out


def _round_panel(x):
    """Panel widths are multiples of 16: the vectorised inner loops (two 8-wide
    vectors per step) then never fall into their scalar remainder."""
    return (int(x) + 15) // 16 * 16


def choose_tiles(B, width, itemsize):
    """Panels ``(nt, TB)`` for a batch of ``B`` samples; ``nt * TB >= B``, ``TB % 16 == 0``.

    Panels are as wide as lets one panel of the widest layer (``width`` units)
    fill at most :data:`sksparse_mlp.config.PANEL_L2_FRACTION` of a core's L2 cache, between
    32 and 128 samples: every thread gathers rows from the whole panel, so that
    is what must stay in its L2.  When not even 32 samples fit, 128.  The kernels sweep
    the panels one after the other and sum the gradients over them; each panel reads
    the layer's index once more.
    """
    B = max(1, int(B))
    tb = int(cfg.L2_BYTES * cfg.PANEL_L2_FRACTION) // max(1, width * itemsize)
    # a layer too wide for any panel to fit gathers from L3 or DRAM: there the widest
    # rows serve each random access best
    tb = _MAX_PANEL if tb < _MIN_PANEL else min(tb, _MAX_PANEL)
    tb = _round_panel(-(-B // -(-B // tb)))  # even panels, multiple of 16
    return -(-B // tb), tb


class _Transposed:
    """CSC view (pattern + permutation) of one layer, refreshed when the pattern changes."""

    __slots__ = ("ref", "indptr", "indices", "perm")

    def __init__(self):
        self.ref = None

    def get(self, W):
        if self.ref is None or self.ref() is not W.indices:
            self.indptr, self.indices, self.perm = P.narrow_pattern(
                *P.transpose_pattern(W.indptr, W.indices, W.shape[1]), W.shape[0])
            self.ref = weakref.ref(W.indices)
        return self


# CSC views kept per weight matrix for training and prediction alike (one copy, built
# once per topology, not once per epoch), dropped with the matrix (sparse matrices
# are not hashable: keyed by id, guarded by a weak reference).  A view holds the
# pattern and a permutation, not values, so it stays valid while training changes
# W.data in place; a new pattern (SET) comes as a new matrix object.
_PREDICT_VIEWS = {}
# networks with more connections than this keep no views between calls (memory):
# training builds them per epoch, prediction of a few rows scatters from CSR instead
_PREDICT_CACHE_MAX_NNZ = 20_000_000


def _cached_views(net):
    return sum(net.n_connections) <= _PREDICT_CACHE_MAX_NNZ and cfg.CSC_VIEWS is not False


def _predict_view(W):
    key = id(W)
    entry = _PREDICT_VIEWS.get(key)
    if entry is None or entry[0]() is not W:
        try:
            ref = weakref.ref(W, lambda _, key=key: _PREDICT_VIEWS.pop(key, None))
        except TypeError:  # not weak-referenceable: no cache
            return _Transposed().get(W)
        entry = _PREDICT_VIEWS[key] = (ref, _Transposed())
    return entry[1].get(W)


# the forward pass gathers a block's values into a scratch row of at most this many
# items per thread (forward_tiled); larger blocks read through the permutation
_GATHER_MAX = 1 << 16


def _gather_width(net, large):
    """The most values of any block the forward pass gathers (:func:`~._kernels.forward_tiled`
    on one thread), at most :data:`_GATHER_MAX`; not for layers with ``large`` input
    panels (their values are gathered in CSC order beforehand)."""
    width = 0
    for layer, big in zip(net.layers, large):
        W = layer.W
        per = max(1, min(W.shape[1] // 2, K.BLOCKS_PER_THREAD))  # dense: column pairs
        if big or W.nnz == 0 or W.nnz // per > _GATHER_MAX:
            continue
        longest = int(np.bincount(W.indices, minlength=W.shape[1]).max())
        width = max(width, W.nnz // per + longest + 1)
    return min(width, _GATHER_MAX)


class Workspace:
    """Buffers for training or predicting with one network, batches up to ``capacity``.

    Parameters
    ----------
    net : SparseMLP
    capacity : int
        Largest batch that will be passed.
    training : bool
        Allocate delta and gradient buffers.
    sparse_input : bool
        The input is a CSR matrix (no dense input panel is needed).
    activation_budget : int or None
        Bytes the activations of one micro-batch may take (None:
        ``config.ACTIVATION_BUDGET`` or :data:`DEFAULT_ACTIVATION_BUDGET`).
    step : bool
        The backward pass may apply the optimizer step itself (no gradient
        buffers); False keeps every gradient for :func:`loss_and_gradients`.
    available : int or None
        Bytes the buffers made here may take in all (default:
        :data:`AVAILABLE_FRACTION` of the available memory).

    Attributes
    ----------
    micro : int
        Samples per micro-batch: the largest number whose activations fit both
        ``activation_budget`` and what ``available`` leaves after the CSC views
        and the gradient buffers.
    lean : bool
        No CSC views: the forward pass scatters from the CSR arrays, because
        with the views not even :data:`_LEAN_MICRO` samples (or the whole
        batch) would fit, or :data:`sksparse_mlp.config.CSC_VIEWS` is False.
    plan : dict
        Bytes of each kind of buffer (``activations``, ``gradients``, ``views``,
        ``values``, ``panel_sums``), the ``available`` bytes they were sized against, the
        activation bytes ``per_sample`` and the bytes ``reserved`` for gradients
        and panel sums when micro-batching.
    """

    def __init__(self, net, capacity, training=True, sparse_input=False,
                 activation_budget=None, step=True, available=None):
        self.net = net
        # read once: numba.get_num_threads() costs microseconds, a kernel call per layer
        self.n_threads = numba.get_num_threads()
        dtype = net.dtype
        self.dtype = dtype
        itemsize = dtype.itemsize
        sizes = net.n_neurons
        self.sizes = sizes
        L = len(net.layers)
        width = max(sizes)
        # a sparse batch small enough to hold dense goes through the dense kernels
        # (register-blocked gathers beat the scatter of the sparse-input kernels)
        sparse_input = sparse_input and (
            sizes[0] * int(capacity) * itemsize > cfg.DENSE_INPUT_BATCH_BYTES)
        # bytes per sample: input panel, hidden activations and codes, output,
        # two delta buffers (training)
        per_sample = (0 if sparse_input else sizes[0] * itemsize)
        if training:  # every layer's activations and derivative codes are kept
            per_sample += sum(sizes[1:-1]) * (itemsize + 1) + sizes[-1] * itemsize
        else:  # two alternating activation buffers and one code buffer
            per_sample += max(sizes[1:]) * (2 * itemsize + 1)
        capacity = int(capacity)
        nnz = net.n_connections
        cached = _cached_views(net)
        # CSC views built for this workspace (cached ones exist already), with the
        # counters transpose_pattern needs while it builds the widest one
        views = 0 if cached else sum(
            n * (4 if P.narrowed(layer.n_in, n) else
                 layer.W.indices.itemsize + layer.W.indptr.itemsize)
            + (layer.n_out + 1) * layer.W.indptr.itemsize
            for n, layer in zip(nnz, net.layers)) + max(
            8 * layer.n_out * layer.W.indptr.itemsize for layer in net.layers)
        # gradient buffers: every layer's when the gradient is summed over
        # micro-batches, else at most the largest layer's (see below)
        grads_all = sum(nnz) * itemsize if training else 0
        grads_one = grads_all if not step or not training else max(nnz) * itemsize
        # panel sums of the bias gradients: a few panels at most
        sums = sum(sizes[1:]) * itemsize * 2 if training else 0
        if activation_budget is None:
            activation_budget = cfg.ACTIVATION_BUDGET or DEFAULT_ACTIVATION_BUDGET
        if available is None:
            available = available_memory()
            available = np.inf if available is None else available * AVAILABLE_FRACTION

        def largest(fixed):
            room = min(activation_budget, available - fixed - sums - grads_one)
            if capacity * per_sample <= room:
                return capacity
            room = min(activation_budget, available - fixed - sums - grads_all)
            return int(max(0, room) // max(1, per_sample))

        # layers with input panels larger than the caches gather their values into CSC
        # order first, to prefetch in the loop that reads them so (room reserved for
        # prediction here; for training below, if memory is left once the micro-batch
        # is chosen).  Not for smaller ones: the epochs of the benchmark network were
        # 1.08-1.1x faster reading through the permutation than with the gather, at
        # 2 and 8 panels, and predicting 10,000 rows even (their forward pass gathers
        # each block's values itself: _gather_width).
        values = 0 if training else max(nnz) * itemsize
        micro = largest(views + values)
        self.lean = bool(views) and (cfg.CSC_VIEWS is False or cfg.CSC_VIEWS is None and (
            micro < min(capacity, _LEAN_MICRO) and largest(0) > micro))
        if self.lean:
            micro, views, values = largest(0), 0, 0
        micro = max(1, min(capacity, micro))
        self.nt, self.tb = choose_tiles(micro, width, itemsize)
        if self.lean:  # the scatter runs panels in parallel: one per thread at least
            self.nt = max(self.nt, min(self.n_threads, -(-micro // 16)))
            self.tb = _round_panel(-(-micro // self.nt))
        if PANELS is not None:
            self.nt = max(1, min(int(PANELS), micro))
            self.tb = _round_panel(-(-micro // self.nt))
        if micro < capacity and self.nt * self.tb > micro >= 16 * self.nt:
            # memory decides the micro-batch: panels rounded down, not up, so that
            # the buffers (sized by nt * tb) stay within it
            self.tb = micro // self.nt // 16 * 16
        self.micro = min(micro, self.nt * self.tb)
        cap = self.nt * self.tb
        self.sparse_input = sparse_input
        self.A = [None if sparse_input else _aligned_empty(sizes[0] * cap, dtype, 0)]
        if training:
            self.A += [_aligned_empty(n * cap, dtype) for n in sizes[1:]]
            self.G = [None] + [_aligned_empty(n * cap, np.uint8) for n in sizes[1:-1]]
        else:
            wmax = max(sizes[1:]) * cap
            bufs = [_aligned_empty(wmax, dtype), _aligned_empty(wmax if L > 1 else 0, dtype)]
            self.A += [bufs[l % 2] for l in range(L)]
            codes = _aligned_empty(max(sizes[1:]) * cap, np.uint8)
            self.G = [None] + [codes] * (L - 1)
        self.large = [n * self.tb * itemsize > K.PREFETCH_PANEL_BYTES for n in sizes[:-1]]
        if training and not self.lean and available - views - sums - grads_all \
                - cap * per_sample >= max(nnz) * itemsize:
            values = max(nnz) * itemsize
        if not any(self.large):
            values = 0
        self.values = _aligned_empty(values // itemsize, dtype) if values else None
        self.G.append(np.empty(0, np.uint8))
        self.trans = [None if cached else _Transposed() for _ in range(L)]
        self.training = training
        self.n_micro_max = -(-int(capacity) // self.micro)
        self.plan = dict(activations=per_sample * cap, views=views, values=values,
                         available=available,
                         gradients=0, panel_sums=0, per_sample=per_sample,
                         reserved=sums + grads_all)
        if training:
            # one micro-batch: the backward kernel applies the optimizer step itself;
            # a gradient buffer then only holds the sums of the earlier panels
            self.fused = step and self.n_micro_max == 1
            need = [not self.fused or self.nt > 1 or (l == 0 and sparse_input)
                    for l in range(L)]
            if self.n_micro_max > 1 or not step:  # gradients must survive the whole batch
                self.gbuf = [np.empty((1, n), dtype) if need[l] else None
                             for l, n in enumerate(nnz)]
                self.plan["gradients"] = sum(g.nbytes for g in self.gbuf if g is not None)
            else:  # each layer's buffer is free again once its step is taken
                m = max([n for l, n in enumerate(nnz) if need[l]], default=0)
                shared = np.empty(m, dtype)
                self.gbuf = [shared[:n].reshape(1, n) if need[l] else None
                             for l, n in enumerate(nnz)]
                self.plan["gradients"] = shared.nbytes
            self.bsum = [np.zeros((self.nt, n), dtype) for n in sizes[1:]]
            self.plan["panel_sums"] = sum(b.nbytes for b in self.bsum)
            self._nogbuf = np.zeros((1, 1), dtype)
        self._dummy_codes = np.zeros((1, 1, 1), np.uint8)
        self._no_codes = np.zeros((0, 1, 1), np.uint8)
        # the kernels' scratch (one panel stepping at once keeps a row's gradient sums there)
        longest = max(K.longest_row(layer.W.indptr) for layer in net.layers) \
            + K.SCRATCH_STEP_CHUNK if training and self.nt == 1 else 0
        self.sched, self.block_sq, self.rows = K.kernel_scratch(
            self.n_threads, max(self.tb + longest, 0 if self.lean else _gather_width(
                net, self.large)), dtype)

    def describe(self, capacity):
        """One line on the memory choices for batches of ``capacity``, or None if
        the engine made none (whole batches, CSC views)."""
        if self.micro >= capacity and not self.lean:
            return None
        p = self.plan
        msg = ("memory: %s available; activations %s for micro-batches of %d of %d samples, "
               "gradient buffers %s, CSC views %s" % (
                   _gib(p["available"]), _gib(p["activations"]), self.micro, capacity,
                   _gib(p["gradients"]), _gib(p["views"])))
        if self.lean:
            msg += " (none: the forward pass scatters from the CSR arrays, slower, to fit)"
        return msg

    def refresh(self):
        """Re-check the layer shapes after a topology change (between epochs)."""
        if self.net.n_neurons != self.sizes:
            raise RuntimeError("the network changed shape; build a new Workspace")

    def view(self, flat, n, nt, tb):
        return flat[: nt * n * tb].reshape(nt, n, tb)

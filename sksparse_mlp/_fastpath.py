"""The training engine: every training step and prediction of :class:`~._network.SparseMLP`.

Forward, backward, SDDMM gradient, momentum step and loss with the L2 term, written
for speed with the kernels of :mod:`._kernels` (``tests/reference.py`` computes the
same mathematics plainly, as the oracle of the tests):

* activations live in a *tiled* transposed layout ``(n_panels, n_units, panel)``
  so that each core keeps its panel of the gathered matrix in cache;
* the forward pass reads the CSC view of every weight matrix (built once per
  topology, O(nnz)) and applies activation, derivative and dropout in the same
  pass; derivatives are stored as one byte per unit;
* the backward pass computes the SDDMM gradient and the delta of the layer below
  in one sweep over the connections, and the optimizer step follows at once;
* all buffers are allocated once per epoch (``Workspace``), and a batch whose
  activations would exceed ``activation_budget`` bytes, or what the available
  memory leaves after the CSC views and the gradient buffers, is processed in
  micro-batches whose gradients are summed before one optimizer step (the same
  step up to rounding, bounded memory: this is what lets a 30-million-neuron
  network train); when even micro-batches of 16 samples would not fit beside
  the CSC views, the forward pass scatters from the CSR arrays instead.

Dropout uses a counter-based hash RNG seeded from the estimator's generator: the
same distribution as ``rng.random() >= p``, but a different stream than the
reference.  Without dropout both consume the generator identically and agree to
rounding.
"""
import os
import time
import weakref

import numba
import numpy as np
import scipy.sparse as sp

from . import _kernels as K
from . import _loss, _threads
from . import _panels as P
from . import _steps as S
from . import config as cfg
from ._activations import negative_slope, output_forward


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
# predicting at most this many rows: scatter from CSR, skip the CSC transposition
_CSR_PREDICT = 32
# predicting at most this many rows with cached CSC views: one row at a time, serial
_SERIAL_PREDICT = 2
# force the number of batch panels (None: choose_tiles decides); the tests use it to
# run training batches through the multi-panel code path
PANELS = None

_OUT = {"softmax": _loss.OUT_SOFTMAX, "logistic": _loss.OUT_LOGISTIC, "identity": _loss.OUT_IDENTITY,
        "exp": _loss.OUT_EXP}
_LOSS = {"log_loss": _loss.LOSS_LOG, "binary_log_loss": _loss.LOSS_BINARY,
         "squared_error": _loss.LOSS_SQUARED, "poisson": _loss.LOSS_POISSON}
_ACT = {"tanh": K.ACT_TANH, "logistic": K.ACT_LOGISTIC, "identity": K.ACT_IDENTITY}


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


def check_supported(net, X, optimizer=None):
    """Raise ``ValueError`` unless the engine implements this network, input and optimizer.

    There is no slower fallback: what the estimators build always passes.
    """
    if net.out_activation not in _OUT or net.loss not in _LOSS:
        raise ValueError("the engine has no output %r with loss %r" % (net.out_activation,
                                                                        net.loss))
    if net.activation not in _ACT and negative_slope(net.activation, 1, net.slope) is None:
        raise ValueError("the engine has no hidden activation %r" % (net.activation,))
    if sp.issparse(X) and X.format != "csr":
        raise ValueError("sparse input must be CSR, got %s" % X.format)
    if optimizer is not None:
        from ._optimizers import Adam, MomentumSGD
        if type(optimizer) not in (MomentumSGD, Adam):
            raise ValueError("the engine runs momentum SGD and Adam, not %s"
                             % type(optimizer).__name__)


def _act_code(net, hidden_layer):
    """(activation code, negative slope) of 1-based hidden layer ``hidden_layer``."""
    if net.activation in _ACT:
        return _ACT[net.activation], 0.0
    return K.ACT_PIECEWISE, float(negative_slope(net.activation, hidden_layer, net.slope))


class _Transposed:
    """CSC view (pattern + permutation) of one layer, refreshed when the pattern changes."""

    __slots__ = ("ref", "indptr", "indices", "perm")

    def __init__(self):
        self.ref = None

    def get(self, W):
        if self.ref is None or self.ref() is not W.indices:
            self.indptr, self.indices, self.perm = K.transpose_pattern(
                W.indptr, W.indices, W.shape[1])
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
# the memory choice (micro-batch, lean) last printed for a network (verbose mode)
_NOTED = weakref.WeakKeyDictionary()


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
        ``panel_sums``), the ``available`` bytes they were sized against, the
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
            n * (layer.W.indices.itemsize + layer.W.indptr.itemsize)
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
        # 2 and 8 panels, and predicting 10,000 rows even.
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


def _forward(net, ws, X, idx, B, nt, tb, seeds, dropout, csr=False):
    """Forward pass of ``B`` samples (rows ``idx`` of ``X``); returns the panels per layer.

    ``csr=True`` scatters from the CSR arrays instead of gathering through the CSC
    view: no O(nnz) transposition, for a few samples at a time.
    """
    L = len(net.layers)
    sizes = ws.sizes
    acts, codes = [], []
    keep = 1.0 - dropout
    thr = K.dropout_threshold(keep) if dropout > 0 else 0
    scale = 1.0 / keep if dropout > 0 else 1.0
    Xb = None
    if ws.sparse_input:
        Xb = X[idx]
        Xb.sort_indices()
        A = None
    else:
        A = ws.view(ws.A[0], sizes[0], nt, tb)
        if sp.issparse(X):  # densified batch (see Workspace)
            P.gather_input_tiled(X[idx].toarray(), np.arange(B), B, A)
        else:
            P.gather_input_tiled(X, idx, B, A)
    acts.append(A)
    codes.append(None)
    for l, layer in enumerate(net.layers):
        W = layer.W
        Z = ws.view(ws.A[l + 1], sizes[l + 1], nt, tb)
        if l < L - 1:
            act, s = _act_code(net, l + 1)
            G = ws.view(ws.G[l + 1], sizes[l + 1], nt, tb)
            seed = int(seeds[l]) if thr else 0
        else:
            act, s, G, seed = K.ACT_NONE, 0.0, ws._dummy_codes, 0
        lthr = thr if act != K.ACT_NONE else 0
        lscale = scale if lthr else 1.0
        if A is None:
            K.forward_sparse_tiled(W.indptr, W.indices, W.data, layer.bias, Xb.indptr,
                                   Xb.indices, Xb.data, B, Z, G, act, s, lthr, seed, lscale)
        elif csr or ws.lean:
            K.forward_csr_tiled(W.indptr, W.indices, W.data, layer.bias, A, Z, G, act, s, lthr,
                                seed, lscale)
        else:
            T = _predict_view(W) if ws.trans[l] is None else ws.trans[l].get(W)
            perm, data = T.perm, W.data
            if not ws.training and act == K.ACT_PIECEWISE:  # nothing reads the codes
                G = ws._no_codes
            if ws.values is not None and ws.large[l]:
                data = ws.values[: W.nnz]
                P.gather_values(W.data, perm, data)
                perm = perm[:0]
            K.forward_tiled(T.indptr, T.indices, perm, data, layer.bias, A, Z, G, act, s,
                            lthr, seed, lscale, ws.n_threads)
        acts.append(Z)
        codes.append(G)
        A = Z
    return acts, codes, Xb


def _backward(net, ws, acts, codes, Xb, D, nt, tb, accumulate, dropout, opt, last):
    """Backward pass from the output delta ``D``; on the ``last`` micro-batch each
    layer takes its optimizer step as soon as its gradient is complete (inside the
    backward kernel in fused mode).  Deltas overwrite the activations they replace.

    ``opt = (lr, momentum, nesterov, l2, adam)``; with ``adam = (beta_2, constant)``
    the step is Adam's, ``lr`` its bias-corrected rate and ``momentum`` beta_1.
    Returns ``sum(W.data**2)`` before the steps taken here.
    """
    L = len(net.layers)
    scale = 1.0 / (1.0 - dropout) if dropout > 0 else 1.0
    lr, mu, nesterov, l2, adam = opt
    b2, aeps = adam if adam is not None else (0.0, 0.0)
    step_mode = K.GRAD_STEP if adam is None else K.GRAD_ADAM
    sq = 0.0
    for l in range(L - 1, -1, -1):
        layer = net.layers[l]
        W = layer.W
        gbuf = ws.gbuf[l]
        mode = step_mode if ws.fused else (K.GRAD_ADD if accumulate else K.GRAD_WRITE)
        second = layer.velocity if adam is None else layer.second  # SGD: never read
        sparse_first = l == 0 and Xb is not None
        if sparse_first:
            Xc = Xb.tocsc()
            K.sddmm_sparse_tiled(W.indptr, W.indices, Xc.indptr, Xc.indices, Xc.data, D, gbuf,
                                 accumulate)
        else:
            g = ws._nogbuf if gbuf is None else gbuf
            if l == 0:
                G, act, s, bs = ws._dummy_codes, 0, 0.0, ws.bsum[0]
            else:
                act, s = _act_code(net, l)
                G, bs = codes[l], ws.bsum[l - 1]
            sq += K.backward_tiled(W.indptr, W.indices, W.data, acts[l], D, G, g, mode, l > 0,
                                   act, s, scale, bs, layer.velocity, lr, mu, l2, nesterov,
                                   ws.n_threads, second, b2, aeps)
        if last:
            nb = ws.bsum[l].shape[0]
            if adam is None:
                if mode != K.GRAD_STEP or sparse_first:
                    sq += S.apply_step(W.data, layer.velocity, gbuf, 1, lr, mu, l2, nesterov)
                S.bias_step(layer.bias, layer.bias_velocity, ws.bsum[l], nb, lr, mu, nesterov)
            else:
                if mode != K.GRAD_ADAM or sparse_first:
                    sq += S.apply_adam_step(W.data, layer.velocity, second, gbuf, 1, lr, mu, b2,
                                            l2, aeps)
                S.bias_adam_step(layer.bias, layer.bias_velocity, layer.bias_second, ws.bsum[l],
                                 nb, lr, mu, b2, aeps)
        D = acts[l]  # now holds the delta of layer l's input (unused after layer 0)
    return sq


def _batch(net, ws, X, Y, idx, weights, dropout, rng, opt, last):
    """Forward and backward over the micro-batches of one batch; returns loss and ``||W||^2``.

    With ``last`` the final micro-batch applies the optimizer step ``opt``.
    """
    L = len(net.layers)
    B = len(idx)
    micro = ws.micro
    n_micro = -(-B // micro)
    loss = 0.0
    sq = 0.0
    eps = float(np.finfo(ws.dtype).eps)
    out_act, loss_kind = _OUT[net.out_activation], _LOSS[net.loss]
    nt = ws.nt
    for m in range(n_micro):
        lo, hi = m * micro, min(B, (m + 1) * micro)
        Bm = hi - lo
        tb = _round_panel(-(-Bm // nt))
        seeds = rng.integers(0, 1 << 32, size=L) if dropout > 0 else None
        acts, codes, Xb = _forward(net, ws, X, idx[lo:hi], Bm, nt, tb, seeds, dropout)
        D = acts[-1]  # the output delta replaces the outputs
        loss += _loss.output_loss_delta(acts[-1], Y[idx[lo:hi]], weights[lo:hi], Bm, out_act,
                                    loss_kind, eps, D, ws.bsum[L - 1], m > 0)
        sq += _backward(net, ws, acts, codes, Xb, D, nt, tb, m > 0, dropout, opt,
                        last and m == n_micro - 1)
    return loss, sq


def loss_and_gradients(net, X, Y, weights, dropout=0.0, rng=None):
    """Drop-in for :meth:`._network.SparseMLP.loss_and_gradients` (no optimizer step).

    Used by the WASAP-SGD workers, whose gradients the server applies.
    """
    B = X.shape[0]
    ws = Workspace(net, B, training=True, sparse_input=sp.issparse(X), step=False)
    idx = np.arange(B)
    Y = np.asarray(Y, dtype=ws.dtype)
    loss, _ = _batch(net, ws, X, Y, idx, weights.astype(ws.dtype, copy=False), dropout, rng,
                     (0.0, 0.0, False, 0.0, None), last=False)
    grads = [(ws.gbuf[l][0].copy(), ws.bsum[l].sum(axis=0)) for l in range(len(net.layers))]
    return loss, grads


def train_batch(net, ws, X, Y, idx, weights, lr, momentum, nesterov, l2, dropout, rng,
                adam=None):
    """One optimizer step on the samples ``idx`` of ``(X, Y)``; returns the data loss and ``||W||^2``.

    ``weights`` are the normalised sample weights of the batch (sum 1).  With
    ``adam = (beta_2, constant)`` the step is Adam's (``lr`` bias-corrected,
    ``momentum`` = beta_1; see :meth:`._optimizers.Adam.next_step`).
    """
    return _batch(net, ws, X, Y, idx, weights, dropout, rng,
                  (lr, momentum, nesterov, l2, adam), last=True)


def run_epoch(net, X, Y, sample_weight, batch_size, optimizer, config, rng, shuffle=True,
              activation_budget=None):
    """Drop-in for :func:`._network.run_epoch` (same arguments, result and RNG use)."""
    n = X.shape[0]
    order = rng.permutation(n) if shuffle else np.arange(n)
    ws = Workspace(net, min(batch_size, n), training=True, sparse_input=sp.issparse(X),
                   activation_budget=activation_budget)
    if getattr(config, "verbose", False):
        msg = ws.describe(min(batch_size, n))
        plan = (ws.micro, ws.lean)
        if msg is not None and _NOTED.get(net) != plan:  # once per network and choice
            _NOTED[net] = plan
            print(msg, flush=True)
    dtype = net.dtype
    accumulated = 0.0
    optimizer.prepare(net)
    uniform = None
    threads = ws.n_threads
    chooser = _threads.chooser_for(net, min(batch_size, n), threads)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            idx = order[start:stop]
            B = stop - start
            if sample_weight is None:
                if uniform is None or len(uniform) != B:
                    uniform = np.full(B, 1.0 / B, dtype=dtype)
                weights, total = uniform, float(B)
            else:
                # rescaled to mean 1 by the estimator (see _network._normalised_weights)
                weights, total = (sample_weight[idx] / B).astype(dtype), float(B)
            l2 = config.alpha / total
            lr, mu, nesterov, adam = optimizer.next_step()
            if chooser is not None:
                n_threads = chooser.next_count()
                if n_threads != ws.n_threads:
                    ws.n_threads = n_threads
                    numba.set_num_threads(n_threads)
                t0 = time.perf_counter()
            loss, sq = train_batch(net, ws, X, Y, idx, weights, lr, mu, nesterov, l2,
                                   config.dropout, rng, adam)
            # the first batch builds the CSC views; a short last batch is mostly overhead
            if chooser is not None and start > 0 and B == batch_size:
                chooser.record(ws.n_threads, time.perf_counter() - t0, B)
            accumulated += (loss + 0.5 * l2 * sq) * B
    finally:
        numba.set_num_threads(threads)
    return accumulated / n


def _predict_rows_serial(net, X):
    """Rows one at a time through :func:`~._kernels.forward_row` (no parallel regions)."""
    layers = net.layers
    L = len(layers)
    dtype = layers[0].bias.dtype
    # (activation code, slope) per layer, and buffers: looked up once, not per row
    acts = [_act_code(net, l + 1) for l in range(L - 1)] + [(K.ACT_NONE, 0.0)]
    width = max(layer.bias.shape[0] for layer in layers)
    out = np.empty((X.shape[0], layers[-1].bias.shape[0]), dtype=dtype)
    bufs = [np.empty(width, dtype), np.empty(width, dtype)]
    for r in range(X.shape[0]):
        a = np.ascontiguousarray(X[r], dtype=dtype)
        for l, layer in enumerate(layers):
            bias = layer.bias
            z = out[r] if l == L - 1 else bufs[l % 2][: bias.shape[0]]
            W = layer.W
            K.forward_row(W.indptr, W.indices, W.data, bias, a, z, *acts[l])
            a = z
    output_forward(net.out_activation, out.T)
    return out


def predict_output(net, X, chunk=None):
    """Output activations for all rows of ``X`` (dense or CSR), shape ``(n, n_outputs)``."""
    n = X.shape[0]
    sparse = sp.issparse(X)
    if n <= _SERIAL_PREDICT and not sparse:
        return _predict_rows_serial(net, X)
    dtype = net.dtype
    sizes = net.n_neurons
    csr, views = False, None
    if _cached_views(net):
        views = [_predict_view(layer.W) for layer in net.layers]  # reused between calls
    else:  # no cache: for a few rows, scattering beats transposing every weight matrix
        csr = n <= _CSR_PREDICT
    if chunk is None:
        # as many rows as the cache, the activation budget and the free memory allow
        ws = Workspace(net, min(n, cfg.PREDICT_CHUNK_ROWS), training=False, sparse_input=sparse)
        chunk = ws.micro
    else:
        chunk = max(1, min(chunk, n))
        ws = Workspace(net, chunk, training=False, sparse_input=sparse, activation_budget=1 << 62,
                       available=np.inf)
    csr = csr or ws.lean
    if views is not None:
        ws.trans = views
    out = np.empty((n, sizes[-1]), dtype=dtype)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        B = stop - start
        nt, tb = choose_tiles(B, max(sizes), dtype.itemsize)
        if ws.lean or nt * tb > ws.nt * ws.tb:
            nt, tb = ws.nt, _round_panel(-(-B // ws.nt))
        idx = np.arange(start, stop)
        acts, _, _ = _forward(net, ws, X, idx, B, nt, tb, None, 0.0, csr=csr)
        P.untile_rows(acts[-1], B, out, start)
    output_forward(net.out_activation, out.T)
    return out

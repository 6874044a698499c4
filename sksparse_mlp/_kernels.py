"""Numba kernels for truly sparse layers.

Layout conventions (see ``docs/ARCHITECTURE.md``):

* a layer's weights ``W`` (shape ``(n_in, n_out)``) are given by the CSR arrays
  ``indptr``, ``indices``, ``data``; index arrays may be int32 or int64 and values
  float32 or float64 (each combination is compiled once and cached on disk);
* activations are *transposed*: ``At`` has shape ``(n_units, batch)`` and is
  C-contiguous, so the innermost loops run over the batch with unit stride;
* every output is preallocated by the caller and overwritten, never accumulated.

All kernels are race free: each output element is written by exactly one thread.
They serve the one training and prediction path, :mod:`._fastpath` (the forward pass
gathers through the CSC view of ``W`` that :func:`._panels.transpose_pattern` builds
once per topology); the plain numpy/numba reference they are tested against lives in
``tests/reference.py``.
"""
import numpy as np
from numba import njit, prange

from ._intrinsics import (
    FUSED,
    FUSED_CODES,
    SWEEP_ADD,
    SWEEP_WRITE,
    VEC_BYTES,
    claim,
    column_fma1,
    column_fma2,
    column_fma4,
    column_fma8,
    column_pair_fma1,
    column_pair_fma2,
    column_pair_fma4,
    column_pair_fma8,
    publish,
    read_flag,
    row_sweep1,
    row_sweep1_delta,
    row_sweep2,
    row_sweep2_delta,
    row_sweep4,
    row_sweep4_delta,
    row_sweep8,
    row_sweep8_delta,
    yield_cpu,
)
from ._jit import OPTS as _OPTS
from ._steps import adam_update, momentum_update

__all__ = [
    "forward_tiled",
    "backward_tiled",
]


# ---------------------------------------------------------------------------------
# Fused training kernels on a *tiled* transposed layout.
#
# A batch of activations of a layer with n units is stored as ``A3`` of shape
# ``(nt, n, TB)``: the (padded) batch is cut into ``nt`` panels of ``TB`` samples,
# sample ``b`` living at ``A3[b // TB, :, b % TB]``.  Each thread works on whole
# panels, so a panel of the gathered matrix stays in its core's L2 cache, and every
# inner loop runs over ``range(TB)`` with unit stride (vectorised, no wraparound
# checks).  Padded samples carry zero input and zero output delta, so they never
# contribute to a gradient.
#
# Hidden-layer derivatives are kept as one byte per activation: bit 0 = ``z > 0``,
# bit 1 = kept by dropout; the derivative is rebuilt from that code and the
# activation itself (see ``_deriv``).  Activation codes: 0 piecewise linear
# (ReLU / leaky ReLU / All-ReLU, slope ``s`` for z <= 0), 1 tanh, 2 logistic,
# 3 identity; -1 = no activation (output layer, raw pre-activations).
# ---------------------------------------------------------------------------------

ACT_PIECEWISE = 0
ACT_TANH = 1
ACT_LOGISTIC = 2
ACT_IDENTITY = 3
ACT_NONE = -1

_M32 = 0xFFFFFFFF


@njit(inline="always")
def _hash32(x):
    # Wellons' "lowbias32" integer hash; arithmetic stays in 32 bits after masking,
    # which LLVM turns into vectorised 32-bit multiplies
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _M32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_threshold(keep):
    """Integer threshold of the counter-based dropout RNG for a keep probability."""
    return min(_M32, int(round(keep * 4294967296.0)))


@njit(inline="always")
def _activate_row(z, g, j, b_first, act, s, thr, seed, scale):
    """Activation, derivative code and dropout of one neuron's row ``z`` (in place).

    ``g`` receives the codes; ``b_first`` is the batch index of ``z[0]``, so that the
    dropout mask of a (neuron, sample) does not depend on how the batch is tiled.
    Written over 1-D rows so that LLVM vectorises every loop.
    """
    TB = z.shape[0]
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    s_ = z.dtype.type(s)
    sc = z.dtype.type(scale)
    base = (_hash32((seed + j * 0x9E3779B9) & _M32) + b_first) & _M32
    if act == ACT_PIECEWISE:
        if thr == 0:
            for b in range(TB):
                # a product with a selected factor, not a select of two values: LLVM
                # turns the latter into a masked store (microcoded on AMD, 4x slower)
                pos = z[b] > 0
                z[b] *= one if pos else s_
                g[b] = 3 if pos else 2
        else:
            for b in range(TB):
                pos = z[b] > 0
                kept = _hash32((base + b) & _M32) < thr
                z[b] *= (one if pos else s_) * sc if kept else zero
                g[b] = (2 if kept else 0) + (1 if pos else 0)
        return
    if act == ACT_TANH:
        for b in range(TB):
            z[b] = np.tanh(z[b])
    elif act == ACT_LOGISTIC:
        for b in range(TB):
            v = z[b]
            e = np.exp(-abs(v))
            z[b] = (one if v >= 0 else e) / (one + e)
    if thr == 0:
        for b in range(TB):
            g[b] = 2
    else:
        for b in range(TB):
            kept = _hash32((base + b) & _M32) < thr
            z[b] = z[b] * sc if kept else zero
            g[b] = 2 if kept else 0


# A gather from a panel larger than this reads its rows from memory rather than from
# the caches; the kernels then prefetch the row of the connection this many places on
# (across columns or rows: at scale each has a handful of connections), and the
# forward pass reads values gathered into CSC order (see _workspace).  Measured,
# 3 x 300,000 and 3 x 1,000,000 hidden neurons at epsilon 2, micro-batches of 48:
# 2.96 -> 1.66 and 3.3-3.6 -> 2.0-2.4 ns per connection and sample; 8 places ahead
# gained less, 24 and 32 no more.  Values read through the CSC view's permutation are
# prefetched as far ahead at any size: the backward step last wrote them, often on
# the other core (forward after it: 784 x 1000 284 -> 241 us, 1000 x 1000 430 -> 372).
PREFETCH_PANEL_BYTES = 4 << 20
_PREFETCH_AHEAD = 16
# Rows gathered at random from a panel larger than L1 are prefetched at any size: in an
# epoch the panel was just written, half of it by the other core.  Benchmark network,
# 2 x 64 samples, epochs alternated in one process: backward kernels 0.81-0.92x with
# the delta rows prefetched (hot too: 1000 x 1000 at 2 threads 398 -> 364 us), forward
# kernels 0.94x with the rows prefetched beside the values; both, 20 pairs: epochs
# 0.89x at 2 threads (backward 0.86x, forward 0.92x), 0.78x at 1 thread.  Not the
# dense output layer: its few delta rows stay in L1 and its columns read rows in order
# (5-9 % slower prefetching).
PREFETCH_ROWS_BYTES = 32 << 10


@njit(inline="always")
def _prefetch_ahead(X3, limit=PREFETCH_PANEL_BYTES):
    """How far ahead the gathers from one panel of ``X3`` prefetch (0: not at all)."""
    large = X3.shape[1] * X3.shape[2] * X3.itemsize > limit
    return _PREFETCH_AHEAD if large else 0


@njit(inline="always")
def _column_sums(Ap, t_indices, t_perm, data, k0, k1, bj, z, g, piecewise, slope, ahead,
                 rows):
    """``z[:] = bj + W[:, j].T @ Ap`` for the connections ``k0:k1`` (CSC view) of neuron ``j``.

    With ``piecewise`` (:data:`FUSED_CODES` or :data:`FUSED`) the result is activated
    (``z`` if positive, else ``slope * z``) straight from the registers, and with
    :data:`FUSED_CODES` its derivative codes are written to ``g``.  An empty ``t_perm``
    means ``data`` is in CSC order already.  ``ahead``: prefetch distance (0: none);
    ``rows``: through ``t_perm``, prefetch the rows too, not only the values.
    """
    TB = z.shape[0]
    lanes = VEC_BYTES // z.itemsize
    b0 = 0
    a, c = (Ap, t_indices, t_perm, data, k0, k1), (bj, z, g, piecewise, slope, ahead, rows)
    while b0 + 8 * lanes <= TB:
        column_fma8(*a, b0, *c)
        b0 += 8 * lanes
    if b0 + 4 * lanes <= TB:
        column_fma4(*a, b0, *c)
        b0 += 4 * lanes
    if b0 + 2 * lanes <= TB:
        column_fma2(*a, b0, *c)
        b0 += 2 * lanes
    if b0 + lanes <= TB:
        column_fma1(*a, b0, *c)
        b0 += lanes
    direct = t_perm.shape[0] == 0
    for b in range(b0, TB):  # panels are multiples of 16 samples: only direct callers
        acc = bj
        for k in range(k0, k1):
            w = data[k] if direct else data[np.uint64(t_perm[k])]
            acc += w * Ap[np.uint64(t_indices[k]), b]
        pos = acc > 0
        if piecewise:
            if piecewise == FUSED_CODES:
                g[b] = 3 if pos else 2
            acc = acc if pos else slope * acc
        z[b] = acc


@njit(inline="always")
def _column_pair_sums(Ap, idx, data, k0, k1, stride, bias0, bias1, z0, z1):
    """:func:`_column_sums` of two columns over the same rows (a dense layer, values in
    CSC order: the second column's connection ``k`` is ``k + stride``), no activation;
    ``z0.shape[0]`` a multiple of the vector width (no scalar remainder)."""
    TB = z0.shape[0]
    lanes = VEC_BYTES // z0.itemsize
    widest = 8 if VEC_BYTES == 64 else 4  # 2 x 8 sums would spill 16 AVX2 registers
    b0 = 0
    a, c = (Ap, idx, data, k0, k1, stride), (bias0, bias1, z0, z1)
    while widest == 8 and b0 + 8 * lanes <= TB:
        column_pair_fma8(*a, b0, *c)
        b0 += 8 * lanes
    while b0 + 4 * lanes <= TB:
        column_pair_fma4(*a, b0, *c)
        b0 += 4 * lanes
    if b0 + 2 * lanes <= TB:
        column_pair_fma2(*a, b0, *c)
        b0 += 2 * lanes
    if b0 + lanes <= TB:
        column_pair_fma1(*a, b0, *c)


# spins of a waiting thread before it yields its core at every further look: a
# thread the OS has descheduled (a busy neighbour, an overloaded host) then gets
# the core back instead of watching a spinning sibling use up its time slice
_SPINS_BEFORE_YIELD = 2000


@njit(inline="always")
def _wait_until(flags, i, target):
    """Return once ``flags[i] >= target`` (written by another thread)."""
    n = 0
    while read_flag(flags, i) < target:
        n += 1
        if n > _SPINS_BEFORE_YIELD:
            yield_cpu()


# Work is cut into this many blocks per thread (about equal connection counts).  Each
# thread owns a queue: its own contiguous blocks, panel after panel (so its rows'
# data stay in its core's caches); a thread whose queue is empty takes the next task
# of another's queue, so a thread that the OS stalls (a busy neighbour on a shared
# machine) does not make every parallel region wait for it.
BLOCKS_PER_THREAD = 8


@njit(inline="always")
def _next_task(counters, own, per_queue):
    """``(queue, task)`` claimed from the thread's own queue first, then from the
    others'; ``queue == -1`` when every queue is empty."""
    n = counters.shape[0]
    for k in range(n):
        d = (own + k) % n
        if read_flag(counters, d) < per_queue:  # cheap look before the atomic claim
            q = claim(counters, d)
            if q < per_queue:
                return d, q
    return -1, 0


@njit(inline="always")
def _chunk_bounds(indptr, c, n_chunks):
    """Rows ``[r0, r1)`` of chunk ``c`` of ``n_chunks``, with about equal connection counts."""
    n = indptr.shape[0] - 1
    nnz = indptr[n]
    r0 = 0 if c == 0 else np.searchsorted(indptr, (nnz * c) // n_chunks)
    r1 = n if c == n_chunks - 1 else np.searchsorted(indptr, (nnz * (c + 1)) // n_chunks)
    return min(r0, n), min(r1, n)


def kernel_scratch(n_threads, row_width, dtype):
    """Scratch of :func:`forward_tiled` and :func:`backward_tiled` for up to ``n_threads``
    threads and rows of ``row_width`` items: ``(sched, block_sq, rows)``.  Made once per
    workspace: allocating them in every call cost about 2 us each, a third of a small
    layer's call."""
    n_blocks = n_threads * BLOCKS_PER_THREAD
    return (np.zeros(n_threads + n_blocks, np.int64), np.zeros(n_blocks),
            np.zeros((n_threads, row_width), dtype))


@njit(**_OPTS)
def longest_row(indptr):
    """The most connections of any row of a CSR pattern."""
    longest = 0
    for i in range(indptr.shape[0] - 1):
        longest = max(longest, indptr[i + 1] - indptr[i])
    return longest


@njit(parallel=True, **_OPTS)
def forward_tiled(t_indptr, t_indices, t_perm, data, bias, A3, Z3, G3, act, s, thr, seed, scale,
                  n_threads, sched, rows):
    """``Z = f(W.T @ A + bias)`` on the tiled layout, from the CSC view of ``W``.

    ``t_indptr, t_indices, t_perm`` come from :func:`transpose_pattern`.  With
    ``act >= 0`` the activation is applied in place and the derivative code of
    every unit is written to ``G3`` (uint8, same shape as ``Z3``); with ``thr > 0``
    inverted dropout keeps a unit when ``hash(seed, neuron, sample) < thr`` and
    scales kept units by ``scale``.  ``act == -1`` leaves the raw pre-activations.
    Prediction passes ``G3`` with no panels (no codes wanted; the ReLU-like activation
    without dropout only) and, over many panels, an empty ``t_perm`` with ``data``
    gathered into CSC order once (``data[t_perm]``), which saves the permuted load
    of every connection in every panel.

    The output neurons are cut into blocks of about equal connection counts,
    :data:`BLOCKS_PER_THREAD` per thread; each of the ``n_threads`` threads sweeps
    its own blocks panel after panel (the panel it gathers from stays in its L2, as
    in the probe) and then helps with the others' (:func:`_next_task`).  The sums of
    one neuron stay in registers (:func:`_column_sums`).  ``sched`` (int64, at least
    ``n_threads`` items) holds the queues' counters; through ``t_perm``, a block whose
    values fit a row of ``rows`` (one per thread) gathers them there first and reads
    them in order (both from :func:`kernel_scratch`; ``rows`` may have no columns).
    """
    nt, n_out, TB = Z3.shape
    if sched.shape[0] < n_threads or rows.shape[0] < (n_threads if rows.shape[1] else 1):
        raise ValueError("forward_tiled: the scratch buffers are too small")
    codes = G3.shape[0] > 0
    if act >= 0 and codes and G3.shape != Z3.shape:  # no bounds checks below
        raise ValueError("forward_tiled: the code buffer does not match the output")
    fused = 0
    if act == ACT_PIECEWISE and thr == 0:
        fused = FUSED_CODES if codes else FUSED
    elif act >= 0 and not codes:
        raise ValueError("forward_tiled: this activation needs a code buffer")
    slope = Z3.dtype.type(s)
    if t_perm.shape[0] == 0:
        ahead, prefetch_rows = _prefetch_ahead(A3), False
    else:  # the rows too unless the layer is dense
        ahead = _PREFETCH_AHEAD
        prefetch_rows = (_prefetch_ahead(A3, PREFETCH_ROWS_BYTES) > 0
                         and t_indptr[n_out] < A3.shape[1] * n_out)
    # a dense layer without activation sweeps its columns in pairs (values in order;
    # whole vectors: engine panels are multiples of 16 samples)
    pairs = (act < 0 and t_indptr[n_out] == A3.shape[1] * n_out
             and TB % (VEC_BYTES // Z3.itemsize) == 0)
    per = max(1, min(n_out // (2 * n_threads if pairs else n_threads), BLOCKS_PER_THREAD))
    n_blocks = per * n_threads
    counters = sched[:n_threads]
    counters[:] = 0
    no_codes = G3.reshape(G3.size)[:0]  # a uint8 row that nothing writes
    for own in prange(n_threads):
        buf = rows[np.int64(own) if rows.shape[1] else 0]
        while True:
            d, q = _next_task(counters, own, nt * per)
            if d < 0:
                break
            t = q // per
            j0, j1 = _chunk_bounds(t_indptr, d * per + q - t * per, n_blocks)
            p0, p1 = t_indptr[j0], t_indptr[j1]
            if t_perm.shape[0] and p1 - p0 <= buf.shape[0]:
                # the block's values in order first: reading them through the
                # permutation in the loop below cost 1.12-1.16x (1000 x 1000, hot)
                vals = buf[:p1 - p0]
                u0 = np.uint64(p0)
                for p in range(u0, np.uint64(p1)):  # unsigned: no wraparound tests
                    vals[p - u0] = data[np.uint64(t_perm[p])]
                _forward_columns(t_indptr, t_indices[p0:p1], t_perm[:0], vals, p0, bias, A3,
                                 Z3, G3, act, s, thr, seed, scale, t, j0, j1, fused, slope,
                                 ahead if prefetch_rows else 0, False, no_codes, pairs)
            else:
                _forward_columns(t_indptr, t_indices, t_perm, data, 0, bias, A3, Z3, G3, act,
                                 s, thr, seed, scale, t, j0, j1, fused, slope, ahead,
                                 prefetch_rows, no_codes, pairs and t_perm.shape[0] == 0)


# _nrt=False (here and in _backward_rows): no reference counting.  numba counts every
# row or column view made in the loops with an atomic increment and decrement on the
# parent array's count, a cache line both threads share (about 20 pairs per backward
# row); these functions allocate nothing, so they need no counts.
@njit(_nrt=False, **_OPTS)
def _forward_columns(t_indptr, t_indices, t_perm, data, off, bias, A3, Z3, G3, act, s, thr,
                     seed, scale, t, j0, j1, fused, slope, ahead, rows, no_codes, pairs):
    """The work of :func:`forward_tiled` on output neurons ``j0:j1`` of panel ``t``;
    ``t_indices``, ``t_perm`` and ``data`` start at connection ``off``; with ``pairs``
    (a dense layer, values in order, no activation) two columns per sweep."""
    TB = Z3.shape[2]
    codes = G3.shape[0] > 0
    Ap = A3[t]
    first = j0
    while pairs and first + 1 < j1:
        k0, k1 = t_indptr[first] - off, t_indptr[first + 1] - off
        _column_pair_sums(Ap, t_indices, data, k0, k1, k1 - k0, bias[first], bias[first + 1],
                          Z3[t, first], Z3[t, first + 1])
        first += 2
    for j in range(first, j1):
        z = Z3[t, j]
        g = G3[t, j] if act >= 0 and codes else no_codes
        _column_sums(Ap, t_indices, t_perm, data, t_indptr[j] - off, t_indptr[j + 1] - off,
                     bias[j], z, g, fused, slope, ahead, rows)
        if act >= 0 and not fused:
            _activate_row(z, g, j, t * TB, act, s, thr, seed, scale)


@njit(inline="always")
def _deriv(code, a, act, s, inv_scale, scale):
    """f'(z) times the dropout factor, from the derivative code and activation ``a``."""
    if code < 2:
        return a * 0
    if act == ACT_PIECEWISE:
        d = scale if code & 1 else s * scale
    elif act == ACT_TANH:
        f = a * inv_scale
        d = (1 - f * f) * scale
    elif act == ACT_LOGISTIC:
        f = a * inv_scale
        d = f * (1 - f) * scale
    else:
        d = scale
    return d


# Rows with their sums in ``gbuf`` step together once they hold this many connections
# (contiguous; a row's backward reads only its own old weights): a loop per row cost
# 1.07-1.15x in the output layer's backward, 1.04-1.06x per epoch, and 24 KB (SGD) of
# values, moments and sums are still in L1 or L2 from the sweep at any scale.
STEP_CHUNK = 2048
# With one panel the sums are in the thread's scratch row and the rows step once they
# hold this many connections, while their sums, values and moments are still in L1
# (a step per row: the 1000 x 10 output layer's backward 52 -> 47-50 us at 2 threads,
# 89 -> 80-87 at 1; the others even to 3 % faster)
SCRATCH_STEP_CHUNK = 256

GRAD_WRITE = 0
GRAD_ADD = 1
GRAD_STEP = 2
GRAD_ADAM = 3


@njit(inline="always")
def _row_sweep(x, Dp, indices, data, k0, k1, b0, nv, e, grad, goff, mode, codes, epilogue, hi,
               lo, do_bwd, ahead):
    """One register block of :func:`_row_sums` (``nv`` vectors from sample ``b0``)."""
    a = (Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode, codes, epilogue, hi, lo, ahead)
    if do_bwd:
        if nv == 8:
            return row_sweep8_delta(*a)
        if nv == 4:
            return row_sweep4_delta(*a)
        return row_sweep2_delta(*a) if nv == 2 else row_sweep1_delta(*a)
    if nv == 8:
        return row_sweep8(*a)
    if nv == 4:
        return row_sweep4(*a)
    return row_sweep2(*a) if nv == 2 else row_sweep1(*a)


@njit(inline="always")
def _row_sums(x, Dp, indices, data, k0, k1, e, grad, goff, first, do_bwd, codes, epilogue, hi,
              lo, ahead):
    """Gradient (into ``grad[k - goff]``) and, with ``do_bwd``, the delta of one input
    neuron's connections ``k0:k1`` over one panel row ``x``, in register blocks of 8,
    4, 2 and 1 vectors.

    ``first``: no earlier panel wrote ``grad``.  With ``epilogue`` (ReLU-like or
    identity activation below) each block writes its delta, ``e * (hi or lo, by the
    code's sign bit, or 0 when dropped)``, over ``x`` straight from the registers;
    otherwise the delta sums go to ``e`` for the caller.  Returns the sum of the
    deltas written and how many samples the register blocks covered.
    """
    TB = x.shape[0]
    lanes = VEC_BYTES // x.itemsize
    zero = x.dtype.type(0)
    b0 = 0
    bias = zero
    while b0 + lanes <= TB:
        nv = 8 if b0 + 8 * lanes <= TB else (4 if b0 + 4 * lanes <= TB else
                                             (2 if b0 + 2 * lanes <= TB else 1))
        mode = SWEEP_WRITE if first and b0 == 0 else SWEEP_ADD
        bias += _row_sweep(x, Dp, indices, data, k0, k1, b0, nv, e, grad, goff, mode, codes,
                           epilogue, hi, lo, do_bwd, ahead)
        b0 += nv * lanes
    if b0 < TB:  # panels are multiples of 16 samples: only direct callers get here
        for b in range(b0, TB):
            e[b] = zero
        for k in range(k0, k1):
            d = Dp[np.uint64(indices[k])]
            w = data[k]
            acc = grad[k - goff] if not (first and b0 == 0) else zero
            for b in range(b0, TB):
                acc += x[b] * d[b]
                if do_bwd:
                    e[b] += w * d[b]
            grad[k - goff] = acc
    return bias, b0


@njit(inline="always")
def _step_range(data, velocity, second, grad, goff, k0, k1, adam, lr, mu, b2, wd, aeps,
                nesterov):
    """The optimizer step of connections ``k0:k1`` (gradients ``grad[k - goff]``, complete,
    the old weights used): contiguous, so LLVM vectorises it.  Returns the old L2 sum."""
    sq = 0.0
    g0 = np.uint64(goff)  # unsigned positions: no wraparound tests in the loop
    if adam:
        for k in range(np.uint64(k0), np.uint64(k1)):
            sq += adam_update(data, velocity, second, k, grad[k - g0], lr, mu, b2, wd, aeps)
    else:
        for k in range(np.uint64(k0), np.uint64(k1)):
            sq += momentum_update(data, velocity, k, grad[k - g0], lr, mu, wd, nesterov)
    return sq


@njit(_nrt=False, **_OPTS)  # no reference counting: see _forward_columns
def _backward_rows(indptr, indices, data, A3, D3, G3, gbuf, mode, do_bwd, act, s, scale,
                   bsum, velocity, lr, mu, wd, nesterov, i0, i1, t, gs, e, second, b2, aeps,
                   ahead):
    """The work of :func:`backward_tiled` on input neurons ``i0:i1`` of panel ``t``;
    ``gs`` (with one panel stepping, the gradient sums of the rows not yet stepped) and
    ``e`` (a row's delta sums) are the thread's scratch."""
    nt, n_in, TB = A3.shape
    isc = 1 / scale
    # a single panel that steps at once keeps its rows' gradient sums in the scratch row
    step = mode >= GRAD_STEP
    adam = mode == GRAD_ADAM
    scratch = nt == 1 and step
    grad = gs if scratch else gbuf[0]
    chunk = SCRATCH_STEP_CHUNK if scratch else STEP_CHUNK
    # ReLU-like and identity activations: deltas written by the register epilogue
    epilogue = act == ACT_PIECEWISE or act == ACT_IDENTITY
    lo = s * scale if act == ACT_PIECEWISE else scale
    sq = 0.0
    Ap = A3[t]
    Dp = D3[t]
    first = t == 0 and mode != GRAD_ADD
    last = t == nt - 1 and step
    pending = indptr[i0]  # the rows from here on step together (STEP_CHUNK)
    for i in range(i0, i1):
        k0 = indptr[i]
        k1 = indptr[i + 1]
        x = Ap[i]
        codes = G3[t, i] if do_bwd else G3[0, 0]
        goff = pending if scratch else 0
        acc, b0 = _row_sums(x, Dp, indices, data, k0, k1, e, grad, goff, first, do_bwd, codes,
                            epilogue, scale, lo, ahead)
        if do_bwd:
            # the rest of the row (all of it without the epilogue) from the sums in e
            for b in range(0 if not epilogue else b0, TB):
                v = e[b] * _deriv(codes[b], x[b], act, s, isc, scale)
                x[b] = v
                acc += v
            if mode == GRAD_ADD:
                bsum[t, i] += acc
            else:
                bsum[t, i] = acc
        if last and (k1 - pending >= chunk or i == i1 - 1):
            sq += _step_range(data, velocity, second, grad, goff, pending, k1, adam, lr, mu,
                              b2, wd, aeps, nesterov)
            pending = k1
    return sq


@njit(parallel=True, **_OPTS)
def backward_tiled(indptr, indices, data, A3, D3, G3, gbuf, mode, do_bwd, act, s, scale,
                   bsum, velocity, lr, momentum, l2, nesterov, n_threads, second, beta_2,
                   adam_eps, sched, block_sq, rows):
    """Fused SDDMM gradient, backward pass and (optionally) optimizer step of one layer.

    For every connection ``k`` = (i, j) the gradient is
    ``g = sum_t sum_b A3[t, i, b] * D3[t, j, b]`` over all panels; ``mode`` 0 stores
    it in ``gbuf[0, k]``, 1 adds it there (micro-batches), 2 applies the momentum
    step of :func:`momentum_step` to ``data[k]`` / ``velocity[k]`` and 3 the Adam step
    of :func:`adam_step` in the last panel, once the old weights fed the backward
    product (which only reads row ``i``), in contiguous loops that LLVM vectorises
    (:data:`STEP_CHUNK`; a scalar step inside the register sweep cost 1.16x); moments
    ``velocity`` and ``second``, ``momentum`` = beta_1, ``lr`` bias-corrected; the
    other modes do not read ``second``, ``beta_2`` and ``adam_eps``.  With more than
    one panel, modes 0, 2 and 3 use ``gbuf[0]`` for the sums of the earlier panels, and
    with one panel modes 2 and 3 a scratch row.

    With ``do_bwd`` the delta of the layer below, ``(W @ D)[i] * f'(z_i)``,
    *replaces* ``A3[t, i, :]`` (row ``i`` of the activations is only needed by the
    gradients of row ``i``, computed just before), so deltas need no buffers of
    their own.  The derivative is rebuilt from ``G3`` (codes) and the activation
    (``act``, slope ``s`` and dropout ``scale`` describe the layer below), and
    ``bsum[t, i] (+)= sum_b delta[t, i, b]`` is its bias gradient (added in mode 1).

    The input neurons are cut into blocks of about equal connection counts,
    :data:`BLOCKS_PER_THREAD` per thread; each thread sweeps its own blocks panel
    after panel (their gradient sums and weights stay in its caches) and then helps
    with the others' (:func:`_next_task`).  Block ``b`` of panel ``t`` waits until
    block ``b`` of panel ``t - 1`` is done, so that the gradient sums of a
    connection build up in panel order and are complete, ready for the step, in the
    last panel; that wait is only ever taken for a block taken over from a stalled
    thread.  Returns ``sum(data**2)`` before the step in
    modes 2 and 3 (summed in block order: the same for any thread count and schedule),
    else 0.

    ``sched``, ``block_sq`` and ``rows`` are the scratch of :func:`kernel_scratch`: the
    queues' counters and blocks' panel counts, the blocks' L2 sums, and per thread a
    row of delta sums (and, with one panel stepping, gradient sums for
    :data:`SCRATCH_STEP_CHUNK` connections plus the longest row).
    """
    T = A3.dtype.type
    nt, n_in, TB = A3.shape
    per = max(1, min(n_in // n_threads, BLOCKS_PER_THREAD))  # blocks per queue
    n_blocks = per * n_threads
    # one panel stepping: a chunk of rows' gradient sums in the scratch row
    longest = longest_row(indptr) + SCRATCH_STEP_CHUNK if nt == 1 and mode >= GRAD_STEP else 0
    if (sched.shape[0] < n_threads + n_blocks or block_sq.shape[0] < n_blocks
            or rows.shape[0] < n_threads or rows.shape[1] < TB + longest):
        raise ValueError("backward_tiled: the scratch buffers are too small")
    counters = sched[:n_threads]
    done = sched[n_threads:n_threads + n_blocks]  # panels finished, per block
    sched[:n_threads + n_blocks] = 0
    block_sq = block_sq[:n_blocks]
    block_sq[:] = 0
    ahead = _prefetch_ahead(D3, PREFETCH_ROWS_BYTES)
    for own in prange(n_threads):
        e = rows[own, :TB]
        gs = rows[own, TB:TB + longest]
        while True:
            d, q = _next_task(counters, own, nt * per)
            if d < 0:
                break
            t = q // per
            blk = d * per + q - t * per
            _wait_until(done, blk, t)  # the same rows' previous panel still running
            i0, i1 = _chunk_bounds(indptr, blk, n_blocks)
            block_sq[blk] += _backward_rows(indptr, indices, data, A3, D3, G3, gbuf, mode,
                                            do_bwd, act, T(s), T(scale), bsum, velocity, T(lr),
                                            T(momentum), T(l2), nesterov, i0, i1, t, gs, e,
                                            second, T(beta_2), T(adam_eps), ahead)
            publish(done, blk, t + 1)
    return block_sq.sum()

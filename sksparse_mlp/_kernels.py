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
gathers through the CSC view of ``W`` that :func:`transpose_pattern` builds once per
topology); the plain numpy/numba reference they are tested against lives in
``tests/reference.py``.
"""
import os
import sys

# numba's OpenMP pool waits between parallel regions (a training step has about ten
# per batch).  Sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every region wake a
# sleeping thread, and a region's end waits for a thread the OS has not run yet;
# spinning without bound (libgomp's default, ~3 ms) collapses when the machine has
# more runnable threads than cores, since a spinning thread burns the time slice
# its sibling needs.  A bounded spin (about 0.2 ms) bridges the gap between the
# regions of one batch and still sleeps when nothing follows.  Epochs of the
# benchmark network, processes alternated on a 2-core host shared with other jobs:
# 0.24-0.27 s spinning (20000 or 300000) against 0.47-0.57 s passive when the
# other jobs ran at lower priority; when they competed at equal priority (load 6-12)
# 1.2-1.7 s at 20000, 7.5-10 s at 300000 and 0.9-1.2 s passive.  The user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.  Takes effect when numba starts its
# OpenMP threads (at the first parallel kernel call), so it must run before that.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

__all__ = [
    "forward_tiled",
    "backward_tiled",
    "momentum_step",
    "adam_step",
    "transpose_pattern",
]

# Reassociation lets LLVM vectorise the dot products; NaN / inf semantics are kept
# (no 'nnan' / 'ninf') so a diverging network is still detected by the caller.
_FM = {"reassoc", "contract", "nsz", "arcp"}
_OPTS = dict(cache=True, nogil=True, fastmath=_FM)



@njit(inline="always")
def _step(data, velocity, k, g, lr, mu, wd, nesterov):
    """Momentum step of connection ``k`` (rule of :func:`momentum_step`) from gradient
    ``g`` without the L2 term; returns the old ``data[k] ** 2``."""
    w = data[k]
    g = g + wd * w
    v = mu * velocity[k] - lr * g
    velocity[k] = v
    if nesterov:
        data[k] = w + (mu * v - lr * g)
    else:
        data[k] = w + v
    return w * w


@njit(parallel=True, **_OPTS)
def momentum_step(data, velocity, grad, lr, momentum, l2, nesterov):
    """Fused momentum SGD step, in place over the values arrays.

    ``g = grad + l2 * data; velocity = momentum * velocity - lr * g``; then
    ``data += velocity`` (heavy ball) or ``data += momentum * velocity - lr * g``
    (Nesterov).  ``grad`` is read only.  The rule is :func:`_step`'s.
    """
    t = data.dtype.type
    lr_ = t(lr)
    mu = t(momentum)
    wd = t(l2)
    for k in prange(data.shape[0]):
        _step(data, velocity, k, grad[k], lr_, mu, wd, nesterov)


@njit(inline="always")
def _adam_step(data, m, v, k, g, lr_t, b1, b2, wd, eps):
    """Adam step of connection ``k`` (rule of :func:`adam_step`) from gradient ``g``
    without the L2 term; returns the old ``data[k] ** 2``."""
    w = data[k]
    g = g + wd * w
    mk = b1 * m[k] + (1 - b1) * g
    vk = b2 * v[k] + (1 - b2) * (g * g)
    m[k] = mk
    v[k] = vk
    data[k] = w - lr_t * mk / (np.sqrt(vk) + eps)
    return w * w


def adam_rate(lr, beta_1, beta_2, t):
    """Bias-corrected step size of Adam's ``t``-th step (1-based), as scikit-learn's."""
    return lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)


@njit(parallel=True, **_OPTS)
def adam_step(data, m, v, grad, lr_t, beta_1, beta_2, l2, eps):
    """Fused Adam step, in place over the values arrays (scikit-learn's rule).

    ``g = grad + l2 * data; m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g**2;
    data -= lr_t * m / (sqrt(v) + eps)`` with ``lr_t`` from :func:`adam_rate`.
    """
    t = data.dtype.type
    for k in prange(data.shape[0]):
        _adam_step(data, m, v, k, grad[k], t(lr_t), t(beta_1), t(beta_2), t(l2), t(eps))


@njit(parallel=True, **_OPTS)
def transpose_pattern(indptr, indices, n_cols):
    """CSR pattern of ``W.T`` plus the permutation into ``W``'s value order.

    Returns ``(t_indptr, t_indices, t_perm)`` with ``t_perm[q]`` the position in
    ``data`` of the ``q``-th entry of the transposed view, so that
    ``W.T.data == data[t_perm]``.  Within a column, rows are sorted.  Index arrays
    keep the dtype of ``indices`` (``t_perm`` that of ``indptr``).  O(nnz): a
    counting sort over a few row blocks in parallel (each block owns its slots).
    """
    n_rows = indptr.shape[0] - 1
    nnz = indptr[n_rows]
    C = 1 if nnz < 65536 else 8
    rb = np.empty(C + 1, np.int64)
    for c in range(C + 1):
        rb[c] = np.searchsorted(indptr, (nnz * c) // C)
    rb[0] = 0
    rb[C] = n_rows
    cnt = np.zeros((C, n_cols), dtype=indptr.dtype)
    for c in prange(C):
        for k in range(indptr[rb[c]], indptr[rb[c + 1]]):
            cnt[c, np.uint64(indices[k])] += 1
    t_indptr = np.empty(n_cols + 1, dtype=indptr.dtype)
    t_indptr[0] = 0
    for j in range(n_cols):
        run = t_indptr[j]
        for c in range(C):
            m = cnt[c, j]
            cnt[c, j] = run  # becomes block c's next slot in column j
            run += m
        t_indptr[j + 1] = run
    t_indices = np.empty(nnz, dtype=indices.dtype)
    t_perm = np.empty(nnz, dtype=indptr.dtype)
    for c in prange(C):
        for i in range(rb[c], rb[c + 1]):
            for k in range(indptr[i], indptr[i + 1]):
                j = np.uint64(indices[k])
                q = cnt[c, j]
                t_indices[q] = i
                t_perm[q] = k
                cnt[c, j] = q + 1
    return t_indptr, t_indices, t_perm


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
def _gather_block(X, idx, B, A3, q, nblk):
    """Task ``q`` of :func:`gather_input_tiled`: 32 features of one panel."""
    TB = A3.shape[2]
    n = A3.shape[1]
    t = q // nblk
    i0 = (q - t * nblk) * 32
    i1 = min(n, i0 + 32)
    for bb in range(TB):
        b = t * TB + bb
        if b < B:
            r = np.uint64(idx[b])
            for i in range(i0, i1):
                A3[t, np.uint64(i), bb] = X[r, np.uint64(i)]
        else:
            for i in range(i0, i1):
                A3[t, np.uint64(i), bb] = 0


@njit(parallel=True, **_OPTS)
def gather_input_tiled(X, idx, B, A3):
    """``A3[b // TB, :, b % TB] = X[idx[b], :]`` for ``b < B``, zero for padding.

    Parallel over (panel, block of 32 features); each block reads 32 contiguous
    values of a sample row and writes them down a column of the panel.
    """
    nt, n, TB = A3.shape
    nblk = (n + 31) // 32
    for q in prange(nt * nblk):
        _gather_block(X, idx, B, A3, q, nblk)


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


# ---------------------------------------------------------------------------------
# Register-blocked column sums for the forward pass.
#
# ``z[b0:b0 + w] += sum_k data[perm[k]] * A[idx[k], b0:b0 + w]`` over the connections
# ``k`` of one output neuron, with the ``w`` partial sums held in ``nv`` SIMD registers
# for the whole column: each gathered activation row feeds one FMA per vector and
# the output row is read and written once.  Numba's own vectoriser cannot express
# this (given scalar accumulators it vectorises the loop over connections, with
# gathers), so the loop is written in LLVM IR; LLVM still chooses the instructions
# and falls back to narrower vectors on CPUs without AVX.  Measured on a 1000 x 1000
# layer at 4 % density, batch 128: 1.15-1.4x the previous 8-connection unrolled loop.
# ---------------------------------------------------------------------------------

_VEC_BYTES = 32  # one AVX register


def _make_column_fma(nv):
    @intrinsic
    def column_fma(typingctx, A, idx, perm, data, k0, k1, b0, z, g, piecewise, slope):
        if not (isinstance(A, types.Array) and A.ndim == 2 and A.layout == "C"
                and isinstance(z, types.Array) and z.ndim == 1 and z.layout == "C"
                and isinstance(g, types.Array) and g.ndim == 1 and g.dtype == types.uint8
                and data.dtype == A.dtype == z.dtype):
            return None
        sig = types.void(A, idx, perm, data, k0, k1, b0, z, g, piecewise, slope)

        def codegen(context, builder, signature, args):
            tA, tidx, tperm, tdata, tk0, tk1, tb0, tz, tg, tpw, tslope = signature.args
            elem = context.get_data_type(tA.dtype)
            width = elem.get_abi_size(context.target_data)
            vec = ir.VectorType(elem, _VEC_BYTES // width)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            i8 = ir.IntType(8)
            cvec = ir.VectorType(i8, vec.count)
            arr_A = context.make_array(tA)(context, builder, args[0])
            arr_idx = context.make_array(tidx)(context, builder, args[1])
            arr_perm = context.make_array(tperm)(context, builder, args[2])
            arr_data = context.make_array(tdata)(context, builder, args[3])
            arr_z = context.make_array(tz)(context, builder, args[7])
            arr_g = context.make_array(tg)(context, builder, args[8])
            k0 = context.cast(builder, args[4], tk0, types.intp)
            k1 = context.cast(builder, args[5], tk1, types.intp)
            b0 = context.cast(builder, args[6], tb0, types.intp)
            piecewise = builder.icmp_unsigned(
                "!=", context.cast(builder, args[9], tpw, types.intp), ir.Constant(i64, 0))
            slope = context.cast(builder, args[10], tslope, tA.dtype)
            row_len = builder.extract_value(arr_A.shape, 1)

            def vec_at(base, c, ptr=vptr, count=vec.count):  # c-th vector after base
                return builder.bitcast(builder.gep(base, [ir.Constant(i64, c * count)]), ptr)

            def splat(v):
                v = builder.insert_element(ir.Constant(vec, None), v, ir.Constant(i64, 0))
                return builder.shuffle_vector(v, ir.Constant(vec, None),
                                              ir.Constant(ir.VectorType(ir.IntType(32), vec.count),
                                                          [0] * vec.count))

            def index(arr, ty, k):
                v = builder.load(builder.gep(arr.data, [k]))
                return context.cast(builder, v, ty.dtype, types.intp)

            # allocas in the entry block: LLVM promotes them to registers
            accs = [cgutils.alloca_once(builder, vec) for _ in range(nv)]
            zbase = builder.gep(arr_z.data, [b0])
            for c in range(nv):
                builder.store(builder.load(vec_at(zbase, c), align=width), accs[c])
            with cgutils.for_range(builder, builder.sub(k1, k0)) as loop:
                k = builder.add(k0, loop.index)
                wv = splat(builder.load(builder.gep(arr_data.data, [index(arr_perm, tperm, k)])))
                row = builder.gep(arr_A.data,
                                  [builder.add(builder.mul(index(arr_idx, tidx, k), row_len), b0)])
                for c in range(nv):
                    a = builder.load(vec_at(row, c), align=width)
                    prod = builder.fmul(wv, a, flags=("contract",))
                    builder.store(builder.fadd(builder.load(accs[c]), prod, flags=("contract",)),
                                  accs[c])
            with builder.if_else(piecewise) as (fused, plain):
                with fused:  # ReLU-like activation and derivative codes from the registers
                    gbase = builder.gep(arr_g.data, [b0])
                    sv = splat(slope)
                    for c in range(nv):
                        acc = builder.load(accs[c])
                        pos = builder.fcmp_ordered(">", acc, ir.Constant(vec, [0.0] * vec.count))
                        builder.store(builder.select(pos, acc, builder.fmul(acc, sv)),
                                      vec_at(zbase, c), align=width)
                        builder.store(builder.select(pos, ir.Constant(cvec, [3] * vec.count),
                                                     ir.Constant(cvec, [2] * vec.count)),
                                      vec_at(gbase, c, cvec.as_pointer(), vec.count), align=1)
                with plain:
                    for c in range(nv):
                        builder.store(builder.load(accs[c]), vec_at(zbase, c), align=width)
            return context.get_dummy_value()

        return sig, codegen

    return column_fma


_column_fma8 = _make_column_fma(8)
_column_fma4 = _make_column_fma(4)
_column_fma2 = _make_column_fma(2)


@njit(inline="always")
def _column_sums(Ap, t_indices, t_perm, data, k0, k1, z, g, piecewise, slope):
    """``z[:] += W[:, j].T @ Ap`` for the connections ``k0:k1`` (CSC view) of neuron ``j``.

    With ``piecewise`` the result is activated (``z`` if positive, else ``slope * z``)
    and its derivative codes written to ``g``, straight from the registers.
    """
    TB = z.shape[0]
    lanes = _VEC_BYTES // z.itemsize
    b0 = 0
    while b0 + 8 * lanes <= TB:
        _column_fma8(Ap, t_indices, t_perm, data, k0, k1, b0, z, g, piecewise, slope)
        b0 += 8 * lanes
    if b0 + 4 * lanes <= TB:
        _column_fma4(Ap, t_indices, t_perm, data, k0, k1, b0, z, g, piecewise, slope)
        b0 += 4 * lanes
    if b0 + 2 * lanes <= TB:
        _column_fma2(Ap, t_indices, t_perm, data, k0, k1, b0, z, g, piecewise, slope)
        b0 += 2 * lanes
    for b in range(b0, TB):  # panels are multiples of 16 samples: only direct callers
        acc = z[b]
        for k in range(k0, k1):
            acc += data[np.uint64(t_perm[k])] * Ap[np.uint64(t_indices[k]), b]
        pos = acc > 0
        if piecewise:
            g[b] = 3 if pos else 2
            acc = acc if pos else slope * acc
        z[b] = acc


def _make_atomic(op, ordering, doc, operand=None):
    """An intrinsic doing ``atomicrmw op`` on ``flags[i]`` (int64) and returning the old
    value; the operand is the constant ``operand``, or a third argument when None."""

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        val = (ir.Constant(ir.IntType(64), operand) if operand is not None
               else context.cast(builder, args[2], signature.args[2], types.int64))
        return builder.atomic_rmw(op, builder.gep(arr.data, [idx]), val, ordering)

    def typer(flags, *rest):
        if not (isinstance(flags, types.Array) and flags.dtype == types.int64):
            return None
        return types.int64(flags, *rest), codegen

    if operand is None:
        def atomic(typingctx, flags, i, value):
            return typer(flags, i, value)
    else:
        def atomic(typingctx, flags, i):
            return typer(flags, i)
    atomic.__doc__ = doc
    return intrinsic(atomic)


_claim = _make_atomic("add", "monotonic", "``flags[i] += 1``; returns the task claimed.", 1)
# a full barrier on x86: every write made before it is visible to a thread that then
# reads the new value
_publish = _make_atomic("xchg", "seq_cst", "``flags[i] = value``, atomically.")
# atomic, so that a spin loop sees other threads' updates
_read_flag = _make_atomic("add", "seq_cst", "``flags[i]``, read atomically.", 0)


def _yield_codegen(context, builder, signature, args):
    if sys.platform != "win32":  # elsewhere a spin without yield
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
    return context.get_dummy_value()


@intrinsic
def _yield_cpu(typingctx):
    """``sched_yield()``: give the core to another runnable thread."""
    return types.void(), _yield_codegen


# spins of a waiting thread before it yields its core at every further look: a
# thread the OS has descheduled (a busy neighbour, an overloaded host) then gets
# the core back instead of watching a spinning sibling use up its time slice
_SPINS_BEFORE_YIELD = 2000


@njit(inline="always")
def _wait_until(flags, i, target):
    """Return once ``flags[i] >= target`` (written by another thread)."""
    n = 0
    while _read_flag(flags, i) < target:
        n += 1
        if n > _SPINS_BEFORE_YIELD:
            _yield_cpu()


# Work is cut into this many blocks per thread (about equal connection counts).  Each
# thread owns a queue: its own contiguous blocks, panel after panel (so its rows'
# data stay in its core's caches); a thread whose queue is empty takes the next task
# of another's queue, so a thread that the OS stalls (a busy neighbour on a shared
# machine) does not make every parallel region wait for it.
_BLOCKS_PER_THREAD = 8


@njit(inline="always")
def _next_task(counters, own, per_queue):
    """``(queue, task)`` claimed from the thread's own queue first, then from the
    others'; ``queue == -1`` when every queue is empty."""
    n = counters.shape[0]
    for k in range(n):
        d = (own + k) % n
        if _read_flag(counters, d) < per_queue:  # cheap look before the atomic claim
            q = _claim(counters, d)
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


@njit(parallel=True, **_OPTS)
def forward_tiled(t_indptr, t_indices, t_perm, data, bias, A3, Z3, G3, act, s, thr, seed, scale,
                  n_threads):
    """``Z = f(W.T @ A + bias)`` on the tiled layout, from the CSC view of ``W``.

    ``t_indptr, t_indices, t_perm`` come from :func:`transpose_pattern`.  With
    ``act >= 0`` the activation is applied in place and the derivative code of
    every unit is written to ``G3`` (uint8, same shape as ``Z3``); with ``thr > 0``
    inverted dropout keeps a unit when ``hash(seed, neuron, sample) < thr`` and
    scales kept units by ``scale``.  ``act == -1`` leaves the raw pre-activations.

    The output neurons are cut into blocks of about equal connection counts,
    :data:`_BLOCKS_PER_THREAD` per thread; each of the ``n_threads`` threads sweeps
    its own blocks panel after panel (the panel it gathers from stays in its L2, as
    in the probe) and then helps with the others' (:func:`_next_task`).  The sums of
    one neuron stay in registers (:func:`_column_sums`).
    """
    nt, n_out, TB = Z3.shape
    fused = act == ACT_PIECEWISE and thr == 0
    slope = Z3.dtype.type(s)
    per = max(1, min(n_out // n_threads, _BLOCKS_PER_THREAD))  # blocks per queue
    n_blocks = per * n_threads
    counters = np.zeros(n_threads, np.int64)
    for own in prange(n_threads):
        while True:
            d, q = _next_task(counters, own, nt * per)
            if d < 0:
                break
            t = q // per
            j0, j1 = _chunk_bounds(t_indptr, d * per + q - t * per, n_blocks)
            _forward_block(t_indptr, t_indices, t_perm, data, bias, A3, Z3, G3, act, s, thr,
                           seed, scale, t, j0, j1, fused, slope)


@njit(inline="always")
def _forward_block(t_indptr, t_indices, t_perm, data, bias, A3, Z3, G3, act, s, thr, seed,
                   scale, t, j0, j1, fused, slope):
    """Output neurons ``j0:j1`` of panel ``t`` (a task of :func:`forward_tiled`)."""
    TB = Z3.shape[2]
    Ap = A3[t]
    for j in range(j0, j1):
        z = Z3[t, j]
        bj = bias[j]
        for b in range(TB):
            z[b] = bj
        g = G3[t, j] if act >= 0 else G3[0, 0]
        _column_sums(Ap, t_indices, t_perm, data, t_indptr[j], t_indptr[j + 1], z, g,
                     fused, slope)
        if act >= 0 and not fused:
            _activate_row(z, g, j, t * TB, act, s, thr, seed, scale)


@njit(parallel=True, **_OPTS)
def forward_sparse_tiled(indptr, indices, data, bias, x_indptr, x_indices, x_data, B,
                         Z3, G3, act, s, thr, seed, scale):
    """:func:`forward_tiled` for a sparse input batch ``X`` (CSR, ``B`` rows)."""
    nt, n_out, TB = Z3.shape
    for t in prange(nt):
        for j in range(n_out):
            bj = bias[j]
            for b in range(TB):
                Z3[t, j, b] = bj
        for bb in range(TB):
            b = t * TB + bb
            if b < B:
                for p in range(x_indptr[b], x_indptr[b + 1]):
                    i = x_indices[p]
                    x = x_data[p]
                    for k in range(indptr[i], indptr[i + 1]):
                        Z3[t, indices[k], bb] += x * data[k]
    if act >= 0:
        for q in prange(nt * n_out):
            t = q // n_out
            j = q - t * n_out
            _activate_row(Z3[t, j], G3[t, j], j, t * TB, act, s, thr, seed, scale)


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


GRAD_WRITE = 0
GRAD_ADD = 1
GRAD_STEP = 2
GRAD_ADAM = 3


# ---------------------------------------------------------------------------------
# Register-blocked row sweep for the backward pass (the transpose of the forward's
# column sums).  For the connections ``k0:k1`` of input neuron ``i`` (CSR row) and
# the ``nv`` vectors of samples starting at ``b0``:
#
#   g_k   = sum_b x[b] * D[idx[k], b]          (SDDMM weight gradient, this block)
#   e[b] += sum_k data[k] * D[idx[k], b]       (delta of the layer below)
#
# Each gathered delta row is loaded once and feeds both products; the ``e`` sums
# stay in registers for the whole row and ``x`` (the row's activations) is read
# from L1.  ``g_k`` then goes to ``grad[k - goff]`` by ``mode``: SWEEP_WRITE stores it,
# SWEEP_ADD adds it, SWEEP_STEP applies the momentum step of :func:`_step` with
# ``g_k`` as the whole gradient and SWEEP_STEP_ADD with ``grad[k - goff] + g_k`` (the
# earlier blocks' sums), right after the old weight fed the delta.  Returns the
# sum of the old squared weights of the stepped connections (for the L2 term).
# ---------------------------------------------------------------------------------

SWEEP_WRITE = 0
SWEEP_ADD = 1
SWEEP_STEP_ADD = 2
SWEEP_STEP = 3


def _make_row_sweep(nv, with_delta):
    @intrinsic
    def row_sweep(typingctx, D, idx, data, k0, k1, b0, x, e, grad, goff, mode, velocity, lr,
                  mu, wd, c1, c2, codes, epilogue, hi, lo):
        if not (isinstance(D, types.Array) and D.ndim == 2 and D.layout == "C"
                and all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                        for a in (x, e, grad, velocity))
                and data.dtype == D.dtype == x.dtype == e.dtype == grad.dtype
                == velocity.dtype == lr == mu == wd == c1 == c2 == hi == lo
                and isinstance(codes, types.Array) and codes.dtype == types.uint8):
            return None
        sig = types.Tuple((types.float64, D.dtype))(D, idx, data, k0, k1, b0, x, e, grad, goff,
                                                     mode, velocity, lr, mu, wd, c1, c2, codes,
                                                     epilogue, hi, lo)

        def codegen(context, builder, signature, args):
            tD, tidx, tdata, tk0, tk1, tb0, tx, te, tgrad, tgoff, tmode = signature.args[:11]
            elem = context.get_data_type(tD.dtype)
            width = elem.get_abi_size(context.target_data)
            vec = ir.VectorType(elem, _VEC_BYTES // width)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            f64 = ir.DoubleType()
            arr = [context.make_array(ty)(context, builder, a)
                   for ty, a in zip(signature.args, args) if isinstance(ty, types.Array)]
            arr_D, arr_idx, arr_data, arr_x, arr_e, arr_grad, arr_vel, arr_codes = arr
            k0 = context.cast(builder, args[3], tk0, types.intp)
            k1 = context.cast(builder, args[4], tk1, types.intp)
            b0 = context.cast(builder, args[5], tb0, types.intp)
            goff = context.cast(builder, args[9], tgoff, types.intp)
            mode = context.cast(builder, args[10], tmode, types.intp)
            lr, mu, wd, c1, c2 = args[12:17]
            epilogue = builder.icmp_unsigned(
                "!=", context.cast(builder, args[18], signature.args[18], types.intp),
                ir.Constant(i64, 0))
            hi, lo = args[19], args[20]
            zero_vec = ir.Constant(vec, [0.0] * vec.count)
            row_len = builder.extract_value(arr_D.shape, 1)

            def vec_at(base, c):
                return builder.bitcast(builder.gep(base, [ir.Constant(i64, c * vec.count)]), vptr)

            def splat(v):
                v = builder.insert_element(ir.Constant(vec, None), v, ir.Constant(i64, 0))
                return builder.shuffle_vector(v, ir.Constant(vec, None),
                                              ir.Constant(ir.VectorType(i32, vec.count),
                                                          [0] * vec.count))

            def mode_is(m):
                return builder.icmp_signed("==", mode, ir.Constant(i64, m))

            xbase = builder.gep(arr_x.data, [b0])
            ebase = builder.gep(arr_e.data, [b0])
            accs = [cgutils.alloca_once(builder, vec) for _ in range(nv if with_delta else 0)]
            for acc in accs:  # each block owns its samples of the row: sums start at 0
                builder.store(zero_vec, acc)
            sq = cgutils.alloca_once_value(builder, ir.Constant(f64, 0.0))

            def sweep(m):  # the loop for one mode: no branch inside it
                with cgutils.for_range(builder, builder.sub(k1, k0)) as loop:
                    k = builder.add(k0, loop.index)
                    j = context.cast(builder, builder.load(builder.gep(arr_idx.data, [k])),
                                     tidx.dtype, types.intp)
                    row = builder.gep(arr_D.data, [builder.add(builder.mul(j, row_len), b0)])
                    wp = builder.gep(arr_data.data, [k])
                    w = builder.load(wp)
                    # two interleaved FMA chains for the gradient: few live registers
                    # next to the nv accumulators of the delta
                    chains = [None, None]
                    wv = splat(w) if with_delta else None
                    for c in range(nv):
                        d = builder.load(vec_at(row, c), align=width)
                        if with_delta:
                            prod = builder.fmul(wv, d, flags=("contract",))
                            builder.store(builder.fadd(builder.load(accs[c]), prod,
                                                       flags=("contract",)), accs[c])
                        prod = builder.fmul(builder.load(vec_at(xbase, c), align=width), d,
                                            flags=("contract",))
                        prev = chains[c % 2]
                        chains[c % 2] = prod if prev is None else builder.fadd(
                            prev, prod, flags=("contract",))
                    v = builder.fadd(chains[0], chains[1])
                    n = vec.count
                    while n > 1:  # lanes: halves added until one remains
                        n //= 2
                        undef = ir.Constant(v.type, None)
                        lo = builder.shuffle_vector(
                            v, undef, ir.Constant(ir.VectorType(i32, n), list(range(n))))
                        hi = builder.shuffle_vector(
                            v, undef, ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n))))
                        v = builder.fadd(lo, hi)
                    g = builder.extract_element(v, ir.Constant(i64, 0))
                    gp = builder.gep(arr_grad.data, [builder.sub(k, goff)])
                    if m in (SWEEP_ADD, SWEEP_STEP_ADD):
                        g = builder.fadd(builder.load(gp), g)
                    if m in (SWEEP_WRITE, SWEEP_ADD):
                        builder.store(g, gp)
                    else:  # the momentum step of _step, from the whole gradient
                        g = builder.fadd(g, builder.fmul(wd, w))
                        vp = builder.gep(arr_vel.data, [k])
                        vel = builder.fsub(builder.fmul(mu, builder.load(vp)), builder.fmul(lr, g))
                        builder.store(vel, vp)
                        # w + v (heavy ball: c1 = 1, c2 = 0, exactly) or w + (mu v - lr g)
                        # (Nesterov: c1 = mu, c2 = lr), without a branch in the loop
                        upd = builder.fsub(builder.fmul(c1, vel), builder.fmul(c2, g))
                        builder.store(builder.fadd(w, upd), wp)
                        w2 = builder.fmul(w, w)
                        builder.store(builder.fadd(builder.load(sq), builder.fpext(w2, f64)
                                                   if width == 4 else w2), sq)

            with builder.if_else(builder.icmp_signed(">=", mode, ir.Constant(i64, 2))) \
                    as (step, store):
                with step:
                    with builder.if_else(mode_is(SWEEP_STEP_ADD)) as (a, b):
                        with a:
                            sweep(SWEEP_STEP_ADD)
                        with b:
                            sweep(SWEEP_STEP)
                with store:
                    with builder.if_else(mode_is(SWEEP_ADD)) as (a, b):
                        with a:
                            sweep(SWEEP_ADD)
                        with b:
                            sweep(SWEEP_WRITE)
            bias_part = cgutils.alloca_once_value(builder, ir.Constant(elem, 0.0))
            if with_delta:
                with builder.if_else(epilogue) as (fused, plain):
                    with fused:  # delta = e * f'(z) from the codes, in place of x
                        cbase = builder.gep(arr_codes.data, [b0])
                        cvec = ir.VectorType(ir.IntType(8), vec.count)
                        his, los = splat(hi), splat(lo)
                        total = None
                        for c, acc in enumerate(accs):
                            code = builder.load(builder.bitcast(
                                builder.gep(cbase, [ir.Constant(i64, c * vec.count)]),
                                cvec.as_pointer()), align=1)
                            kept = builder.icmp_unsigned(
                                ">=", code, ir.Constant(cvec, [2] * vec.count))
                            pos = builder.icmp_unsigned(
                                "!=", builder.and_(code, ir.Constant(cvec, [1] * vec.count)),
                                ir.Constant(cvec, [0] * vec.count))
                            factor = builder.select(kept, builder.select(pos, his, los), zero_vec)
                            v = builder.fmul(builder.load(acc), factor)
                            builder.store(v, vec_at(xbase, c), align=width)
                            total = v if total is None else builder.fadd(total, v)
                        n = vec.count
                        while n > 1:
                            n //= 2
                            undef = ir.Constant(total.type, None)
                            total = builder.fadd(
                                builder.shuffle_vector(total, undef, ir.Constant(
                                    ir.VectorType(i32, n), list(range(n)))),
                                builder.shuffle_vector(total, undef, ir.Constant(
                                    ir.VectorType(i32, n), list(range(n, 2 * n)))))
                        builder.store(builder.extract_element(total, ir.Constant(i64, 0)),
                                      bias_part)
                    with plain:
                        for c, acc in enumerate(accs):
                            builder.store(builder.load(acc), vec_at(ebase, c), align=width)
            return context.make_tuple(builder, signature.return_type,
                                      [builder.load(sq), builder.load(bias_part)])

        return sig, codegen

    return row_sweep


_row_sweep8 = _make_row_sweep(8, False)
_row_sweep4 = _make_row_sweep(4, False)
_row_sweep2 = _make_row_sweep(2, False)
_row_sweep8_delta = _make_row_sweep(8, True)
_row_sweep4_delta = _make_row_sweep(4, True)
_row_sweep2_delta = _make_row_sweep(2, True)


@njit(inline="always")
def _row_sweep(x, Dp, indices, data, k0, k1, b0, nv, e, grad, goff, mode, velocity, lr, mu,
               wd, c1, c2, codes, epilogue, hi, lo, do_bwd):
    """One register block of :func:`_row_sums` (``nv`` vectors from sample ``b0``)."""
    if do_bwd:
        if nv == 8:
            return _row_sweep8_delta(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode,
                                     velocity, lr, mu, wd, c1, c2, codes, epilogue, hi, lo)
        if nv == 4:
            return _row_sweep4_delta(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode,
                                     velocity, lr, mu, wd, c1, c2, codes, epilogue, hi, lo)
        return _row_sweep2_delta(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode,
                                 velocity, lr, mu, wd, c1, c2, codes, epilogue, hi, lo)
    if nv == 8:
        return _row_sweep8(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode, velocity, lr,
                           mu, wd, c1, c2, codes, epilogue, hi, lo)
    if nv == 4:
        return _row_sweep4(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode, velocity, lr,
                           mu, wd, c1, c2, codes, epilogue, hi, lo)
    return _row_sweep2(Dp, indices, data, k0, k1, b0, x, e, grad, goff, mode, velocity, lr, mu,
                       wd, c1, c2, codes, epilogue, hi, lo)


@njit(inline="always")
def _row_sums(x, Dp, indices, data, k0, k1, e, grad, goff, first, last, velocity, lr, mu, wd,
              nesterov, do_bwd, codes, epilogue, hi, lo, second, adam, b2, aeps):
    """Gradient and, with ``do_bwd``, the delta of one input neuron's connections
    ``k0:k1`` over one panel row ``x``, in register blocks of 8, 4 and 2 vectors.

    ``first``: no earlier panel wrote ``grad``; ``last``: the final block takes the
    momentum step, or with ``adam`` the row takes the Adam step of :func:`_adam_step`
    once its gradients are complete (``velocity`` and ``second`` the moments, ``mu``
    beta_1, ``lr`` the bias-corrected rate).  With ``epilogue`` (ReLU-like or identity
    activation below) each
    block writes its delta, ``e * (hi or lo, by the code's sign bit, or 0 when
    dropped)``, over ``x`` straight from the registers; otherwise the delta sums go
    to ``e`` for the caller.  Returns the L2 sum of the stepped connections, the
    sum of the deltas written and whether the whole row was covered.
    """
    TB = x.shape[0]
    lanes = _VEC_BYTES // x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    c1 = mu if nesterov else one
    c2 = lr if nesterov else zero
    b0 = 0
    sq = 0.0
    bias = zero
    while b0 + 2 * lanes <= TB:
        nv = 8 if b0 + 8 * lanes <= TB else (4 if b0 + 4 * lanes <= TB else 2)
        end = b0 + nv * lanes
        fresh = first and b0 == 0
        if last and end == TB:
            if adam:  # the whole gradient to grad, stepped below
                mode = SWEEP_WRITE if fresh else SWEEP_ADD
            else:
                mode = SWEEP_STEP if fresh else SWEEP_STEP_ADD
        else:
            mode = SWEEP_WRITE if fresh else SWEEP_ADD
        q, part = _row_sweep(x, Dp, indices, data, k0, k1, b0, nv, e, grad, goff, mode,
                             velocity, lr, mu, wd, c1, c2, codes, epilogue, hi, lo, do_bwd)
        sq += q
        bias += part
        b0 = end
    if last and adam and b0 == TB:
        # Adam's step of the row's connections once their gradients are complete (and
        # the old weights used): contiguous, so LLVM vectorises its sqrt and division
        for k in range(k0, k1):
            sq += _adam_step(data, velocity, second, k, grad[k - goff], lr, mu, b2, wd, aeps)
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
            if last and adam:
                sq += _adam_step(data, velocity, second, k, acc, lr, mu, b2, wd, aeps)
            elif last:
                sq += _step(data, velocity, k, acc, lr, mu, wd, nesterov)
            else:
                grad[k - goff] = acc
    return sq, bias, b0


@njit(**_OPTS)
def _backward_rows(indptr, indices, data, A3, D3, G3, gbuf, mode, do_bwd, act, s, scale,
                   bsum, velocity, lr, mu, wd, nesterov, i0, i1, t, gs, e, second, b2, aeps):
    """The work of :func:`backward_tiled` on input neurons ``i0:i1`` of panel ``t``;
    ``gs`` (a row's gradient sums) and ``e`` (a row's delta sums) are the thread's scratch."""
    nt, n_in, TB = A3.shape
    isc = 1 / scale
    # a single panel that steps at once keeps a row's partial sums in the scratch row
    step = mode >= GRAD_STEP
    adam = mode == GRAD_ADAM
    scratch = nt == 1 and step
    # ReLU-like and identity activations: deltas written by the register epilogue
    epilogue = act == ACT_PIECEWISE or act == ACT_IDENTITY
    lo = s * scale if act == ACT_PIECEWISE else scale
    sq = 0.0
    Ap = A3[t]
    Dp = D3[t]
    first = t == 0 and mode != GRAD_ADD
    last = t == nt - 1 and step
    for i in range(i0, i1):
        k0 = indptr[i]
        k1 = indptr[i + 1]
        x = Ap[i]
        codes = G3[t, i] if do_bwd else G3[0, 0]
        if scratch:
            q, acc, b0 = _row_sums(x, Dp, indices, data, k0, k1, e, gs, k0, first, last,
                                   velocity, lr, mu, wd, nesterov, do_bwd, codes, epilogue,
                                   scale, lo, second, adam, b2, aeps)
        else:
            q, acc, b0 = _row_sums(x, Dp, indices, data, k0, k1, e, gbuf[0], 0, first, last,
                                   velocity, lr, mu, wd, nesterov, do_bwd, codes, epilogue,
                                   scale, lo, second, adam, b2, aeps)
        sq += q
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
    return sq


@njit(parallel=True, **_OPTS)
def backward_tiled(indptr, indices, data, A3, D3, G3, gbuf, mode, do_bwd, act, s, scale,
                   bsum, velocity, lr, momentum, l2, nesterov, n_threads, second, beta_2,
                   adam_eps):
    """Fused SDDMM gradient, backward pass and (optionally) optimizer step of one layer.

    For every connection ``k`` = (i, j) the gradient is
    ``g = sum_t sum_b A3[t, i, b] * D3[t, j, b]`` over all panels; ``mode`` 0 stores
    it in ``gbuf[0, k]``, 1 adds it there (micro-batches), 2 applies the momentum
    step of :func:`momentum_step` to ``data[k]`` / ``velocity[k]`` at once — after
    the old weight was used for the backward product, which only reads row ``i`` —
    and 3 the Adam step of :func:`adam_step` instead, over each row's connections
    as soon as the row's gradients are complete (one contiguous, vectorised loop:
    a scalar square root and division per connection inside the register sweep
    made the backward pass 1.2x slower); moments ``velocity`` and ``second``,
    ``momentum`` = beta_1, ``lr`` bias-corrected; ``second``, ``beta_2`` and
    ``adam_eps`` are not read by the other modes.  With more than one panel,
    modes 0, 2 and 3 use ``gbuf[0]`` for the sums of the earlier panels.

    With ``do_bwd`` the delta of the layer below, ``(W @ D)[i] * f'(z_i)``,
    *replaces* ``A3[t, i, :]`` (row ``i`` of the activations is only needed by the
    gradients of row ``i``, computed just before), so deltas need no buffers of
    their own.  The derivative is rebuilt from ``G3`` (codes) and the activation
    (``act``, slope ``s`` and dropout ``scale`` describe the layer below), and
    ``bsum[t, i] (+)= sum_b delta[t, i, b]`` is its bias gradient (added in mode 1).

    The input neurons are cut into blocks of about equal connection counts,
    :data:`_BLOCKS_PER_THREAD` per thread; each thread sweeps its own blocks panel
    after panel (their gradient sums and weights stay in its caches) and then helps
    with the others' (:func:`_next_task`).  Block ``b`` of panel ``t`` waits until
    block ``b`` of panel ``t - 1`` is done, so that the gradient sums of a
    connection build up in panel order and are complete, ready for the step, in the
    last panel; that wait is only ever taken for a block taken over from a stalled
    thread.  Returns ``sum(data**2)`` before the step in
    modes 2 and 3 (summed in block order: the same for any thread count and schedule),
    else 0.
    """
    T = A3.dtype.type
    nt, n_in = A3.shape[:2]
    per = max(1, min(n_in // n_threads, _BLOCKS_PER_THREAD))  # blocks per queue
    n_blocks = per * n_threads
    counters = np.zeros(n_threads, np.int64)
    done = np.zeros(n_blocks, np.int64)  # panels finished, per block
    block_sq = np.zeros(n_blocks)
    longest = 0
    for i in range(n_in):
        longest = max(longest, indptr[i + 1] - indptr[i])
    for own in prange(n_threads):
        gs = np.empty(longest if nt == 1 and mode >= GRAD_STEP else 0, A3.dtype)
        e = np.empty(A3.shape[2], A3.dtype)
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
                                            second, T(beta_2), T(adam_eps))
            _publish(done, blk, t + 1)
    return block_sq.sum()


@njit(parallel=True, **_OPTS)
def sddmm_sparse_tiled(indptr, indices, xc_indptr, xc_indices, xc_data, D3, gbuf, accumulate):
    """SDDMM gradient of a first layer fed a sparse batch ``X`` (CSC arrays, rows = samples).

    Writes (or adds) the full gradient into ``gbuf[0]``.
    """
    nt, n_out, TB = D3.shape
    n_in = indptr.shape[0] - 1
    for i in prange(n_in):
        p0 = xc_indptr[i]
        p1 = xc_indptr[i + 1]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            acc = D3.dtype.type(0)
            for p in range(p0, p1):
                b = xc_indices[p]
                t = b // TB
                acc += xc_data[p] * D3[t, j, b - t * TB]
            if accumulate:
                gbuf[0, k] += acc
            else:
                gbuf[0, k] = acc


@njit(**_OPTS)
def bias_step(bias, bias_velocity, bsum, n_parts, lr, momentum, nesterov):
    """Momentum step on a bias from ``sum(bsum[:n_parts])`` (no weight decay), serial."""
    T = bias.dtype.type
    lr_ = T(lr)
    mu = T(momentum)
    for j in range(bias.shape[0]):
        g = bsum[0, j]
        for p in range(1, n_parts):
            g += bsum[p, j]
        v = mu * bias_velocity[j] - lr_ * g
        bias_velocity[j] = v
        if nesterov:
            bias[j] += mu * v - lr_ * g
        else:
            bias[j] += v


@njit(parallel=True, **_OPTS)
def apply_step(data, velocity, gbuf, n_parts, lr, momentum, l2, nesterov):
    """Momentum step on a layer from partial gradients; returns ``sum(data**2)`` before it.

    ``g = sum(gbuf[:n_parts, k]) + l2 * data[k]``, then :func:`momentum_step`'s rule.
    """
    T = data.dtype.type
    lr_ = T(lr)
    mu = T(momentum)
    wd = T(l2)
    n = data.shape[0]
    sq = 0.0
    for k in prange(n):
        g = gbuf[0, k]
        if n_parts > 1:
            g += gbuf[1, k]
            for p in range(2, n_parts):
                g += gbuf[p, k]
        sq += _step(data, velocity, k, g, lr_, mu, wd, nesterov)
    return sq


@njit(parallel=True, **_OPTS)
def apply_adam_step(data, m, v, gbuf, n_parts, lr_t, beta_1, beta_2, l2, eps):
    """:func:`apply_step` with the rule of :func:`adam_step`."""
    T = data.dtype.type
    n = data.shape[0]
    sq = 0.0
    for k in prange(n):
        g = gbuf[0, k]
        for p in range(1, n_parts):
            g += gbuf[p, k]
        sq += _adam_step(data, m, v, k, g, T(lr_t), T(beta_1), T(beta_2), T(l2), T(eps))
    return sq


@njit(**_OPTS)
def bias_adam_step(bias, m, v, bsum, n_parts, lr_t, beta_1, beta_2, eps):
    """:func:`bias_step` with the rule of :func:`adam_step` (no weight decay)."""
    T = bias.dtype.type
    for j in range(bias.shape[0]):
        g = bsum[0, j]
        for p in range(1, n_parts):
            g += bsum[p, j]
        _adam_step(bias, m, v, j, g, T(lr_t), T(beta_1), T(beta_2), T(0), T(eps))


LOSS_LOG = 0
LOSS_BINARY = 1
LOSS_SQUARED = 2
LOSS_POISSON = 3
OUT_SOFTMAX = 0
OUT_LOGISTIC = 1
OUT_IDENTITY = 2
OUT_EXP = 3


@njit(**_OPTS)
def output_loss_delta(Z3, Y, w, B, out_act, loss_kind, eps, D3, bsum, accumulate):
    """Output activation, weighted loss and output delta on the tiled layout.

    ``Z3`` holds the output pre-activations (overwritten with the outputs ``P``),
    ``Y`` is ``(B, n_out)`` targets in batch order, ``w`` the normalised sample
    weights.  ``D3 = (P - Y) * w`` (divided by ``n_out`` for squared error, as
    sklearn's loss is half the mean over outputs; the half Poisson deviance sums them
    as sklearn's does), zero on padding;
    ``bsum[0] (+)= D.sum(over samples)`` (other rows of ``bsum`` are zeroed unless
    ``accumulate``).  ``D3`` may be ``Z3`` itself (each output is read before its
    delta is written).  Returns ``sum_b w_b * loss_b`` with the
    losses of :func:`sksparse_mlp._activations.loss_and_output_delta`.
    """
    nt, n_out, TB = Z3.shape
    one = Z3.dtype.type(1)
    if not accumulate:
        bsum[:, :] = 0
    total = 0.0
    for t in range(nt):
        for bb in range(TB):
            b = t * TB + bb
            if b >= B:
                for j in range(n_out):
                    D3[t, j, bb] = 0
                    Z3[t, j, bb] = 0
                continue
            if out_act == OUT_SOFTMAX:
                m = Z3[t, 0, bb]
                for j in range(1, n_out):
                    m = max(m, Z3[t, j, bb])
                ssum = Z3.dtype.type(0)
                for j in range(n_out):
                    e = np.exp(Z3[t, j, bb] - m)
                    Z3[t, j, bb] = e
                    ssum += e
                for j in range(n_out):
                    Z3[t, j, bb] /= ssum
            elif out_act == OUT_LOGISTIC:
                for j in range(n_out):
                    z = Z3[t, j, bb]
                    e = np.exp(-abs(z))
                    Z3[t, j, bb] = (one if z >= 0 else e) / (one + e)
            elif out_act == OUT_EXP:
                for j in range(n_out):
                    Z3[t, j, bb] = np.exp(Z3[t, j, bb])
            wb = w[b]
            ls = 0.0
            for j in range(n_out):
                p = Z3[t, j, bb]
                y = Y[b, j]
                if loss_kind == LOSS_LOG:
                    ls -= y * np.log(min(max(p, eps), one))
                    d = (p - y) * wb
                elif loss_kind == LOSS_BINARY:
                    pc = min(max(p, eps), 1 - eps)
                    ls -= y * np.log(pc) + (1 - y) * np.log1p(-pc)
                    d = (p - y) * wb
                elif loss_kind == LOSS_POISSON:  # half Poisson deviance, with xlogy(y, y / p)
                    ls += (y * (np.log(y) - np.log(p)) if y > 0 else 0.0) - y + p
                    d = (p - y) * wb
                else:
                    ls += 0.5 * (p - y) * (p - y) / n_out
                    d = (p - y) * (wb / n_out)
                D3[t, j, bb] = d
                bsum[0, j] += d
            total += ls * wb
    return total


@njit(parallel=True, **_OPTS)
def untile_rows(Z3, B, out, start):
    """``out[start + b, :] = Z3[b // TB, :, b % TB]`` for ``b < B`` (outputs back to rows)."""
    nt, n, TB = Z3.shape
    for b in prange(B):
        t = b // TB
        bb = b - t * TB
        for j in range(n):
            out[start + b, j] = Z3[t, j, bb]


@njit(parallel=True, **_OPTS)
def forward_csr_tiled(indptr, indices, data, bias, A3, Z3, G3, act, s, thr, seed, scale):
    """:func:`forward_tiled` from the CSR arrays of ``W`` (no CSC view needed).

    Each panel is owned by one thread, which scatters ``w * A[i]`` into the rows of
    its panel of ``Z``: no races, no transposed copy of the pattern (saves 8 bytes
    per connection), at the price of a read-modify-write of the output rows.
    """
    nt, n_out, TB = Z3.shape
    n_in = A3.shape[1]
    for t in prange(nt):
        for j in range(n_out):
            bj = bias[j]
            for b in range(TB):
                Z3[t, j, b] = bj
        for i in range(n_in):
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                w = data[k]
                for b in range(TB):
                    Z3[t, j, b] += w * A3[t, i, b]
    if act >= 0:
        for q in prange(nt * n_out):
            t = q // n_out
            j = q - t * n_out
            _activate_row(Z3[t, j], G3[t, j], j, t * TB, act, s, thr, seed, scale)


@njit(**_OPTS)
def forward_vec(t_indptr, t_indices, t_perm, data, bias, a, z, act, s):
    """One sample, one layer, serial: ``z = f(W.T @ a + bias)`` through the CSC view.

    For predicting single rows, where a parallel region and a batch panel would
    cost more than the products.  ``act`` as in :func:`forward_tiled` (-1: none).
    """
    n_out = z.shape[0]
    T = z.dtype.type
    one = T(1)
    s_ = T(s)
    for j in range(n_out):
        # the same grouping of the sum as forward_tiled, so that a row predicted alone
        # gets the same rounding as in a batch
        acc = T(bias[j])
        k = t_indptr[j]
        end = t_indptr[j + 1]
        while k + 8 <= end:
            x0 = data[np.uint64(t_perm[k])] * a[np.uint64(t_indices[k])]
            x1 = data[np.uint64(t_perm[k + 1])] * a[np.uint64(t_indices[k + 1])]
            x2 = data[np.uint64(t_perm[k + 2])] * a[np.uint64(t_indices[k + 2])]
            x3 = data[np.uint64(t_perm[k + 3])] * a[np.uint64(t_indices[k + 3])]
            x4 = data[np.uint64(t_perm[k + 4])] * a[np.uint64(t_indices[k + 4])]
            x5 = data[np.uint64(t_perm[k + 5])] * a[np.uint64(t_indices[k + 5])]
            x6 = data[np.uint64(t_perm[k + 6])] * a[np.uint64(t_indices[k + 6])]
            x7 = data[np.uint64(t_perm[k + 7])] * a[np.uint64(t_indices[k + 7])]
            acc += ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))
            k += 8
        if k + 4 <= end:
            x0 = data[np.uint64(t_perm[k])] * a[np.uint64(t_indices[k])]
            x1 = data[np.uint64(t_perm[k + 1])] * a[np.uint64(t_indices[k + 1])]
            x2 = data[np.uint64(t_perm[k + 2])] * a[np.uint64(t_indices[k + 2])]
            x3 = data[np.uint64(t_perm[k + 3])] * a[np.uint64(t_indices[k + 3])]
            acc += (x0 + x1) + (x2 + x3)
            k += 4
        while k < end:
            acc += data[np.uint64(t_perm[k])] * a[np.uint64(t_indices[k])]
            k += 1
        if act == ACT_PIECEWISE:
            acc = acc if acc > 0 else s_ * acc
        elif act == ACT_TANH:
            acc = np.tanh(acc)
        elif act == ACT_LOGISTIC:
            e = np.exp(-abs(acc))
            acc = (one if acc >= 0 else e) / (one + e)
        z[j] = acc

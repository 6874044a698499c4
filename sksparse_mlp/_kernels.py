"""Numba kernels for truly sparse layers.

Layout conventions (see ``docs/ARCHITECTURE.md``):

* a layer's weights ``W`` (shape ``(n_in, n_out)``) are given by the CSR arrays
  ``indptr``, ``indices``, ``data``; index arrays may be int32 or int64 and values
  float32 or float64 (each combination is compiled once and cached on disk);
* activations are *transposed*: ``At`` has shape ``(n_units, batch)`` and is
  C-contiguous, so the innermost loops run over the batch with unit stride;
* every output is preallocated by the caller and overwritten, never accumulated.

All kernels are race free: each output element is written by exactly one thread.
``forward_dense`` works on the CSR pattern by splitting the batch dimension into
blocks; ``forward_dense_t`` is the faster gather form that reads the CSC
view of ``W`` (build it once per topology with :func:`transpose_pattern`).
"""
import numpy as np
from numba import njit, prange

__all__ = [
    "forward_dense",
    "forward_dense_t",
    "forward_sparse",
    "backward",
    "sddmm_dense",
    "sddmm_sparse",
    "momentum_step",
    "transpose_pattern",
    "gather",
]

# Reassociation lets LLVM vectorise the dot products; NaN / inf semantics are kept
# (no 'nnan' / 'ninf') so a diverging network is still detected by the caller.
_FM = {"reassoc", "contract", "nsz", "arcp"}
_OPTS = dict(cache=True, nogil=True, fastmath=_FM)

# batch block granularity (in elements) when the batch is split between threads
_BLOCK = 16
_FWD_BLOCK = 64


@njit(parallel=True, **_OPTS)
def forward_dense(indptr, indices, data, bias, At, Zt):
    """``Zt[:, :] = W.T @ At + bias[:, None]`` from the CSR arrays of ``W``.

    ``At`` is ``(n_in, B)``, ``Zt`` is ``(n_out, B)``.  The batch is split into blocks
    of about 64 samples; each thread scatters into its own columns of ``Zt``.
    """
    n_in = At.shape[0]
    n_out, B = Zt.shape
    # blocks of about _FWD_BLOCK samples (get_num_threads() would defeat caching)
    nblocks = max(1, (B + _FWD_BLOCK - 1) // _FWD_BLOCK)
    blk = (B + nblocks - 1) // nblocks
    blk = ((blk + _BLOCK - 1) // _BLOCK) * _BLOCK
    for c in prange(nblocks):
        b0 = c * blk
        b1 = min(B, b0 + blk)
        for j in range(n_out):
            bj = bias[j]
            for b in range(b0, b1):
                Zt[j, b] = bj
        for i in range(n_in):
            a = At[i]
            for k in range(indptr[i], indptr[i + 1]):
                z = Zt[indices[k]]
                w = data[k]
                for b in range(b0, b1):
                    z[b] += w * a[b]


@njit(parallel=True, **_OPTS)
def forward_dense_t(t_indptr, t_indices, t_perm, data, bias, At, Zt):
    """Same result as :func:`forward_dense`, as a gather over the CSC view of ``W``.

    ``t_indptr`` / ``t_indices`` is the CSR pattern of ``W.T`` (column ``j`` of ``W``
    lists its input rows) and ``t_perm[k]`` the position in ``data`` (CSR order) of
    the ``k``-th entry of that view; see :func:`transpose_pattern`.  Parallel over
    output neurons, four connections per pass over the batch.
    """
    n_out, B = Zt.shape
    for j in prange(n_out):
        z = Zt[j]
        bj = bias[j]
        for b in range(B):
            z[b] = bj
        k = t_indptr[j]
        end = t_indptr[j + 1]
        while k + 4 <= end:
            w0 = data[t_perm[k]]
            w1 = data[t_perm[k + 1]]
            w2 = data[t_perm[k + 2]]
            w3 = data[t_perm[k + 3]]
            a0 = At[t_indices[k]]
            a1 = At[t_indices[k + 1]]
            a2 = At[t_indices[k + 2]]
            a3 = At[t_indices[k + 3]]
            for b in range(B):
                z[b] += w0 * a0[b] + w1 * a1[b] + w2 * a2[b] + w3 * a3[b]
            k += 4
        while k < end:
            w0 = data[t_perm[k]]
            a0 = At[t_indices[k]]
            for b in range(B):
                z[b] += w0 * a0[b]
            k += 1


@njit(parallel=True, **_OPTS)
def forward_sparse(indptr, indices, data, bias, x_indptr, x_indices, x_data, Zt):
    """``Zt[:, :] = (X @ W).T + bias[:, None]`` for a sparse batch ``X`` (CSR, ``(B, n_in)``).

    Parallel over samples: sample ``b`` writes only column ``b`` of ``Zt``.
    """
    n_out, B = Zt.shape
    for b in prange(B):
        for j in range(n_out):
            Zt[j, b] = bias[j]
        for p in range(x_indptr[b], x_indptr[b + 1]):
            i = x_indices[p]
            x = x_data[p]
            for k in range(indptr[i], indptr[i + 1]):
                Zt[indices[k], b] += x * data[k]


@njit(parallel=True, **_OPTS)
def backward(indptr, indices, data, Dt, Et):
    """``Et[:, :] = W @ Dt``; ``Dt`` is ``(n_out, B)``, ``Et`` is ``(n_in, B)``.

    Parallel over input neurons (rows of ``W``), four connections per pass.
    """
    n_in, B = Et.shape
    for i in prange(n_in):
        e = Et[i]
        for b in range(B):
            e[b] = 0
        k = indptr[i]
        end = indptr[i + 1]
        while k + 4 <= end:
            w0 = data[k]
            w1 = data[k + 1]
            w2 = data[k + 2]
            w3 = data[k + 3]
            d0 = Dt[indices[k]]
            d1 = Dt[indices[k + 1]]
            d2 = Dt[indices[k + 2]]
            d3 = Dt[indices[k + 3]]
            for b in range(B):
                e[b] += w0 * d0[b] + w1 * d1[b] + w2 * d2[b] + w3 * d3[b]
            k += 4
        while k < end:
            w0 = data[k]
            d0 = Dt[indices[k]]
            for b in range(B):
                e[b] += w0 * d0[b]
            k += 1


@njit(parallel=True, **_OPTS)
def sddmm_dense(indptr, indices, At, Dt, grad):
    """``grad[k] = sum_b At[i, b] * Dt[indices[k], b]`` for every ``k`` of row ``i``.

    No ``1/B`` scaling.  Parallel over rows of ``W``.
    """
    n_in, B = At.shape
    if B == 0:
        grad[:] = 0
        return
    for i in prange(n_in):
        a = At[i]
        k = indptr[i]
        end = indptr[i + 1]
        while k + 4 <= end:
            d0 = Dt[indices[k]]
            d1 = Dt[indices[k + 1]]
            d2 = Dt[indices[k + 2]]
            d3 = Dt[indices[k + 3]]
            s0 = a[0] * d0[0]
            s1 = a[0] * d1[0]
            s2 = a[0] * d2[0]
            s3 = a[0] * d3[0]
            for b in range(1, B):
                ab = a[b]
                s0 += ab * d0[b]
                s1 += ab * d1[b]
                s2 += ab * d2[b]
                s3 += ab * d3[b]
            grad[k] = s0
            grad[k + 1] = s1
            grad[k + 2] = s2
            grad[k + 3] = s3
            k += 4
        while k < end:
            d0 = Dt[indices[k]]
            s0 = a[0] * d0[0]
            for b in range(1, B):
                s0 += a[b] * d0[b]
            grad[k] = s0
            k += 1


@njit(parallel=True, **_OPTS)
def sddmm_sparse(indptr, indices, xc_indptr, xc_indices, xc_data, Dt, grad):
    """:func:`sddmm_dense` with the batch ``X`` ``(B, n_in)`` given as CSC arrays.

    Column ``i`` of ``X`` lists ``(sample b, value)`` pairs in
    ``xc_indices[xc_indptr[i]:xc_indptr[i + 1]]`` / ``xc_data[...]``.
    """
    n_in = indptr.shape[0] - 1
    for i in prange(n_in):
        p0 = xc_indptr[i]
        p1 = xc_indptr[i + 1]
        for k in range(indptr[i], indptr[i + 1]):
            d = Dt[indices[k]]
            s = grad.dtype.type(0)
            for p in range(p0, p1):
                s += xc_data[p] * d[xc_indices[p]]
            grad[k] = s


@njit(parallel=True, **_OPTS)
def momentum_step(data, velocity, grad, lr, momentum, l2, nesterov):
    """Fused momentum SGD step, in place over the values arrays.

    ``g = grad + l2 * data; velocity = momentum * velocity - lr * g``; then
    ``data += velocity`` (heavy ball) or ``data += momentum * velocity - lr * g``
    (Nesterov).  ``grad`` is read only.
    """
    t = data.dtype.type
    lr_ = t(lr)
    mu = t(momentum)
    wd = t(l2)
    n = data.shape[0]
    if nesterov:
        for k in prange(n):
            g = grad[k] + wd * data[k]
            v = mu * velocity[k] - lr_ * g
            velocity[k] = v
            data[k] += mu * v - lr_ * g
    else:
        for k in prange(n):
            g = grad[k] + wd * data[k]
            v = mu * velocity[k] - lr_ * g
            velocity[k] = v
            data[k] += v


@njit(**_OPTS)
def transpose_pattern(indptr, indices, n_cols):
    """CSR pattern of ``W.T`` plus the permutation into ``W``'s value order.

    Returns ``(t_indptr, t_indices, t_perm)`` with ``t_perm[q]`` the position in
    ``data`` of the ``q``-th entry of the transposed view, so that
    ``W.T.data == data[t_perm]``.  Within a column, rows are sorted.  Index arrays
    keep the dtype of ``indices`` (``t_perm`` that of ``indptr``).  O(nnz), serial.
    """
    n_rows = indptr.shape[0] - 1
    nnz = indptr[n_rows]
    t_indptr = np.zeros(n_cols + 1, dtype=indptr.dtype)
    for k in range(nnz):
        t_indptr[indices[k] + 1] += 1
    for j in range(n_cols):
        t_indptr[j + 1] += t_indptr[j]
    nxt = t_indptr[:-1].copy()
    t_indices = np.empty(nnz, dtype=indices.dtype)
    t_perm = np.empty(nnz, dtype=indptr.dtype)
    for i in range(n_rows):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            q = nxt[j]
            t_indices[q] = i
            t_perm[q] = k
            nxt[j] = q + 1
    return t_indptr, t_indices, t_perm


@njit(parallel=True, **_OPTS)
def gather(src, perm, out):
    """``out[:] = src[perm]`` in parallel (e.g. values in transposed order)."""
    for q in prange(perm.shape[0]):
        out[q] = src[perm[q]]

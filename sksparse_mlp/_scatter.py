"""Numba kernels that scatter from a layer's CSR arrays, where no CSC view is used.

A sparse input batch (:func:`forward_sparse_tiled`, :func:`sddmm_sparse_tiled`), the
lean forward pass that keeps no CSC view to fit the memory (:func:`forward_csr_tiled`)
and the one-row prediction (:func:`forward_row`).  Same layout and conventions as
:mod:`._kernels`.
"""
import numpy as np
from numba import njit, prange

from ._jit import OPTS as _OPTS
from ._kernels import ACT_LOGISTIC, ACT_PIECEWISE, ACT_TANH, _activate_row


@njit(inline="always")
def _bias_rows(Zp, bias):
    for j in range(Zp.shape[0]):
        Zp[j, :] = bias[j]


@njit(parallel=True, **_OPTS)
def _activate_panels(Z3, G3, act, s, thr, seed, scale):
    """Activation, derivative codes and dropout of every row of the panels ``Z3``."""
    nt, n_out, TB = Z3.shape
    for q in prange(nt * n_out):
        t = q // n_out
        j = q - t * n_out
        _activate_row(Z3[t, j], G3[t, j], j, t * TB, act, s, thr, seed, scale)


@njit(parallel=True, **_OPTS)
def forward_sparse_tiled(indptr, indices, data, bias, x_indptr, x_indices, x_data, B,
                         Z3, G3, act, s, thr, seed, scale):
    """:func:`._kernels.forward_tiled` for a sparse input batch ``X`` (CSR, ``B`` rows)."""
    nt, n_out, TB = Z3.shape
    for t in prange(nt):
        _bias_rows(Z3[t], bias)
        for bb in range(TB):
            b = t * TB + bb
            if b < B:
                for p in range(np.uint64(x_indptr[b]), np.uint64(x_indptr[b + 1])):
                    i = np.uint64(x_indices[p])
                    x = x_data[p]
                    for k in range(np.uint64(indptr[i]), np.uint64(indptr[i + 1])):
                        Z3[t, np.uint64(indices[k]), bb] += x * data[k]
    if act >= 0:
        _activate_panels(Z3, G3, act, s, thr, seed, scale)


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


@njit(parallel=True, **_OPTS)
def forward_csr_tiled(indptr, indices, data, bias, A3, Z3, G3, act, s, thr, seed, scale):
    """:func:`._kernels.forward_tiled` from the CSR arrays of ``W`` (no CSC view needed).

    Each panel is owned by one thread, which scatters ``w * A[i]`` into the rows of
    its panel of ``Z``: no races, no transposed copy of the pattern (saves 8 bytes
    per connection), at the price of a read-modify-write of the output rows.
    """
    nt, n_out, TB = Z3.shape
    n_in = A3.shape[1]
    for t in prange(nt):
        _bias_rows(Z3[t], bias)
        for i in range(n_in):
            for k in range(np.uint64(indptr[i]), np.uint64(indptr[i + 1])):
                j = np.uint64(indices[k])
                w = data[k]
                for b in range(TB):
                    Z3[t, j, b] += w * A3[t, i, b]
    if act >= 0:
        _activate_panels(Z3, G3, act, s, thr, seed, scale)


@njit(**_OPTS)
def forward_row(indptr, indices, data, bias, a, z, act, s):
    """One sample, one layer, serial: ``z = f(W.T @ a + bias)`` from the CSR arrays.

    For predicting single rows, where a parallel region and a batch panel would
    cost more than the products, and no CSC view is needed: each input's weights
    are read in order and scattered into ``z``, which stays in L1 (1.3x faster than
    gathering through the CSC view for the benchmark network).  Every ``z[j]`` adds
    its terms in the order of :func:`._kernels.forward_tiled` (inputs ascending, from the
    bias), so a row predicted alone is rounded as in a batch.  ``act`` as in
    :func:`._kernels.forward_tiled` (-1: none).
    """
    n_out = z.shape[0]
    T = z.dtype.type
    one = T(1)
    s_ = T(s)
    for j in range(n_out):
        z[j] = bias[j]
    for i in range(a.shape[0]):
        ai = a[i]
        # unsigned positions: no wraparound test for negative indices in the loop (the
        # four layers of the benchmark network 149 -> 86 us)
        for k in range(np.uint64(indptr[i]), np.uint64(indptr[i + 1])):
            z[np.uint64(indices[k])] += data[k] * ai
    for j in range(n_out):
        acc = z[j]
        if act == ACT_PIECEWISE:
            acc = acc if acc > 0 else s_ * acc
        elif act == ACT_TANH:
            acc = np.tanh(acc)
        elif act == ACT_LOGISTIC:
            e = np.exp(-abs(acc))
            acc = (one if acc >= 0 else e) / (one + e)
        z[j] = acc

"""Canonical CSR arrays of a layer's weights: index dtype, wrapping, checks.

A layer's weight matrix ``W`` is a canonical ``scipy.sparse.csr_array`` of shape
``(n_in, n_out)`` (sorted column indices, no duplicates). These helpers build
one from raw arrays without copying, canonicalise user input, and give the
index dtype scipy would pick, so that every module making a layer (sampling,
SET, pruning, the MPI server) agrees on it.
"""
import numba
import numpy as np
import scipy.sparse as sp

_INT32_MAX = np.iinfo(np.int32).max


@numba.njit(cache=True)
def _row_counts(indptr, keep, out_indptr):
    """``out_indptr`` of the CSR matrix restricted to entries with ``keep``."""
    out_indptr[0] = 0
    for i in range(indptr.shape[0] - 1):
        c = 0
        for p in range(indptr[i], indptr[i + 1]):
            if keep[p]:
                c += 1
        out_indptr[i + 1] = out_indptr[i] + c


@numba.njit(cache=True)
def max_row_abs_sum(indptr, data):
    """``max_i sum_j |W[i, j]|`` in float64, one streaming pass; inf or NaN as soon as a
    value is not finite (the max of the row sums would drop a NaN)."""
    worst = 0.0
    for i in range(indptr.shape[0] - 1):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += abs(np.float64(data[p]))
        if not s < np.inf:
            return s
        worst = max(worst, s)
    return worst


def _idx_dtype(shape, nnz):
    """The index dtype scipy would pick: int32 while everything fits, else int64.

    scipy keeps ``indices`` and ``indptr`` in one common dtype, so both
    become int64 only when ``nnz`` (or a dimension) reaches 2**31.
    """
    if max(int(shape[0]), int(shape[1]), int(nnz)) <= _INT32_MAX:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _make_csr(data, indices, indptr, shape):
    """Wrap canonical CSR arrays in a ``csr_array`` without copying them.

    The arrays are cast to the index dtype scipy would choose anyway, so
    the constructor does not copy, and the canonical-format flag is set so
    scipy never rescans the pattern.
    """
    idx = _idx_dtype(shape, data.shape[0])
    W = sp.csr_array(
        (data, indices.astype(idx, copy=False), indptr.astype(idx, copy=False)),
        shape=shape,
    )
    W.has_canonical_format = True
    return W


def _as_canonical_csr(W, name="W"):
    """Return ``W`` as a canonical ``csr_array`` (``W`` itself when it is one)."""
    if not sp.issparse(W):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(W).__name__}")
    if W.format != "csr" or not isinstance(W, sp.sparray):
        W = sp.csr_array(W)
    if not W.has_canonical_format:
        W = W.copy()
        W.sum_duplicates()
    return W


def _n_positions(n_in, n_out):
    """``(n_in, n_out, n_in * n_out)`` as ints: a positive shape whose flat positions fit int64."""
    n_in = int(n_in)
    n_out = int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"layer shape must be positive, got ({n_in}, {n_out})")
    N = n_in * n_out
    if N > np.iinfo(np.int64).max:
        raise OverflowError("n_in * n_out does not fit in int64 flat positions")
    return n_in, n_out, N

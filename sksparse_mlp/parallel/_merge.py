"""WASAP-SGD pattern algebra, used only by the parameter server (``_server``).

Gradients computed by a worker on a stale topology are masked onto the current pattern
(:func:`project_to_pattern`); at the end of phase 2 the workers' models are averaged over
the union of their patterns (:func:`average_union`) and cut back to the target number of
connections (:func:`prune_to_nnz`). Like ``_topology`` everything is O(nnz), with
single-threaded merge-style numba kernels.
"""
import numba
import numpy as np

from .._topology import _as_canonical_csr, _idx_dtype, _make_csr, _row_counts

__all__ = ["project_to_pattern", "average_union", "prune_to_nnz"]


@numba.njit(cache=True)
def _mark_largest(absv, t, k, keep):
    """Keep the ``k`` largest ``absv`` (ties at ``t`` in position order)."""
    n = absv.shape[0]
    above = 0
    for p in range(n):
        if absv[p] > t:
            above += 1
    ties = k - above
    for p in range(n):
        a = absv[p]
        if a > t:
            keep[p] = True
        elif a == t and ties > 0:
            keep[p] = True
            ties -= 1
        else:
            keep[p] = False


@numba.njit(cache=True)
def _project(s_indptr, s_indices, s_data, d_indptr, d_indices, out):
    """``out[k]`` = src value at dst entry ``k``'s position (0 if absent)."""
    for i in range(d_indptr.shape[0] - 1):
        p = s_indptr[i]
        pend = s_indptr[i + 1]
        for k in range(d_indptr[i], d_indptr[i + 1]):
            c = d_indices[k]
            while p < pend and s_indices[p] < c:
                p += 1
            if p < pend and s_indices[p] == c:
                out[k] = s_data[p]
            else:
                out[k] = 0


@numba.njit(cache=True)
def _union_count(a_indptr, a_indices, b_indptr, b_indices, out_indptr):
    out_indptr[0] = 0
    for i in range(a_indptr.shape[0] - 1):
        p = a_indptr[i]
        pe = a_indptr[i + 1]
        q = b_indptr[i]
        qe = b_indptr[i + 1]
        c = 0
        while p < pe and q < qe:
            if a_indices[p] < b_indices[q]:
                p += 1
            elif a_indices[p] > b_indices[q]:
                q += 1
            else:
                p += 1
                q += 1
            c += 1
        c += (pe - p) + (qe - q)
        out_indptr[i + 1] = out_indptr[i] + c


@numba.njit(cache=True)
def _union_fill(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data,
                out_indptr, out_indices, out_data):
    """Sum of two canonical CSR matrices over the union of their patterns.

    Unlike ``scipy``'s ``A + B`` this keeps entries that cancel to 0: they
    are still connections of the union pattern.
    """
    for i in range(a_indptr.shape[0] - 1):
        p = a_indptr[i]
        pe = a_indptr[i + 1]
        q = b_indptr[i]
        qe = b_indptr[i + 1]
        o = out_indptr[i]
        while p < pe and q < qe:
            ca = a_indices[p]
            cb = b_indices[q]
            if ca < cb:
                out_indices[o] = ca
                out_data[o] = a_data[p]
                p += 1
            elif ca > cb:
                out_indices[o] = cb
                out_data[o] = b_data[q]
                q += 1
            else:
                out_indices[o] = ca
                out_data[o] = a_data[p] + b_data[q]
                p += 1
                q += 1
            o += 1
        while p < pe:
            out_indices[o] = a_indices[p]
            out_data[o] = a_data[p]
            p += 1
            o += 1
        while q < qe:
            out_indices[o] = b_indices[q]
            out_data[o] = b_data[q]
            q += 1
            o += 1


def project_to_pattern(src_W, dst_W):
    """Values of ``src_W`` at the positions of ``dst_W``.

    Used by WASAP-SGD to mask a gradient computed on a stale topology onto
    the current pattern, so it cannot revive removed connections.

    Parameters
    ----------
    src_W, dst_W : scipy sparse matrices of the same shape

    Returns
    -------
    values : ndarray of shape (dst_W.nnz,), dtype of ``src_W``
        Aligned with ``dst_W.data``; 0 where ``src_W`` has no entry.
    """
    src_W = _as_canonical_csr(src_W, "src_W")
    dst_W = _as_canonical_csr(dst_W, "dst_W")
    if src_W.shape != dst_W.shape:
        raise ValueError(f"shape mismatch: {src_W.shape} vs {dst_W.shape}")
    out = np.empty(dst_W.nnz, dtype=src_W.dtype)
    _project(src_W.indptr, src_W.indices, src_W.data, dst_W.indptr, dst_W.indices, out)
    return out


def average_union(list_of_W):
    """Average of sparse matrices over the union of their patterns.

    Parameters
    ----------
    list_of_W : sequence of scipy sparse matrices of the same shape

    Returns
    -------
    W : scipy.sparse.csr_array
        Pattern = union of the patterns (entries that average to exactly 0
        are kept); value = sum of the values / ``len(list_of_W)`` (a missing
        connection counts as 0).  dtype = common dtype of the inputs.
    """
    mats = [_as_canonical_csr(W, "list_of_W[i]") for W in list_of_W]
    if not mats:
        raise ValueError("list_of_W is empty")
    shape = mats[0].shape
    for W in mats[1:]:
        if W.shape != shape:
            raise ValueError(f"shape mismatch: {shape} vs {W.shape}")
    dtype = np.result_type(*[W.dtype for W in mats])
    acc_indptr = mats[0].indptr
    acc_indices = mats[0].indices
    acc_data = mats[0].data.astype(dtype, copy=True)
    for W in mats[1:]:
        # Pairwise merges: O(len(list) * union nnz), fine for a few workers.
        indptr = np.empty(shape[0] + 1, dtype=np.int64)
        _union_count(acc_indptr, acc_indices, W.indptr, W.indices, indptr)
        n = int(indptr[-1])
        indices = np.empty(n, dtype=_idx_dtype(shape, n))
        data = np.empty(n, dtype=dtype)
        _union_fill(acc_indptr, acc_indices, acc_data, W.indptr, W.indices, W.data,
                    indptr, indices, data)
        acc_indptr, acc_indices, acc_data = indptr, indices, data
    acc_data /= dtype.type(len(mats))
    return _make_csr(acc_data, acc_indices, acc_indptr, shape)


def prune_to_nnz(W, nnz, return_kept=False):
    """Keep the ``nnz`` entries of largest magnitude.

    Parameters
    ----------
    W : scipy sparse matrix
    nnz : int
        Number of entries to keep (>= 0).  If ``nnz >= W.nnz`` all are kept.
    return_kept : bool, default False
        Also return the positions in ``W.data`` of the kept entries.

    Returns
    -------
    W_new : scipy.sparse.csr_array
        Canonical matrix of the same shape with ``min(nnz, W.nnz)`` entries.
        Ties in ``|value|`` at the threshold are resolved by position
        (row-major, lower position kept first), deterministically.
    kept_positions : ndarray of int64
        Only if ``return_kept``.
    """
    W = _as_canonical_csr(W)
    nnz = int(nnz)
    if nnz < 0:
        raise ValueError(f"nnz must be >= 0, got {nnz}")
    n = W.nnz
    if nnz >= n:
        W_new = W.copy()
        W_new.has_canonical_format = True
        return (W_new, np.arange(n, dtype=np.int64)) if return_kept else W_new
    absv = np.abs(W.data)
    keep = np.empty(n, dtype=np.bool_)
    if nnz == 0:
        keep[:] = False
    else:
        t = np.partition(absv, n - nnz)[n - nnz]
        _mark_largest(absv, t, nnz, keep)
    del absv
    indptr = np.empty(W.shape[0] + 1, dtype=np.int64)
    _row_counts(W.indptr, keep, indptr)
    kept_positions = np.flatnonzero(keep)
    del keep
    W_new = _make_csr(W.data[kept_positions], W.indices[kept_positions], indptr, W.shape)
    return (W_new, kept_positions) if return_kept else W_new

"""Importance pruning: neuron importance and the removal of neurons from layers.

A hidden neuron's importance is the sum of the absolute values of its incoming
weights (a column sum of ``|W|``); the least important neurons of a layer are
removed by dropping their column from the incoming layer and their row from the
outgoing one (:meth:`._network.SparseMLP.importance_prune`). O(nnz) time and memory.
"""
import numba
import numpy as np

from ._csr import _as_canonical_csr, _idx_dtype, _make_csr, _row_counts

__all__ = ["neuron_importance", "importance_prune_mask", "drop_columns", "drop_rows"]


@numba.njit(cache=True)
def _column_abs_sums(indices, data, out):
    out[:] = 0.0
    for p in range(indices.shape[0]):
        out[indices[p]] += abs(data[p])


def neuron_importance(W):
    """Importance of each output neuron: the column sums of ``|W|``.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n_in, n_out)

    Returns
    -------
    importance : ndarray of shape (n_out,), float64
        Sum of the absolute values of each neuron's incoming weights
        (accumulated in float64).
    """
    W = _as_canonical_csr(W)
    out = np.empty(W.shape[1], dtype=np.float64)
    _column_abs_sums(W.indices, W.data, out)
    return out


def importance_prune_mask(W, percentile):
    """Neurons to remove by importance pruning.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n_in, n_out)
        Incoming weights of the layer's neurons.
    percentile : float
        Percentile in [0, 100] of the layer's importances (numpy's default
        linear interpolation).

    Returns
    -------
    mask : ndarray of bool, shape (n_out,)
        True for neurons whose importance (see :func:`neuron_importance`) is
        at or below the percentile.  Never all True: if every neuron would
        go, the most important one (the first on ties) is kept.
    """
    imp = neuron_importance(W)
    if not (0 <= percentile <= 100):
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if imp.shape[0] == 0:
        return np.zeros(0, dtype=np.bool_)
    mask = imp <= np.percentile(imp, percentile)
    if mask.all():
        mask[np.argmax(imp)] = False
    return mask


def drop_columns(W, keep_mask):
    """Remove output neurons (columns) from a layer.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n_in, n_out)
    keep_mask : array-like of bool, shape (n_out,)
        True for the columns to keep.

    Returns
    -------
    W_new : scipy.sparse.csr_array of shape (n_in, keep_mask.sum())
    kept_positions : ndarray of int64
        Positions in ``W.data`` of the entries that survive, in the order of
        ``W_new.data`` (so ``velocity[kept_positions]`` stays aligned).
    """
    W = _as_canonical_csr(W)
    keep_mask = np.asarray(keep_mask, dtype=np.bool_)
    if keep_mask.shape != (W.shape[1],):
        raise ValueError(f"keep_mask must have shape ({W.shape[1]},), got {keep_mask.shape}")
    n_new = int(np.count_nonzero(keep_mask))
    new_col = np.cumsum(keep_mask, dtype=np.int64) - 1
    entry_keep = keep_mask[W.indices]
    kept_positions = np.flatnonzero(entry_keep)
    shape = (W.shape[0], n_new)
    idx = _idx_dtype(shape, kept_positions.shape[0])
    indptr = np.empty(W.shape[0] + 1, dtype=np.int64)
    _row_counts(W.indptr, entry_keep, indptr)
    del entry_keep
    indices = new_col[W.indices[kept_positions]].astype(idx)
    data = W.data[kept_positions]
    return _make_csr(data, indices, indptr, shape), kept_positions


def drop_rows(W, keep_mask):
    """Remove input neurons (rows) from a layer.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n_in, n_out)
    keep_mask : array-like of bool, shape (n_in,)
        True for the rows to keep.

    Returns
    -------
    W_new : scipy.sparse.csr_array of shape (keep_mask.sum(), n_out)
    kept_positions : ndarray of int64
        Positions in ``W.data`` of the surviving entries, in the order of
        ``W_new.data``.
    """
    W = _as_canonical_csr(W)
    keep_mask = np.asarray(keep_mask, dtype=np.bool_)
    if keep_mask.shape != (W.shape[0],):
        raise ValueError(f"keep_mask must have shape ({W.shape[0]},), got {keep_mask.shape}")
    counts = np.diff(W.indptr).astype(np.int64, copy=False)
    kept_positions = np.flatnonzero(np.repeat(keep_mask, counts))
    indptr = np.zeros(int(np.count_nonzero(keep_mask)) + 1, dtype=np.int64)
    np.cumsum(counts[keep_mask], out=indptr[1:])
    shape = (indptr.shape[0] - 1, W.shape[1])
    indices = W.indices[kept_positions]
    data = W.data[kept_positions]
    return _make_csr(data, indices, indptr, shape), kept_positions

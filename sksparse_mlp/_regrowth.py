"""Gradient-guided regrowth (RigL-style) that never materialises a dense gradient.

After SET's pruning, a random sample of empty positions (``factor`` times the number
to regrow) is scored by the magnitude of the loss gradient there, computed only at
those candidates (a sampled dense-dense product of the layer's input activations
and output deltas over one batch), and the best-scored candidates are grown, at
value zero with zero optimizer state, as in RigL (Evci et al. 2020). Memory and
time are O(nnz + candidates) per layer, never O(n_in * n_out).

Pure functions over a sparse layer: :meth:`._network.SparseMLP.prune_and_regrow`
draws every layer's candidates (:func:`draw_candidates`), has the engine compute
their gradients in one forward and backward pass
(:func:`._fastpath.candidate_gradients`, with this module's kernels
:func:`candidate_gradients_tiled` and :func:`candidate_gradients_sparse`) and grows the
best (:func:`grow`).
"""
from typing import NamedTuple

import numba
import numpy as np

from . import _set
from ._csr import _as_canonical_csr
from ._jit import OPTS as _OPTS
from ._sampling import _sample_sorted_distinct

# rows of the training data scored per evolution (one random batch of this size)
SCORING_ROWS = 256


@numba.njit(cache=True)
def _empty_positions(indptr, indices, keep, ranks, n_out, rows, cols):
    """``(rows[c], cols[c])`` of the empty position of sorted rank ``ranks[c]`` among the
    positions the kept connections leave empty (row-major), in one walk over the rows."""
    n_in = indptr.shape[0] - 1
    nr = ranks.shape[0]
    r = 0
    base = 0
    for i in range(n_in):
        if r >= nr:
            break
        p = indptr[i]
        pend = indptr[i + 1]
        kept = 0
        for q in range(p, pend):
            kept += keep[q]
        end = base + (n_out - kept)
        nk = 0
        while r < nr and ranks[r] < end:
            q = ranks[r] - base
            while True:  # kept columns left of the q-th empty one shift it right
                while p < pend and not keep[p]:
                    p += 1
                if p < pend and indices[p] - nk <= q:
                    nk += 1
                    p += 1
                else:
                    break
            rows[r] = i
            cols[r] = q + nk
            r += 1
        base = end


@numba.njit(parallel=True, **_OPTS)
def candidate_gradients_tiled(A3, D3, rows, cols, out):
    """``out[c] += sum_t <A3[t, rows[c]], D3[t, cols[c]]>``: the gradient at positions
    ``(rows[c], cols[c])`` that hold no connection (gradient-guided regrowth), in the
    layout and with the sums of :func:`._kernels.backward_tiled`'s gradient."""
    nt, _, TB = A3.shape
    for c in numba.prange(rows.shape[0]):
        i = rows[c]
        j = cols[c]
        acc = A3.dtype.type(0)  # in the layer's dtype, so the sum vectorises
        for t in range(nt):
            a = A3[t, i]
            d = D3[t, j]
            for b in range(TB):
                acc += a[b] * d[b]
        out[c] += acc


@numba.njit(parallel=True, **_OPTS)
def candidate_gradients_sparse(xc_indptr, xc_indices, xc_data, D3, rows, cols, out):
    """:func:`candidate_gradients_tiled` for a first layer fed a sparse batch (CSC arrays,
    rows = samples), summed as :func:`._scatter.sddmm_sparse_tiled` sums the connections'."""
    TB = D3.shape[2]
    for c in numba.prange(rows.shape[0]):
        i = rows[c]
        j = cols[c]
        acc = D3.dtype.type(0)
        for p in range(xc_indptr[i], xc_indptr[i + 1]):
            b = xc_indices[p]
            t = b // TB
            acc += xc_data[p] * D3[t, j, b - t * TB]
        out[c] += acc


class Candidates(NamedTuple):
    """Empty positions drawn for one layer's regrowth and the pruning they follow."""

    keep: np.ndarray   # bool per connection: survives SET's pruning
    k: int             # connections pruned, as many to grow
    ranks: np.ndarray  # sorted ranks of the candidates among the empty positions
    rows: np.ndarray   # int64 position of each candidate
    cols: np.ndarray


def draw_candidates(W, zeta, rng, factor=4.0):
    """SET's pruning of ``W``, then a random sample of the positions it leaves empty.

    Parameters
    ----------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        Canonical weight matrix.
    zeta : float in [0, 1]
        SET's removal fraction (see :func:`._set.prune_and_regrow`).
    rng : numpy.random.Generator
        Draws the candidates.
    factor : float >= 1
        Candidates per connection to regrow (all empty positions when there are fewer).

    Returns
    -------
    candidates : Candidates or None
        None when nothing is pruned.  O(nnz + candidates) time and memory.
    """
    if not factor >= 1:
        raise ValueError("factor must be >= 1, got %r" % (factor,))
    if not (0 <= zeta <= 1):
        raise ValueError(f"zeta must be in [0, 1], got {zeta}")
    W = _as_canonical_csr(W)
    if zeta == 0 or W.nnz == 0:
        return None
    keep, k, _ = _set._set_prune(W.data, zeta)
    if k == 0:
        return None
    n_in, n_out = W.shape
    n_empty = n_in * n_out - (W.nnz - k)
    m = int(min(n_empty, max(k, np.ceil(factor * k))))
    ranks = _sample_sorted_distinct(n_empty, m, rng)
    rows = np.empty(m, np.int64)
    cols = np.empty(m, np.int64)
    _empty_positions(W.indptr, W.indices, keep, ranks, n_out, rows, cols)
    return Candidates(keep, k, ranks, rows, cols)


def grow(W, velocity, candidates, gradients):
    """Remove what :func:`draw_candidates` pruned and grow its candidates of largest
    ``|gradient|``, at value zero with zero state.

    Parameters
    ----------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        The matrix the candidates were drawn for.
    velocity : ndarray of shape (W.nnz,)
        State aligned with ``W.data`` (any dtype; an index array works too).
    candidates : Candidates
    gradients : ndarray of shape (len(candidates.rows),)
        The loss gradient at the candidates
        (:func:`._fastpath.candidate_gradients`).

    Returns
    -------
    W_new : scipy.sparse.csr_array
        Same shape and nnz; new connections hold 0.
    velocity_new : ndarray of shape (W.nnz,)
        Survivors keep theirs, new connections start at 0.
    chosen : ndarray of int
        The candidates grown, in position order.
    """
    W = _as_canonical_csr(W)
    velocity = np.asarray(velocity)
    if velocity.shape != W.data.shape:
        raise ValueError(f"velocity has shape {velocity.shape}, expected {W.data.shape}")
    k, m = candidates.k, len(candidates.rows)
    if np.shape(gradients) != (m,):
        raise ValueError("%d gradients for %d candidates" % (np.size(gradients), m))
    # the k largest |gradient| (selection, not a sort), in position order
    chosen = (np.sort(np.argpartition(-np.abs(gradients), k - 1)[:k]) if k < m
              else np.arange(m))
    W_new, vel_new = _set._rebuild(W, velocity, candidates.keep, candidates.ranks[chosen],
                                   np.zeros(k, W.dtype))
    return W_new, vel_new, chosen

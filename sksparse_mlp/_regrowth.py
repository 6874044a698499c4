"""Gradient-guided regrowth (RigL-style) that never materialises a dense gradient.

After SET's pruning, a random sample of empty positions (``factor`` times the number
to regrow) is scored by the magnitude of the loss gradient there, computed only at
those candidates (a sampled dense-dense product of the layer's input activations
and output deltas over one batch), and the best-scored candidates are grown, at
value zero with zero optimizer state, as in RigL (Evci et al. 2020). Memory and
time are O(nnz + candidates) per layer, never O(n_in * n_out).

Pure functions over a sparse layer; :meth:`._network.SparseMLP.prune_and_regrow`
calls :func:`prune_and_grow` with the signals of :func:`layer_signals`.
"""
import numba
import numpy as np
import scipy.sparse as sp

from . import _set
from ._activations import hidden_forward, loss_and_output_delta, output_forward
from ._csr import _as_canonical_csr
from ._jit import OPTS as _OPTS
from ._sampling import _sample_sorted_distinct

# rows of the training data scored per evolution (one random batch of this size)
SCORING_ROWS = 256


def layer_signals(net, X, Y, weights):
    """Input activations and output deltas of every layer on one batch (no dropout).

    Parameters
    ----------
    net : SparseMLP
    X : ndarray or CSR matrix of shape (batch, n_features)
    Y : ndarray of shape (batch, n_outputs)
    weights : ndarray of shape (batch,)
        Normalised sample weights (the delta is the gradient of their weighted mean).

    Returns
    -------
    signals : list of (ndarray, ndarray)
        Per layer ``(A, D)``, activations ``(n_in, batch)`` and deltas ``(n_out, batch)``
        (C-contiguous): the gradient at position ``(i, j)`` is ``A[i] @ D[j]``.
        O(nnz * batch) time, O(width * batch) memory.
    """
    dtype = net.dtype
    A = X.toarray() if sp.issparse(X) else np.asarray(X)
    acts, derivs = [np.ascontiguousarray(A.T, dtype=dtype)], []
    L = len(net.layers)
    for l, layer in enumerate(net.layers):
        Z = np.asarray(layer.W.T @ acts[-1], dtype=dtype) + layer.bias[:, None]
        if l < L - 1:
            derivs.append(hidden_forward(net.activation, Z, l + 1, net.slope))
        else:
            output_forward(net.out_activation, Z)
        acts.append(Z)
    _, D = loss_and_output_delta(net.loss, acts[-1], np.asarray(Y, dtype=dtype).T,
                                 np.asarray(weights, dtype=dtype))
    signals = [None] * L
    for l in range(L - 1, -1, -1):
        D = np.ascontiguousarray(D, dtype=dtype)
        signals[l] = (acts[l], D)
        if l > 0:
            D = np.asarray(net.layers[l].W @ D, dtype=dtype)
            if derivs[l - 1] is not None:
                D *= derivs[l - 1]
    return signals


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
def candidate_gradients(A, D, rows, cols, out):
    """``out[c] = A[rows[c]] @ D[cols[c]]``: the gradient at the candidate positions only."""
    for c in numba.prange(rows.shape[0]):
        a = A[rows[c]]
        d = D[cols[c]]
        acc = A.dtype.type(0)  # in the layer's dtype, so the sum vectorises
        for b in range(a.shape[0]):
            acc += a[b] * d[b]
        out[c] = acc


def prune_and_grow(W, velocity, zeta, rng, A, D, factor=4.0, return_candidates=False):
    """SET's pruning, then growth at the sampled empty positions of largest gradient.

    Parameters
    ----------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        Canonical weight matrix.
    velocity : ndarray of shape (W.nnz,)
        State aligned with ``W.data`` (any dtype; an index array works too).
    zeta : float in [0, 1]
        SET's removal fraction (see :func:`._set.prune_and_regrow`).
    rng : numpy.random.Generator
        Draws the candidates.
    A, D : ndarray of shape (n_in, batch) and (n_out, batch)
        The layer's input activations and output deltas (:func:`layer_signals`).
    factor : float >= 1
        Candidates per connection to regrow (all empty positions when there are fewer).
    return_candidates : bool
        Also return ``(rows, cols, gradients, chosen)`` of the candidates.

    Returns
    -------
    W_new : scipy.sparse.csr_array
        Same shape and nnz; new connections hold 0.
    velocity_new : ndarray of shape (W.nnz,)
        Survivors keep theirs, new connections start at 0.
    """
    if not factor >= 1:
        raise ValueError("factor must be >= 1, got %r" % (factor,))
    W = _as_canonical_csr(W)
    velocity = np.asarray(velocity)
    if velocity.shape != W.data.shape:
        raise ValueError(f"velocity has shape {velocity.shape}, expected {W.data.shape}")
    n_in, n_out = W.shape
    if A.shape[0] != n_in or D.shape[0] != n_out or A.shape[1] != D.shape[1]:
        raise ValueError("signals of shapes %s and %s do not fit a %s layer"
                         % (A.shape, D.shape, W.shape))
    keep, k, _ = _set_prune(W, zeta)
    if k == 0:
        return (W, velocity, None) if return_candidates else (W, velocity)
    n_empty = n_in * n_out - (W.nnz - k)
    m = int(min(n_empty, max(k, np.ceil(factor * k))))
    ranks = _sample_sorted_distinct(n_empty, m, rng)
    rows = np.empty(m, np.int64)
    cols = np.empty(m, np.int64)
    _empty_positions(W.indptr, W.indices, keep, ranks, n_out, rows, cols)
    grads = np.empty(m, A.dtype)
    candidate_gradients(np.ascontiguousarray(A), np.ascontiguousarray(D), rows, cols, grads)
    # the k largest |gradient| (selection, not a sort), in position order
    chosen = np.sort(np.argpartition(-np.abs(grads), k - 1)[:k]) if k < m else np.arange(m)
    W_new, vel_new = _set._rebuild(W, velocity, keep, ranks[chosen],
                                   np.zeros(k, W.dtype))
    if return_candidates:
        return W_new, vel_new, (rows, cols, grads, chosen)
    return W_new, vel_new


def _set_prune(W, zeta):
    if not (0 <= zeta <= 1):
        raise ValueError(f"zeta must be in [0, 1], got {zeta}")
    if zeta == 0 or W.nnz == 0:
        return None, 0, 0.0
    return _set._set_prune(W.data, zeta)

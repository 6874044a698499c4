"""SET's prune-and-regrow step over one sparse layer.

Removes the fraction ``zeta`` of the positive and of the negative weights
closest to zero and regrows as many connections at uniformly random empty
positions, in O(nnz) memory: empty positions are addressed by their rank among
the empty positions of the pruned pattern, and a merge kernel turns ranks into
``(row, col)`` while it rebuilds the rows. Gradient-guided regrowth
(:mod:`._regrowth`) reuses the removal and the rebuild.
"""
import numba
import numpy as np
import scipy.sparse as sp

from ._csr import _idx_dtype, _make_csr, _n_positions
from ._sampling import _sample_sorted_distinct, init_values

__all__ = ["prune_and_regrow"]


@numba.njit(cache=True)
def _split_signs(data, buf):
    """The non-negative values of ``data`` to the front of ``buf``, the negative ones to
    its back, NaN to neither (one pass); returns ``(lo, hi)``: they are ``buf[:lo]``
    and ``buf[hi:]``."""
    lo = 0
    hi = buf.shape[0]
    for p in range(data.shape[0]):  # no branch on the sign (random: half mispredicted)
        v = data[p]
        buf[lo] = v  # hi - 1 >= lo: slots between them are free
        buf[hi - 1] = v
        lo += v >= 0
        hi -= v < 0
    return lo, hi


@numba.njit(cache=True)
def _mark_prune(data, t_pos, ties_pos, t_neg, ties_neg, keep):
    """SET removal mask in one pass over ``data``: removes the non-negative values below
    ``t_pos`` and the first ``ties_pos`` equal to it (in position order), likewise the
    negative values above ``t_neg`` and the first ``ties_neg`` equal to it.  Returns the
    number of connections kept."""
    kept = 0
    for p in range(data.shape[0]):
        v = data[p]
        pos = v >= 0
        t = t_pos if pos else t_neg
        rm = (pos & (v < t)) | ((not pos) & (v > t))  # no branch on the sign
        if v == t:  # rare: a tie at its sign's threshold
            if pos and ties_pos > 0:
                rm = True
                ties_pos -= 1
            elif not pos and ties_neg > 0:
                rm = True
                ties_neg -= 1
        keep[p] = not rm
        kept += not rm
    return kept


@numba.njit(cache=True)
def _regrow_count(indptr, keep, ranks, n_out, kept_per_row, out_indptr):
    """First pass of the regrow merge: output row pointers.

    ``ranks`` (sorted) index the empty positions of the pruned matrix in
    row-major order; row ``i`` owns the ranks in ``[base, base + empties_i)``
    with ``empties_i = n_out - kept_i``.
    """
    n_in = indptr.shape[0] - 1
    nr = ranks.shape[0]
    r = 0
    base = 0
    out_indptr[0] = 0
    for i in range(n_in):
        kc = 0
        for p in range(indptr[i], indptr[i + 1]):
            if keep[p]:
                kc += 1
        kept_per_row[i] = kc
        end = base + (n_out - kc)
        r0 = r
        while r < nr and ranks[r] < end:
            r += 1
        out_indptr[i + 1] = out_indptr[i] + kc + (r - r0)
        base = end


@numba.njit(cache=True)
def _regrow_fill(indptr, indices, data, vel, keep, ranks, new_vals, n_out,
                 kept_per_row, out_indptr, out_indices, out_data, out_vel):
    """Second pass: merge surviving entries with the new ones, row by row.

    Within a row, the ``q``-th empty column (0-based) is ``q + (number of
    kept columns before it)``; a kept column ``c`` precedes it iff
    ``c - (kept columns already emitted) <= q``.  Ranks are sorted, so one
    forward walk over the row produces sorted output with no search.
    """
    n_in = indptr.shape[0] - 1
    nr = ranks.shape[0]
    r = 0
    base = 0
    for i in range(n_in):
        o = out_indptr[i]
        p = indptr[i]
        pend = indptr[i + 1]
        nk = 0
        end = base + (n_out - kept_per_row[i])
        while r < nr and ranks[r] < end:
            q = ranks[r] - base
            while True:
                while p < pend and not keep[p]:
                    p += 1
                if p < pend and indices[p] - nk <= q:
                    out_indices[o] = indices[p]
                    out_data[o] = data[p]
                    out_vel[o] = vel[p]
                    o += 1
                    nk += 1
                    p += 1
                else:
                    break
            out_indices[o] = q + nk
            out_data[o] = new_vals[r]
            out_vel[o] = 0
            o += 1
            r += 1
        while p < pend:
            if keep[p]:
                out_indices[o] = indices[p]
                out_data[o] = data[p]
                out_vel[o] = vel[p]
                o += 1
            p += 1
        base = end


def prune_and_regrow(W, velocity, zeta, rng, scheme="sparse_he", regrow="init"):
    """One SET step: remove the weights closest to zero, regrow at random.

    Parameters
    ----------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        Canonical weight matrix (sorted indices, no duplicates).
    velocity : ndarray of shape (W.nnz,)
        Optimizer state aligned with ``W.data``.
    zeta : float
        Fraction in [0, 1] removed separately among the non-negative and
        among the negative weights.
    rng : numpy.random.Generator
        Source of randomness (positions first, then values).
    scheme : {"sparse_he", "he", "xavier"}
        Initialisation rule of the new values, see :func:`init_values`
        (with the layer's nnz for the sparse fan-in).
    regrow : {"init", "pruned"}
        Values of the new connections: drawn by ``scheme`` (the paper), or
        uniform in ``(-t, t)`` with ``t`` the largest magnitude removed in this
        step, so new connections enter on par with the weakest survivors and
        evolution does not perturb what the layer has learned.

    Returns
    -------
    W_new : scipy.sparse.csr_array
        Canonical matrix with the same shape and nnz.
    velocity_new : ndarray of shape (W.nnz,)
        Aligned with ``W_new.data``: surviving connections keep their
        velocity, new connections start at 0.

    Notes
    -----
    * Removed: ``int(zeta * n_pos)`` of the ``n_pos`` weights ``>= 0`` with
      the smallest values and ``int(zeta * n_neg)`` of the negative weights
      with the largest values; ties are broken by position (row-major,
      lower position removed first), so the result is deterministic.
    * Regrown: as many positions, drawn uniformly without replacement among
      all positions that are empty *after* pruning.  Existing (surviving)
      positions are never reused and no position is drawn twice; a position
      just pruned is empty and may be drawn again (with a fresh value and
      zero velocity), as in the authors' code.  This keeps the draw uniform
      over the true complement and lets a full or nearly full layer regrow
      (there, the pruned positions are the only empty ones).
    * ``zeta == 0`` (or nothing to remove) returns ``W`` and ``velocity``
      unchanged (the same objects).
    * O(nnz) memory, O(nnz + k log k) time for ``k`` regrown connections;
      no rejection sampling against the existing pattern: empty positions
      are addressed by their rank among the empty positions.
    """
    if not (0 <= zeta <= 1):
        raise ValueError(f"zeta must be in [0, 1], got {zeta}")
    if not sp.issparse(W) or W.format != "csr":
        raise TypeError("W must be a scipy.sparse CSR matrix")
    velocity = np.asarray(velocity)
    if velocity.shape != W.data.shape:
        raise ValueError(f"velocity has shape {velocity.shape}, expected {W.data.shape}")
    if zeta == 0 or W.nnz == 0:
        return W, velocity
    if not W.has_canonical_format:
        # Sorting in place would silently misalign the caller's velocity.
        raise ValueError("W must be in canonical format (sorted indices, no duplicates)")

    n_in, n_out, N = _n_positions(*W.shape)
    keep, k, t = _set_prune(W.data, zeta)
    if k == 0:
        return W, velocity
    # Sample ranks among the empty positions of the pruned pattern; the merge
    # kernel turns rank -> (row, col) while it rebuilds the rows.
    ranks = _sample_sorted_distinct(N - (W.nnz - k), k, rng)
    if regrow == "pruned":
        new_vals = rng.uniform(-t, t, size=k).astype(W.dtype)
    elif regrow == "init":
        new_vals = init_values(rng, k, n_in, n_out, W.nnz, scheme, W.dtype)
    else:
        raise ValueError(f"regrow must be 'init' or 'pruned', got {regrow!r}")
    return _rebuild(W, velocity, keep, ranks, new_vals)


def _set_prune(data, zeta):
    """SET's removal (see :func:`prune_and_regrow`): ``(keep, k, t)`` with ``keep`` the
    mask of surviving connections, ``k`` the number removed and ``t`` the largest
    magnitude removed."""
    nnz = data.shape[0]
    # Thresholds by selection (in-place partition of each sign's values), not a sort;
    # a threshold of 0 with no ties removes nothing of its sign
    buf = np.empty_like(data)
    n_pos, hi = _split_signs(data, buf)
    n_neg = nnz - hi
    k_pos, k_neg = int(zeta * n_pos), int(zeta * n_neg)
    t_pos = t_neg = data.dtype.type(0)
    ties_pos = ties_neg = 0
    if k_pos > 0:
        part = buf[:n_pos]
        part.partition(k_pos - 1)
        t_pos = part[k_pos - 1]
        ties_pos = k_pos - int(np.count_nonzero(part[:k_pos] < t_pos))
    if k_neg > 0:
        part = buf[hi:]
        part.partition(n_neg - k_neg)
        t_neg = part[n_neg - k_neg]
        ties_neg = k_neg - int(np.count_nonzero(part[n_neg - k_neg:] > t_neg))
    del buf
    k = k_pos + k_neg
    keep = np.empty(nnz, dtype=np.bool_)
    if k == 0:
        keep[:] = True
        return keep, 0, 0.0
    n_kept = _mark_prune(data, t_pos, ties_pos, t_neg, ties_neg, keep)
    assert n_kept == nnz - k
    t = max(float(t_pos) if k_pos else 0.0, -float(t_neg) if k_neg else 0.0)
    return keep, k, t


def _rebuild(W, velocity, keep, ranks, new_vals):
    """The connections ``keep`` of ``W`` plus new ones at the sorted ``ranks`` among the
    empty positions of the kept pattern (values ``new_vals``, zero velocity)."""
    n_in, n_out = W.shape
    nnz = int(np.count_nonzero(keep)) + ranks.shape[0]
    idx = _idx_dtype(W.shape, nnz)
    kept_per_row = np.empty(n_in, dtype=np.int64)
    out_indptr = np.empty(n_in + 1, dtype=np.int64)
    _regrow_count(W.indptr, keep, ranks, n_out, kept_per_row, out_indptr)
    out_indices = np.empty(nnz, dtype=idx)
    out_data = np.empty(nnz, dtype=W.data.dtype)
    out_vel = np.empty(nnz, dtype=velocity.dtype)
    _regrow_fill(W.indptr, W.indices, W.data, velocity, keep, ranks, new_vals, n_out,
                 kept_per_row, out_indptr, out_indices, out_data, out_vel)
    return _make_csr(out_data, out_indices, out_indptr, W.shape), out_vel

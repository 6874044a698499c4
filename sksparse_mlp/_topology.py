"""Sparse topology: Erdős–Rényi sampling, SET prune-and-regrow, neuron pruning.

Every function here works on the sparsity pattern of a layer's weight matrix
``W`` (a canonical ``scipy.sparse.csr_array`` of shape ``(n_in, n_out)``) in
O(nnz) time and memory.  No dense ``n_in x n_out`` array or mask is ever
built, so a layer of 3.4 million x 3.4 million neurons with ~10^8 connections
can be sampled and evolved on a laptop.

Positions are addressed either in CSR form or as int64 *flat* positions
``row * n_out + col``; for a canonical CSR matrix the order of ``W.data`` is
the order of the flat positions, which is what makes "ties broken by position"
cheap and deterministic.

Random subsets are drawn with :func:`_sample_sorted_distinct`, which returns
``m`` distinct uniform values of ``range(M)`` at a cost bounded by a small
multiple of ``m`` whatever the ratio ``m / M``: when ``m <= M / 2`` it draws
with replacement and tops up (at least half of every draw is new), otherwise
it samples the ``M - m`` values to *leave out* (then ``M <= 2 m``, so listing
the complement is O(m)).

The numba kernels are ``@njit(cache=True)`` and single-threaded: the topology
work runs once per epoch and is memory-bound merge-style work.
"""
import math

import numba
import numpy as np
import scipy.sparse as sp

__all__ = [
    "erdos_renyi_density",
    "sample_pattern",
    "init_values",
    "random_layer",
    "prune_and_regrow",
    "neuron_importance",
    "importance_prune_mask",
    "drop_columns",
    "drop_rows",
]

_INT32_MAX = np.iinfo(np.int32).max
_SCHEMES = ("sparse_he", "he", "xavier")


# ---------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------

@numba.njit(cache=True)
def _dedupe_sorted_inplace(a):
    """Compact the sorted array ``a`` to its distinct values; return the count."""
    n = a.shape[0]
    if n == 0:
        return 0
    k = 1
    for i in range(1, n):
        if a[i] != a[k - 1]:
            a[k] = a[i]
            k += 1
    return k


@numba.njit(cache=True)
def _complement_sorted(excl, M, out):
    """Write ``range(M)`` minus the sorted distinct ``excl`` into ``out``."""
    j = 0
    k = 0
    ne = excl.shape[0]
    for x in range(M):
        if j < ne and excl[j] == x:
            j += 1
        else:
            out[k] = x
            k += 1


@numba.njit(cache=True)
def _setdiff_sorted(a, b, keep):
    """``keep[i] = a[i] not in b`` for sorted ``a`` and ``b``; return the count kept."""
    j = 0
    nb = b.shape[0]
    cnt = 0
    for i in range(a.shape[0]):
        x = a[i]
        while j < nb and b[j] < x:
            j += 1
        if j < nb and b[j] == x:
            keep[i] = False
        else:
            keep[i] = True
            cnt += 1
    return cnt


@numba.njit(cache=True)
def _merge_sorted(a, b, out):
    """Merge two sorted arrays with no common element into ``out``."""
    i = 0
    j = 0
    k = 0
    na = a.shape[0]
    nb = b.shape[0]
    while i < na and j < nb:
        if a[i] < b[j]:
            out[k] = a[i]
            i += 1
        else:
            out[k] = b[j]
            j += 1
        k += 1
    while i < na:
        out[k] = a[i]
        i += 1
        k += 1
    while j < nb:
        out[k] = b[j]
        j += 1
        k += 1


@numba.njit(cache=True)
def _flat_to_csr(pos, n_out, indptr, indices):
    """Sorted flat positions -> CSR ``indptr`` / ``indices`` (outputs preallocated)."""
    indptr[:] = 0
    for k in range(pos.shape[0]):
        r = pos[k] // n_out
        indices[k] = pos[k] - r * n_out
        indptr[r + 1] += 1
    for i in range(indptr.shape[0] - 1):
        indptr[i + 1] += indptr[i]


@numba.njit(cache=True)
def _mark_prune(data, has_pos, t_pos, k_pos, has_neg, t_neg, k_neg, keep):
    """SET removal mask in two passes over ``data``.

    Removes the ``k_pos`` non-negative values closest to zero (everything
    below the threshold ``t_pos``, then the first ties at ``t_pos`` in
    position order) and likewise the ``k_neg`` negative values closest to
    zero (above ``t_neg``).  Returns the number of connections kept.
    """
    n = data.shape[0]
    below_pos = 0
    above_neg = 0
    for p in range(n):
        v = data[p]
        if v >= 0:
            if has_pos and v < t_pos:
                below_pos += 1
        elif v < 0:
            if has_neg and v > t_neg:
                above_neg += 1
    ties_pos = k_pos - below_pos
    ties_neg = k_neg - above_neg
    kept = 0
    for p in range(n):
        v = data[p]
        rm = False
        if v >= 0:
            if has_pos:
                if v < t_pos:
                    rm = True
                elif v == t_pos and ties_pos > 0:
                    rm = True
                    ties_pos -= 1
        elif v < 0:
            if has_neg:
                if v > t_neg:
                    rm = True
                elif v == t_neg and ties_neg > 0:
                    rm = True
                    ties_neg -= 1
        keep[p] = not rm
        if not rm:
            kept += 1
    return kept


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


@numba.njit(cache=True)
def _column_abs_sums(indices, data, out):
    out[:] = 0.0
    for p in range(indices.shape[0]):
        out[indices[p]] += abs(data[p])


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

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
    n_in = int(n_in)
    n_out = int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"layer shape must be positive, got ({n_in}, {n_out})")
    N = n_in * n_out
    if N > np.iinfo(np.int64).max:
        raise OverflowError("n_in * n_out does not fit in int64 flat positions")
    return n_in, n_out, N


def _sample_sorted_distinct(M, m, rng):
    """``m`` distinct uniformly random integers of ``range(M)``, sorted (int64).

    The whole procedure is equivariant under relabelling of ``range(M)``
    (it only draws uniform integers, deduplicates, and drops a uniformly
    random subset of surplus draws), so the returned set is uniform over
    all ``m``-subsets.  Cost is O(m log m) time and a few ``m`` int64 of
    memory for any ``m / M``.
    """
    M = int(M)
    m = int(m)
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    if m >= M:
        return np.arange(M, dtype=np.int64)
    if M <= 4096:
        # Small ranges (also the base case of the recursion below): a
        # permutation costs O(M) = O(1).
        out = rng.permutation(M)[:m].astype(np.int64, copy=False)
        out.sort()
        return out
    if 2 * m > M:
        # Dense request: draw the M - m values to leave out (acceptance >= 1/2)
        # and list the rest; M < 2 m keeps this O(m).
        excl = _sample_sorted_distinct(M, M - m, rng)
        out = np.empty(m, dtype=np.int64)
        _complement_sorted(excl, M, out)
        return out

    out = None
    need = m
    while need > 0:
        have = 0 if out is None else out.shape[0]
        free = M - have
        # Expected draws so that ~`need` of them are new and distinct (coupon
        # collector on the free slots), plus a few standard deviations so a
        # single round almost always suffices; surplus is dropped below.
        d = -math.log1p(-need / free) * M
        d = int(math.ceil(d + 4.0 * math.sqrt(need) + 16))
        draws = rng.integers(0, M, size=d, dtype=np.int64)
        draws.sort()
        draws = draws[:_dedupe_sorted_inplace(draws)]
        if out is not None:
            fresh = np.empty(draws.shape[0], dtype=np.bool_)
            _setdiff_sorted(draws, out, fresh)
            draws = draws[fresh]
        if draws.shape[0] > need:
            # Drop a uniformly random subset of the surplus (label-independent).
            drop = _sample_sorted_distinct(draws.shape[0], draws.shape[0] - need, rng)
            draws = np.delete(draws, drop)
        if out is None:
            out = np.ascontiguousarray(draws)
        else:
            merged = np.empty(out.shape[0] + draws.shape[0], dtype=np.int64)
            _merge_sorted(out, draws, merged)
            out = merged
        need = m - out.shape[0]
    return out


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    return dtype


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------

def erdos_renyi_density(n_in, n_out, epsilon):
    """Density of an Erdős–Rényi sparse layer.

    Parameters
    ----------
    n_in, n_out : int
        Layer shape (input and output neurons).
    epsilon : float
        Sparsity parameter (> 0); the layer gets about
        ``epsilon * (n_in + n_out)`` connections.

    Returns
    -------
    density : float
        ``min(1, epsilon * (n_in + n_out) / (n_in * n_out))``, in (0, 1].

    Examples
    --------
    >>> erdos_renyi_density(1000, 1000, 20)
    0.04
    >>> erdos_renyi_density(100, 10, 20)
    1.0
    """
    n_in, n_out, N = _n_positions(n_in, n_out)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return float(min(1.0, epsilon * (n_in + n_out) / N))


def sample_pattern(n_in, n_out, density, rng):
    """Uniformly random sparsity pattern with an exact number of connections.

    Parameters
    ----------
    n_in, n_out : int
        Layer shape.
    density : float
        Fraction of the ``n_in * n_out`` positions to fill, in (0, 1].
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    indptr, indices : ndarray
        Canonical CSR pattern (sorted column indices, no duplicates) with
        exactly ``max(1, round(density * n_in * n_out))`` positions, drawn
        uniformly among all subsets of that size.  Both arrays use the index
        dtype scipy would choose (int32 unless ``nnz`` or a dimension
        reaches 2**31, then int64).  ``density == 1`` gives the full layer.

    Notes
    -----
    O(nnz) memory (a few int64 per connection at the peak) and
    O(nnz log nnz) time for every density, including nearly full layers.
    """
    n_in, n_out, N = _n_positions(n_in, n_out)
    if not (0 < density <= 1):
        raise ValueError(f"density must be in (0, 1], got {density}")
    m = min(N, max(1, int(round(density * N))))
    pos = _sample_sorted_distinct(N, m, rng)
    idx = _idx_dtype((n_in, n_out), m)
    indptr = np.empty(n_in + 1, dtype=idx)
    indices = np.empty(m, dtype=idx)
    _flat_to_csr(pos, n_out, indptr, indices)
    return indptr, indices


def init_values(rng, n, n_in, n_out, nnz, scheme="sparse_he", dtype=np.float32):
    """Draw ``n`` initial weight values ``U(-L, L)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Number of values to draw.
    n_in, n_out : int
        Dense shape of the layer.
    nnz : int
        Number of connections of the sparse layer (used by ``"sparse_he"``).
    scheme : {"sparse_he", "he", "xavier"}
        * ``"sparse_he"``: ``L = sqrt(6 / fan_in)`` with
          ``fan_in = max(1, nnz / n_out)``, the mean *actual* fan-in of the
          sparse layer, so that activations keep their scale and training
          does not start at chance;
        * ``"he"``: ``L = sqrt(6 / n_in)``, the paper's rule (dense fan-in);
        * ``"xavier"``: ``L = sqrt(6 / (n_in + n_out))``.
    dtype : dtype, default float32
        Floating point dtype of the result.

    Returns
    -------
    values : ndarray of shape (n,)
    """
    if scheme == "sparse_he":
        limit = math.sqrt(6.0 / max(1.0, float(nnz) / float(n_out)))
    elif scheme == "he":
        limit = math.sqrt(6.0 / float(n_in))
    elif scheme == "xavier":
        limit = math.sqrt(6.0 / float(n_in + n_out))
    else:
        raise ValueError(f"scheme must be one of {_SCHEMES}, got {scheme!r}")
    dtype = _check_dtype(dtype)
    if dtype in (np.float32, np.float64):
        # Draw straight into the target dtype: no float64 temporary for float32.
        v = rng.random(int(n), dtype=dtype)
    else:
        v = rng.random(int(n)).astype(dtype)
    v *= dtype.type(2.0 * limit)
    v -= dtype.type(limit)
    return v


def random_layer(n_in, n_out, density, rng, scheme="sparse_he", dtype=np.float32):
    """Random sparse weight matrix with a uniform pattern and fresh values.

    Parameters
    ----------
    n_in, n_out : int
        Layer shape.
    density : float
        Density in (0, 1]; see :func:`sample_pattern` for the exact count.
    rng : numpy.random.Generator
        Source of randomness (pattern first, then values).
    scheme : {"sparse_he", "he", "xavier"}
        Initialisation rule, see :func:`init_values`.
    dtype : dtype, default float32
        Value dtype.

    Returns
    -------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        Canonical CSR matrix.

    Examples
    --------
    >>> import numpy as np
    >>> W = random_layer(100, 50, 0.1, np.random.default_rng(0))
    >>> W.shape, W.nnz, W.dtype
    ((100, 50), 500, dtype('float32'))
    """
    indptr, indices = sample_pattern(n_in, n_out, density, rng)
    nnz = indices.shape[0]
    data = init_values(rng, nnz, n_in, n_out, nnz, scheme, dtype)
    return _make_csr(data, indices, indptr, (int(n_in), int(n_out)))


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
    # Thresholds by selection (np.partition), not by a full sort.
    pos_vals = data[data >= 0]
    n_pos = pos_vals.shape[0]
    k_pos = int(zeta * n_pos)
    t_pos = data.dtype.type(0)
    if k_pos > 0:
        t_pos = np.partition(pos_vals, k_pos - 1)[k_pos - 1]
    del pos_vals
    neg_vals = data[data < 0]
    n_neg = neg_vals.shape[0]
    k_neg = int(zeta * n_neg)
    t_neg = data.dtype.type(0)
    if k_neg > 0:
        t_neg = np.partition(neg_vals, n_neg - k_neg)[n_neg - k_neg]
    del neg_vals
    k = k_pos + k_neg
    keep = np.empty(nnz, dtype=np.bool_)
    if k == 0:
        keep[:] = True
        return keep, 0, 0.0
    n_kept = _mark_prune(data, k_pos > 0, t_pos, k_pos, k_neg > 0, t_neg, k_neg, keep)
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

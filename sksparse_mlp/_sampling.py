"""Sampling a layer: Erdős–Rényi density, a uniform random pattern, initial values.

Positions are addressed as int64 *flat* positions ``row * n_out + col``; for a
canonical CSR matrix the order of ``W.data`` is the order of the flat
positions. No dense ``n_in x n_out`` array or mask is ever built, so a layer of
3.4 million x 3.4 million neurons with ~10^8 connections can be sampled on a
laptop.

Random subsets are drawn with :func:`_sample_sorted_distinct`, which returns
``m`` distinct uniform values of ``range(M)`` at a cost bounded by a small
multiple of ``m`` whatever the ratio ``m / M``: when ``m <= M / 2`` it draws
with replacement and tops up (at least half of every draw is new), otherwise
it samples the ``M - m`` values to *leave out* (then ``M <= 2 m``, so listing
the complement is O(m)). SET (:mod:`._set`) and gradient regrowth
(:mod:`._regrowth`) draw their new positions with it too.

The numba kernels are ``@njit(cache=True)`` and single-threaded: this work runs
once per layer (and per epoch for SET) and is memory-bound merge-style work.
"""
import math

import numba
import numpy as np

from ._csr import _idx_dtype, _make_csr, _n_positions

__all__ = ["erdos_renyi_density", "sample_pattern", "init_values", "random_layer"]

_SCHEMES = ("sparse_he", "he", "xavier")


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


# Digits of the radix sort: 1,024 counters per digit stay in L1.  numpy's sort of the
# draws (introsort) took 57 ns per value for 3.3 million of them, the radix sort 11
# (10-bit digits; 8, 11 and 13 bits 13-18 ns): most of SET's time at scale
_RADIX_BITS = 10
_RADIX_MIN = 4096  # below this many values numpy's sort is as fast


@numba.njit(cache=True)
def _radix_sort(a, upper, buf):
    """Sort ``a`` (int64, every value in ``[0, upper)``) in place: least significant
    digit first, the counts of every digit in one pass, then one scatter per digit of
    ``upper - 1`` that the values do not all share, between ``a`` and ``buf`` (as
    large as ``a``)."""
    n = a.shape[0]
    mask = (1 << _RADIX_BITS) - 1
    n_digits = 0
    while n_digits * _RADIX_BITS < 63 and (upper - 1) >> (n_digits * _RADIX_BITS) > 0:
        n_digits += 1
    counts = np.zeros((n_digits, mask + 1), np.int64)
    for i in range(n):
        v = a[i]
        for d in range(n_digits):
            counts[d, (v >> (d * _RADIX_BITS)) & mask] += 1
    src, dst = a, buf
    for d in range(n_digits):
        shift = d * _RADIX_BITS
        c = counts[d]
        if c[(src[0] >> shift) & mask] == n:
            continue  # one value of this digit: the order stays
        total = 0
        for b in range(mask + 1):
            k = c[b]
            c[b] = total
            total += k
        for i in range(n):
            v = src[i]
            b = (v >> shift) & mask
            dst[c[b]] = v
            c[b] += 1
        src, dst = dst, src
    if src.ctypes.data != a.ctypes.data:
        a[:] = src


def _sort_ints(a, upper):
    """Sort the int64 ``a`` (values in ``[0, upper)``) in place."""
    if a.shape[0] < _RADIX_MIN:
        a.sort()
    else:
        _radix_sort(a, upper, np.empty_like(a))  # numpy's memory: traced, as the rest


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
        _sort_ints(out, M)
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
        _sort_ints(draws, M)
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

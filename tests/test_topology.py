"""Tests of the topology modules (_sampling, _set, _pruning) and of the server's
pattern algebra (parallel._merge) against dense numpy references."""
import math
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from sksparse_mlp._pruning import drop_columns, drop_rows, importance_prune_mask, neuron_importance
from sksparse_mlp._sampling import (
    _RADIX_MIN,
    _sample_sorted_distinct,
    _sort_ints,
    erdos_renyi_density,
    init_values,
    random_layer,
    sample_pattern,
)
from sksparse_mlp._set import _set_prune, prune_and_regrow
from sksparse_mlp.parallel._merge import average_union, project_to_pattern, prune_to_nnz

# ---------------------------------------------------------------- helpers

def flat_positions(W):
    """Row-major flat positions of the entries of a CSR matrix, in data order."""
    rows = np.repeat(np.arange(W.shape[0], dtype=np.int64), np.diff(W.indptr))
    return rows * W.shape[1] + W.indices.astype(np.int64)


def assert_canonical(W):
    """Sorted, duplicate-free column indices in every row, all in range."""
    assert isinstance(W, sp.csr_array)
    assert W.indptr[0] == 0 and W.indptr[-1] == W.nnz == W.indices.shape[0] == W.data.shape[0]
    assert np.all(np.diff(W.indptr) >= 0)
    if W.nnz:
        assert W.indices.min() >= 0 and W.indices.max() < W.shape[1]
        pos = flat_positions(W)
        assert np.all(np.diff(pos) > 0), "unsorted or duplicate positions"


def quantised_layer(n_in, n_out, density, seed, step=0.25, dtype=np.float32):
    """Random layer whose values are multiples of ``step``: many exact ties and zeros."""
    rng = np.random.default_rng(seed)
    W = random_layer(n_in, n_out, density, rng, "sparse_he", dtype)
    W.data[:] = np.round(rng.uniform(-1.5, 1.5, W.nnz) / step) * step
    return W


def chi2_per_dof(counts, expected):
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.sum((counts - expected) ** 2 / expected) / (counts.size - 1))


# ---------------------------------------------------------------- densities and sampling

def test_erdos_renyi_density():
    assert erdos_renyi_density(1000, 1000, 20) == pytest.approx(0.04)
    assert erdos_renyi_density(784, 1000, 20) == pytest.approx(20 * 1784 / 784000)
    assert erdos_renyi_density(1000, 10, 20) == 1.0  # p >= 1: dense output layer
    with pytest.raises(ValueError):
        erdos_renyi_density(10, 10, 0)


@pytest.mark.parametrize(
    "n_in, n_out, density",
    [(1, 1, 1.0), (7, 5, 1.0), (50, 40, 0.3), (50, 40, 0.5), (50, 40, 0.51), (50, 40, 0.999),
     (300, 200, 0.7), (300, 200, 0.02), (1000, 1000, 1e-9), (3, 100000, 0.1)],
)
def test_sample_pattern_exact_count_sorted_unique(n_in, n_out, density):
    rng = np.random.default_rng(1)
    indptr, indices = sample_pattern(n_in, n_out, density, rng)
    expected = max(1, round(density * n_in * n_out))
    assert indptr.shape == (n_in + 1,)
    assert indices.shape == (expected,)
    W = sp.csr_array((np.ones(expected), indices, indptr), shape=(n_in, n_out))
    assert_canonical(W)
    if density == 1.0:
        assert np.array_equal(flat_positions(W), np.arange(n_in * n_out))


def test_sample_pattern_deterministic_and_validates():
    a = sample_pattern(100, 80, 0.1, np.random.default_rng(5))
    b = sample_pattern(100, 80, 0.1, np.random.default_rng(5))
    c = sample_pattern(100, 80, 0.1, np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            sample_pattern(10, 10, bad, np.random.default_rng(0))


@pytest.mark.parametrize("density", [0.02, 0.7])  # draw-and-top-up path, complement path
def test_sample_pattern_rows_and_columns_balanced(density):
    # Row / column counts of a uniform m-subset are hypergeometric with
    # variance ~ mean * (1 - density): the chi-square per degree of freedom,
    # rescaled by (1 - density), is ~1 +- sqrt(2 / dof).
    n_in, n_out = 2000, 500
    indptr, indices = sample_pattern(n_in, n_out, density, np.random.default_rng(123))
    m = indices.shape[0]
    rows = np.diff(indptr)
    cols = np.bincount(indices, minlength=n_out)
    for counts, n in ((rows, n_in), (cols, n_out)):
        stat = chi2_per_dof(counts, m / n) / (1 - density)
        assert abs(stat - 1) < 6 * math.sqrt(2 / (n - 1)), stat
    # Columns within rows are not biased towards either end of the row.
    assert abs(indices.astype(np.float64).mean() / (n_out - 1) - 0.5) < 0.01


@pytest.mark.parametrize("M, m", [(5000, 40), (5000, 4000), (10**12, 3), (1000, 100)])
def test_sample_sorted_distinct_uniform_marginals(M, m):
    rng = np.random.default_rng(7)
    reps = 1500
    if M > 10**6:
        # Huge range: only check the values are distinct, sorted, in range.
        for _ in range(50):
            s = _sample_sorted_distinct(M, m, rng)
            assert s.shape == (m,) and np.all(np.diff(s) > 0) and s[0] >= 0 and s[-1] < M
        return
    counts = np.zeros(M)
    for _ in range(reps):
        s = _sample_sorted_distinct(M, m, rng)
        assert s.shape == (m,) and np.all(np.diff(s) > 0) and s[0] >= 0 and s[-1] < M
        counts[s] += 1
    p = m / M
    stat = chi2_per_dof(counts, reps * p) / (1 - p)
    assert abs(stat - 1) < 6 * math.sqrt(2 / (M - 1)), stat


def test_int64_index_path():
    # n_out >= 2**31 forces int64 indices; still O(nnz).
    rng = np.random.default_rng(0)
    n_out = 2**31 + 10
    W = random_layer(3, n_out, 1e-9, rng)
    assert W.nnz == round(1e-9 * 3 * n_out)
    assert W.indices.dtype == np.int64
    assert_canonical(W)
    v = np.arange(W.nnz, dtype=np.float32) + 1
    W2, v2 = prune_and_regrow(W, v, 0.5, rng)
    assert W2.nnz == W.nnz and W2.indices.dtype == np.int64
    assert_canonical(W2)


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_values_schemes(dtype):
    rng = np.random.default_rng(0)
    n_in, n_out, nnz, n = 400, 100, 2000, 20000
    limits = {
        "sparse_he": math.sqrt(6 / (nnz / n_out)),
        "he": math.sqrt(6 / n_in),
        "xavier": math.sqrt(6 / (n_in + n_out)),
    }
    for scheme, L in limits.items():
        v = init_values(rng, n, n_in, n_out, nnz, scheme, dtype)
        assert v.dtype == dtype and v.shape == (n,)
        assert np.abs(v).max() <= L * (1 + 1e-6)
        assert np.abs(v).max() > 0.99 * L
        assert abs(v.mean()) < 0.05 * L
        assert v.var() == pytest.approx(L * L / 3, rel=0.05)
    # Sparse fan-in never below 1 connection.
    v = init_values(rng, 1000, 10, 1000, 5, "sparse_he", dtype)
    assert np.abs(v).max() <= math.sqrt(6) * (1 + 1e-6)
    with pytest.raises(ValueError):
        init_values(rng, 3, 2, 2, 2, "glorot", dtype)


def test_random_layer():
    W = random_layer(120, 80, 0.05, np.random.default_rng(0), "xavier", np.float64)
    assert W.shape == (120, 80) and W.nnz == 480 and W.dtype == np.float64
    assert W.has_canonical_format
    assert_canonical(W)
    assert np.abs(W.data).max() <= math.sqrt(6 / 200)


# ---------------------------------------------------------------- SET

def reference_removed(data, zeta):
    """Data indices SET must remove: ties broken by position (data order)."""
    idx = np.arange(data.size)
    pos = idx[data >= 0]
    neg = idx[data < 0]
    k_pos = int(zeta * pos.size)
    k_neg = int(zeta * neg.size)
    pos_sorted = pos[np.lexsort((pos, data[pos]))]  # smallest value first
    neg_sorted = neg[np.lexsort((neg, -data[neg]))]  # largest (closest to 0) first
    return np.sort(np.concatenate([pos_sorted[:k_pos], neg_sorted[:k_neg]]))


def check_set_step(W, v, zeta, seed, scheme="sparse_he"):
    W2, v2 = prune_and_regrow(W, v, zeta, np.random.default_rng(seed), scheme)
    assert_canonical(W2)
    assert W2.shape == W.shape and W2.nnz == W.nnz and v2.shape == (W.nnz,)
    assert W2.dtype == W.dtype and v2.dtype == v.dtype

    removed = reference_removed(W.data, zeta)
    k = removed.size
    old_pos = flat_positions(W)
    survivors = np.setdiff1d(np.arange(W.nnz), removed)
    new_pos = flat_positions(W2)

    # Survivors keep position, value and velocity.
    where = np.searchsorted(new_pos, old_pos[survivors])
    assert np.array_equal(new_pos[where], old_pos[survivors])
    assert np.array_equal(W2.data[where], W.data[survivors])
    assert np.array_equal(v2[where], v[survivors])

    # Exactly k new connections, never at a surviving position, velocity 0.
    is_new = np.ones(W2.nnz, dtype=bool)
    is_new[where] = False
    assert is_new.sum() == k
    assert np.intersect1d(new_pos[is_new], old_pos[survivors]).size == 0
    assert np.all(v2[is_new] == 0)
    n_in, n_out = W.shape
    L = {"sparse_he": math.sqrt(6 / max(1, W.nnz / n_out)), "he": math.sqrt(6 / n_in),
         "xavier": math.sqrt(6 / (n_in + n_out))}[scheme]
    assert np.all(np.abs(W2.data[is_new]) <= L * (1 + 1e-6))
    return W2, v2, old_pos[removed], new_pos[is_new]


@pytest.mark.parametrize("shape, density, zeta", [
    ((30, 20, ), 0.3, 0.3), ((30, 20), 0.05, 0.5), ((64, 48), 0.2, 1.0), ((17, 9), 0.9, 0.3),
])
def test_prune_and_regrow_matches_reference(shape, density, zeta):
    W = quantised_layer(*shape, density, seed=3)  # many ties, some exact zeros
    assert (W.data == 0).any() and np.unique(W.data).size < W.nnz
    v = np.random.default_rng(4).standard_normal(W.nnz).astype(np.float32) + 5.0
    check_set_step(W, v, zeta, seed=11)


def test_prune_and_regrow_pruned_scale_regrowth():
    rng = np.random.default_rng(7)
    W = random_layer(60, 50, 0.2, rng)
    v = np.zeros(W.nnz, dtype=W.dtype)
    removed = reference_removed(W.data, 0.3)
    t = np.abs(W.data[removed]).max()
    W2, v2 = prune_and_regrow(W, v, 0.3, np.random.default_rng(1), regrow="pruned")
    survivors = np.setdiff1d(flat_positions(W), flat_positions(W)[removed])
    is_new = ~np.isin(flat_positions(W2), survivors)
    assert is_new.sum() == removed.size and W2.nnz == W.nnz
    # new values never exceed the largest removed magnitude, and use the range
    assert np.abs(W2.data[is_new]).max() <= t
    assert np.abs(W2.data[is_new]).max() > 0.5 * t
    with pytest.raises(ValueError, match="regrow"):
        prune_and_regrow(W, v, 0.3, rng, regrow="zero")


@pytest.mark.parametrize("n", [0, 1, _RADIX_MIN - 1, _RADIX_MIN, 50_000])
@pytest.mark.parametrize("upper", [1, 2, 1000, 2 ** 40 + 7, 2 ** 63 - 1])
def test_sort_ints_matches_numpy(n, upper):
    """The radix sort of SET's draws: every digit count, digits shared by all values
    (skipped), one value only, the whole int64 range."""
    a = np.random.default_rng(n + upper % 997).integers(0, upper, n, dtype=np.int64)
    if n > 10:
        a[:5] = upper - 1  # the largest value, repeated
    expected = np.sort(a)
    _sort_ints(a, upper)
    assert np.array_equal(a, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("zeta", [0.0, 0.3, 1.0])
def test_set_prune_signs_ties_nan(dtype, zeta):
    """Removal on values with exact ties at both thresholds, zeros of either sign and
    NaN (in neither sign's share, never removed), against the reference."""
    rng = np.random.default_rng(int(zeta * 10))
    data = rng.integers(-3, 4, 2000).astype(dtype)
    data[rng.random(2000) < 0.1] = -0.0
    data[rng.random(2000) < 0.05] = np.nan
    keep, k, t = _set_prune(data, zeta)
    removed = reference_removed(data, zeta)
    assert k == removed.size and np.array_equal(np.flatnonzero(~keep), removed)
    assert not np.isnan(data[~keep]).any()
    assert t == (np.abs(data[removed]).max() if removed.size else 0.0)


def test_prune_and_regrow_ties_by_position():
    # All weights equal: the first k positions (row-major) are the ones removed.
    W = random_layer(20, 10, 0.5, np.random.default_rng(0))
    W.data[:] = 0.5
    v = np.ones(W.nnz, dtype=np.float32)
    W2, v2, removed, _ = check_set_step(W, v, 0.3, seed=1)
    assert np.array_equal(removed, flat_positions(W)[: int(0.3 * W.nnz)])


def test_prune_and_regrow_repeated_epochs_and_schemes():
    W = random_layer(100, 60, 0.1, np.random.default_rng(0))
    v = np.random.default_rng(1).standard_normal(W.nnz).astype(np.float32) + 3.0
    for epoch, scheme in enumerate(["sparse_he", "he", "xavier", "sparse_he"]):
        W, v, _, _ = check_set_step(W, v, 0.3, seed=epoch, scheme=scheme)
        v = v + 1.0  # make every velocity nonzero again, as training would


@pytest.mark.parametrize("density", [1.0, 0.995])
def test_prune_and_regrow_near_full_layer(density):
    W = random_layer(40, 30, density, np.random.default_rng(0))
    v = np.random.default_rng(1).standard_normal(W.nnz).astype(np.float64) + 4.0
    W2, v2, removed, grown = check_set_step(W, v, 0.3, seed=2)
    if density == 1.0:
        # The only empty positions are the pruned ones: they are all regrown.
        assert np.array_equal(np.sort(grown), np.sort(removed))
        assert np.array_equal(flat_positions(W2), np.arange(40 * 30))
    else:
        empty_after_prune = np.union1d(
            np.setdiff1d(np.arange(40 * 30), flat_positions(W)), removed)
        assert np.isin(grown, empty_after_prune).all()


def test_prune_and_regrow_uniform_over_empty_positions():
    # The pruning is deterministic, so every repetition regrows k positions
    # among the same empty set E; each must be hit k / |E| of the time.
    W = quantised_layer(12, 10, 0.5, seed=0, step=1e-3)
    v = np.zeros(W.nnz, dtype=np.float32)
    removed = reference_removed(W.data, 0.3)
    survivors = np.setdiff1d(flat_positions(W), flat_positions(W)[removed])
    empty = np.setdiff1d(np.arange(120), survivors)
    k = removed.size
    reps = 3000
    counts = np.zeros(120)
    rng = np.random.default_rng(9)
    for _ in range(reps):
        W2, _ = prune_and_regrow(W, v, 0.3, rng)
        grown = np.setdiff1d(flat_positions(W2), survivors)
        assert grown.size == k
        counts[grown] += 1
    assert counts[survivors].sum() == 0
    p = k / empty.size
    stat = chi2_per_dof(counts[empty], reps * p) / (1 - p)
    assert abs(stat - 1) < 6 * math.sqrt(2 / (empty.size - 1)), stat


def test_prune_and_regrow_zeta_zero_and_validation():
    W = random_layer(20, 10, 0.3, np.random.default_rng(0))
    v = np.ones(W.nnz, dtype=np.float32)
    W2, v2 = prune_and_regrow(W, v, 0.0, np.random.default_rng(0))
    assert W2 is W and v2 is v
    with pytest.raises(ValueError):
        prune_and_regrow(W, v[:-1], 0.3, np.random.default_rng(0))
    with pytest.raises(ValueError):
        prune_and_regrow(W, v, 1.5, np.random.default_rng(0))
    bad = sp.csr_array((np.array([1.0, 2.0]), np.array([3, 1]), np.array([0, 2])), shape=(1, 5))
    with pytest.raises(ValueError, match="canonical"):
        prune_and_regrow(bad, np.zeros(2), 0.5, np.random.default_rng(0))


# ---------------------------------------------------------------- importance pruning and removal

def test_neuron_importance_and_mask_match_dense():
    W = quantised_layer(50, 40, 0.1, seed=5, step=0.125)  # exact float sums
    D = W.toarray()
    imp = neuron_importance(W)
    assert imp.shape == (40,)
    assert np.array_equal(imp, np.abs(D).sum(axis=0))
    imp_ref = np.abs(D).sum(axis=0)
    for pct in (0, 10, 20, 50, 99):
        ref = imp_ref <= np.percentile(imp_ref, pct)
        if ref.all():  # ties at the top: the first most important neuron is kept
            ref[np.argmax(imp_ref)] = False
        assert np.array_equal(importance_prune_mask(W, pct), ref)
    # Never remove every neuron: the most important one stays.
    mask = importance_prune_mask(W, 100)
    assert mask.sum() == 39 and not mask[np.argmax(imp)]
    flat = sp.csr_array(np.ones((3, 4)))
    assert np.array_equal(importance_prune_mask(flat, 20), [False, True, True, True])


def test_drop_rows_and_columns_match_dense():
    W = quantised_layer(30, 25, 0.2, seed=6)
    D = W.toarray()
    rng = np.random.default_rng(0)
    vel = rng.standard_normal(W.nnz)
    vel_dense = sp.csr_array((vel, W.indices, W.indptr), shape=W.shape).toarray()
    keep_c = rng.random(25) < 0.6
    keep_r = rng.random(30) < 0.6
    for fn, keep, sl in ((drop_columns, keep_c, np.s_[:, keep_c]),
                         (drop_rows, keep_r, np.s_[keep_r, :])):
        W2, kept = fn(W, keep)
        assert_canonical(W2)
        assert W2.shape == D[sl].shape
        assert kept.dtype == np.int64
        assert np.array_equal(W2.data, W.data[kept])
        assert np.array_equal(W2.toarray(), D[sl])
        # Velocity sliced by kept positions stays aligned with the new pattern.
        V2 = sp.csr_array((vel[kept], W2.indices, W2.indptr), shape=W2.shape).toarray()
        assert np.array_equal(V2, vel_dense[sl])
    # Removing everything / nothing.
    W0, k0 = drop_columns(W, np.zeros(25, bool))
    assert W0.shape == (30, 0) and k0.size == 0
    W1, k1 = drop_rows(W, np.ones(30, bool))
    assert np.array_equal(k1, np.arange(W.nnz)) and np.array_equal(W1.toarray(), D)


def test_project_to_pattern_matches_dense():
    rng = np.random.default_rng(2)
    src = random_layer(40, 30, 0.2, rng)
    dst = random_layer(40, 30, 0.2, rng, dtype=np.float64)
    vals = project_to_pattern(src, dst)
    assert vals.dtype == src.dtype and vals.shape == (dst.nnz,)
    rows = np.repeat(np.arange(40), np.diff(dst.indptr))
    assert np.array_equal(vals, src.toarray()[rows, dst.indices])
    assert (vals == 0).any() and (vals != 0).any()
    with pytest.raises(ValueError):
        project_to_pattern(src, random_layer(40, 31, 0.2, rng))


def test_average_union_matches_dense():
    mats = [quantised_layer(30, 20, d, seed=s) for s, d in ((1, 0.1), (2, 0.3), (3, 0.05))]
    A = average_union(mats)
    assert_canonical(A)
    dense_pattern = sum(_pattern(M).astype(int) for M in mats) > 0
    assert np.array_equal(_pattern(A), dense_pattern)
    ref = sum(M.toarray().astype(np.float64) for M in mats) / 3
    np.testing.assert_allclose(A.toarray(), ref, rtol=1e-6, atol=1e-7)
    # Cancelling entries stay in the union as explicit zeros.
    a = sp.csr_array((np.array([1.0]), np.array([1]), np.array([0, 1, 1])), shape=(2, 3))
    b = sp.csr_array((np.array([-1.0, 2.0]), np.array([1, 0]), np.array([0, 1, 2])), shape=(2, 3))
    U = average_union([a, b])
    assert U.nnz == 2 and np.array_equal(U.data, [0.0, 1.0])
    assert average_union([mats[0]]).nnz == mats[0].nnz


def _pattern(W):
    P = np.zeros(W.shape, dtype=bool)
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    P[rows, W.indices] = True
    return P


@pytest.mark.parametrize("nnz", [0, 1, 37, 150, 10**6])
def test_prune_to_nnz_matches_reference(nnz):
    W = quantised_layer(30, 20, 0.3, seed=8)  # many ties in |value|
    W2, kept = prune_to_nnz(W, nnz, return_kept=True)
    assert_canonical(W2)
    n = min(nnz, W.nnz)
    assert W2.nnz == n and W2.shape == W.shape
    order = np.lexsort((np.arange(W.nnz), -np.abs(W.data)))  # largest first, ties by position
    ref = np.sort(order[:n])
    assert np.array_equal(kept, ref)
    assert np.array_equal(W2.data, W.data[ref])
    assert np.array_equal(flat_positions(W2), flat_positions(W)[ref])
    assert prune_to_nnz(W, n).nnz == n


# ---------------------------------------------------------------- scale

def test_large_layer_sample_and_evolve_in_modest_memory():
    # 200k x 200k at epsilon 20: 8e6 connections out of 4e10 positions.  A
    # dense mask alone would need 40 GB; the whole pipeline must stay within
    # a few tens of bytes per connection.
    n = 200_000
    density = erdos_renyi_density(n, n, 20)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        W = random_layer(n, n, density, rng)
        v = np.ones(W.nnz, dtype=np.float32)
        W2, v2 = prune_and_regrow(W, v, 0.3, rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    nnz = round(density * n * n)
    assert W.nnz == nnz == 8_000_000 and W2.nnz == nnz
    assert W.indices.dtype == np.int32
    assert peak < 48 * nnz, f"peak {peak / nnz:.1f} bytes per connection"
    assert_canonical(W2)
    assert (v2 == 0).sum() == int(0.3 * (W.data >= 0).sum()) + int(0.3 * (W.data < 0).sum())
    rows = np.diff(W2.indptr)
    assert abs(rows.mean() - nnz / n) < 1e-9 and rows.std() < 2 * math.sqrt(nnz / n)

"""Numba kernels against dense numpy references."""
import os

import numpy as np
import pytest
import reference as R
import scipy.sparse as sp

from sksparse_mlp import _kernels as K
from sksparse_mlp import _panels as P
from sksparse_mlp import _scatter as SC
from sksparse_mlp import _steps as S


def _sched(width=0, dt=np.float32):
    """The forward kernel's scratch: a scheduling buffer with stale counts it must reset,
    and rows of ``width`` items per thread for the values of its blocks."""
    return np.full(16, 7, np.int64), np.full((4, width), np.nan, dt)


def _scratch(A3, indptr, n_threads=4):
    """The backward kernel's scratch as a workspace sizes it, with stale contents (an
    earlier call's) that the kernel must reset."""
    sched, block_sq, rows = K.kernel_scratch(
        n_threads, A3.shape[2] + K.longest_row(indptr) + K.SCRATCH_STEP_CHUNK, A3.dtype)
    sched[:] = 7
    block_sq[:] = np.nan
    rows[:] = np.nan
    return sched, block_sq, rows

INDEX_DTYPES = [np.int32, np.int64]
FLOAT_DTYPES = [np.float32, np.float64]
# (index dtype, value dtype) pairs the kernels are checked with: each dtype of one with
# the default of the other. An index is loaded and cast to intp whatever the values are
# (numba's indexing; _intrinsics.py's ``index``), and the values' arithmetic and vectors
# do not depend on the index dtype, so int64 with float64 would check no code that these
# pairs leave out, and costs a cold-cache run seconds per parallel kernel specialisation
DTYPE_PAIRS = [(np.int32, np.float32), (np.int32, np.float64), (np.int64, np.float32)]
# (n_in, n_out, density): empty rows / columns, tiny, fully dense, odd sizes
SHAPES = [
    (7, 5, 0.3),
    (33, 17, 0.1),
    (20, 30, 1.0),
    (1, 9, 1.0),
    (9, 1, 0.5),
    (64, 48, 0.05),
    (50, 40, 0.0),
]
BATCHES = [1, 3, 16, 37, 130]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _layer(rng, n_in, n_out, density, idx, dt, empty_row=True, empty_col=True):
    W = sp.random(n_in, n_out, density=density, format="csr", random_state=rng, dtype=np.float64)
    W.data = rng.uniform(-1, 1, W.nnz)
    W = W.tolil()
    if empty_row and n_in > 2:
        W[1, :] = 0
    if empty_col and n_out > 2:
        W[:, 2] = 0
    W = sp.csr_array(W.tocsr())
    W.eliminate_zeros()
    W.sort_indices()
    W.data = W.data.astype(dt)
    return W.indptr.astype(idx), W.indices.astype(idx), W.data, W


def _dense_act(rng, n, B, dt):
    A = rng.standard_normal((n, B)).astype(dt)
    return np.ascontiguousarray(A)


def _cases():
    for idx, dt in DTYPE_PAIRS:
        for shape in SHAPES:
            for B in BATCHES:
                yield idx, dt, shape, B


CASES = list(_cases())
IDS = [f"{np.dtype(i).name}-{np.dtype(d).name}-{s[0]}x{s[1]}@{s[2]}-B{B}" for i, d, s, B in CASES]


@pytest.mark.parametrize("idx,dt,shape,B", CASES, ids=IDS)
def test_forward_dense(idx, dt, shape, B):
    rng = np.random.default_rng(0)
    n_in, n_out, dens = shape
    indptr, indices, data, W = _layer(rng, n_in, n_out, dens, idx, dt)
    bias = rng.standard_normal(n_out).astype(dt)
    At = _dense_act(rng, n_in, B, dt)
    ref = W.toarray().astype(np.float64).T @ At.astype(np.float64) + bias[:, None]
    Zt = np.full((n_out, B), np.nan, dtype=dt)
    R.forward_dense(indptr, indices, data, bias, At, Zt)
    np.testing.assert_allclose(Zt, ref, **_tol(dt))

    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, n_out)
    assert t_indices.dtype == indices.dtype
    WT = sp.csr_array((data[t_perm], t_indices, t_indptr), shape=(n_out, n_in))
    np.testing.assert_array_equal(WT.toarray(), W.toarray().T)


@pytest.mark.parametrize("idx,dt,shape,B", CASES, ids=IDS)
def test_forward_sparse(idx, dt, shape, B):
    rng = np.random.default_rng(1)
    n_in, n_out, dens = shape
    indptr, indices, data, W = _layer(rng, n_in, n_out, dens, idx, dt)
    bias = rng.standard_normal(n_out).astype(dt)
    X = sp.random(B, n_in, density=0.3, format="csr", random_state=rng, dtype=np.float64)
    X.data = X.data.astype(dt)
    if B > 1:
        X = sp.csr_matrix(X.toarray() * (np.arange(B) != 0)[:, None])  # an empty sample
    X.sort_indices()
    ref = (X.toarray().astype(np.float64) @ W.toarray().astype(np.float64)).T + bias[:, None]
    Zt = np.full((n_out, B), np.nan, dtype=dt)
    R.forward_sparse(indptr, indices, data, bias, X.indptr.astype(idx), X.indices.astype(idx),
                     X.data.astype(dt), Zt)
    np.testing.assert_allclose(Zt, ref, **_tol(dt))


@pytest.mark.parametrize("idx,dt,shape,B", CASES, ids=IDS)
def test_backward(idx, dt, shape, B):
    rng = np.random.default_rng(2)
    n_in, n_out, dens = shape
    indptr, indices, data, W = _layer(rng, n_in, n_out, dens, idx, dt)
    Dt = _dense_act(rng, n_out, B, dt)
    ref = W.toarray().astype(np.float64) @ Dt.astype(np.float64)
    Et = np.full((n_in, B), np.nan, dtype=dt)
    R.backward(indptr, indices, data, Dt, Et)
    np.testing.assert_allclose(Et, ref, **_tol(dt))


@pytest.mark.parametrize("idx,dt,shape,B", CASES, ids=IDS)
def test_sddmm_dense(idx, dt, shape, B):
    rng = np.random.default_rng(3)
    n_in, n_out, dens = shape
    indptr, indices, data, W = _layer(rng, n_in, n_out, dens, idx, dt)
    At = _dense_act(rng, n_in, B, dt)
    Dt = _dense_act(rng, n_out, B, dt)
    full = At.astype(np.float64) @ Dt.astype(np.float64).T  # (n_in, n_out)
    rows = np.repeat(np.arange(n_in), np.diff(indptr))
    ref = full[rows, indices]
    grad = np.full(len(indices), np.nan, dtype=dt)
    R.sddmm_dense(indptr, indices, At, Dt, grad)
    np.testing.assert_allclose(grad, ref, **_tol(dt))


@pytest.mark.parametrize("idx,dt,shape,B", CASES, ids=IDS)
def test_sddmm_sparse(idx, dt, shape, B):
    rng = np.random.default_rng(4)
    n_in, n_out, dens = shape
    indptr, indices, data, W = _layer(rng, n_in, n_out, dens, idx, dt)
    X = sp.random(B, n_in, density=0.4, format="csc", random_state=rng, dtype=np.float64)
    X.data = X.data.astype(dt)
    X.sort_indices()
    Dt = _dense_act(rng, n_out, B, dt)
    full = X.toarray().astype(np.float64).T @ Dt.astype(np.float64).T
    rows = np.repeat(np.arange(n_in), np.diff(indptr))
    ref = full[rows, indices]
    grad = np.full(len(indices), np.nan, dtype=dt)
    R.sddmm_sparse(indptr, indices, X.indptr.astype(idx), X.indices.astype(idx), X.data, Dt, grad)
    np.testing.assert_allclose(grad, ref, **_tol(dt))


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("n", [0, 1, 1001])
def test_momentum_step(dt, nesterov, n):
    rng = np.random.default_rng(5)
    data = rng.standard_normal(n).astype(dt)
    vel = rng.standard_normal(n).astype(dt)
    grad = rng.standard_normal(n).astype(dt)
    grad0 = grad.copy()
    lr, mu, l2 = 0.01, 0.9, 2e-4
    g = grad.astype(np.float64) + l2 * data
    v_ref = mu * vel.astype(np.float64) - lr * g
    if nesterov:
        d_ref = data + mu * v_ref - lr * g
    else:
        d_ref = data + v_ref
    S.momentum_step(data, vel, grad, lr, mu, l2, nesterov)
    np.testing.assert_allclose(vel, v_ref, **_tol(dt))
    np.testing.assert_allclose(data, d_ref, **_tol(dt))
    np.testing.assert_array_equal(grad, grad0)
    assert data.dtype == dt and vel.dtype == dt


def test_layer_bigger_than_threads_blocks():
    """A batch spanning several thread blocks and a wide layer (race detection)."""
    rng = np.random.default_rng(7)
    indptr, indices, data, W = _layer(rng, 300, 257, 0.05, np.int32, np.float64)
    bias = rng.standard_normal(257)
    At = _dense_act(rng, 300, 211, np.float64)
    ref = W.toarray().T @ At + bias[:, None]
    for _ in range(3):
        Zt = np.empty((257, 211))
        R.forward_dense(indptr, indices, data, bias, At, Zt)
        np.testing.assert_allclose(Zt, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("idx", INDEX_DTYPES)
@pytest.mark.parametrize("shape,density", [((500, 400), 0.4), ((3, 70000), 0.5), ((70000, 2), 0.6)])
def test_transpose_pattern_blocks(idx, shape, density):
    """Large enough for the parallel block counting sort (>= 65536 connections)."""
    rng = np.random.default_rng(8)
    W = sp.random(*shape, density=density, format="csr", random_state=rng)
    W.data = np.arange(W.nnz, dtype=np.float64)
    W.sort_indices()
    t_indptr, t_indices, t_perm = P.transpose_pattern(W.indptr.astype(idx), W.indices.astype(idx),
                                                      shape[1])
    WT = W.T.tocsr()
    WT.sort_indices()
    np.testing.assert_array_equal(t_indptr, WT.indptr)
    np.testing.assert_array_equal(t_indices, WT.indices)
    np.testing.assert_array_equal(t_perm, WT.data.astype(np.int64))


@pytest.mark.parametrize("shape,density,narrow", [
    ((300, 200), 0.3, True),  # 18,000 connections: uint16
    ((60000, 3), 0.5, False),  # too many connections (the rows would still fit)
    ((70000, 1), 0.1, False),  # too many rows (positions would still fit)
])
def test_narrow_pattern(shape, density, narrow):
    """The view keeps its values, as uint16 exactly when rows and positions fit, and the
    forward pass gives the same bits from it as from the int32 view."""
    rng = np.random.default_rng(3)
    W = sp.random(*shape, density=density, format="csr", random_state=rng, dtype=np.float32)
    W.sort_indices()
    wide = P.transpose_pattern(W.indptr, W.indices, shape[1])
    view = P.narrow_pattern(*wide, shape[0])
    assert P.narrowed(shape[0], W.nnz) == narrow
    assert view[1].dtype == view[2].dtype == (np.uint16 if narrow else W.indices.dtype)
    for a, b in zip(view, wide):
        np.testing.assert_array_equal(a, b)
    A3 = rng.standard_normal((2, shape[0], 16)).astype(np.float32)
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    out = []
    for t_indptr, t_indices, t_perm in (view, wide):
        Z3 = np.empty((2, shape[1], 16), np.float32)
        G3 = np.empty(Z3.shape, np.uint8)
        K.forward_tiled(t_indptr, t_indices, t_perm, W.data, bias, A3, Z3, G3, K.ACT_PIECEWISE,
                        -0.6, 0, 0, 1.0, 2, *_sched())
        out.append((Z3, G3))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("idx,dt", DTYPE_PAIRS)
@pytest.mark.parametrize("TB", [1, 5, 16, 48, 64, 80, 112, 144])
@pytest.mark.parametrize("piecewise", [False, True])
def test_forward_tiled(idx, dt, TB, piecewise):
    """Every split of a panel into register blocks (8, 4, 2, 1 vectors, scalar tail), with the
    ReLU-like activation fused into the register epilogue or not, over 1 to 3 chunks; in
    prediction's form (values gathered into CSC order, no derivative codes) the same bits."""
    rng = np.random.default_rng(TB)
    indptr, indices, data, W = _layer(rng, 37, 29, 0.3, idx, dt)
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, W.shape[1])
    bias = rng.standard_normal(W.shape[1]).astype(dt)
    A3 = rng.standard_normal((2, W.shape[0], TB)).astype(dt)
    Wd = W.toarray()
    for chunks in (1, 2, 3):
        Z3 = np.full((2, W.shape[1], TB), np.nan, dt)
        G3 = np.zeros(Z3.shape, np.uint8)
        act = K.ACT_PIECEWISE if piecewise else K.ACT_NONE
        K.forward_tiled(t_indptr, t_indices, t_perm, data, bias, A3, Z3, G3, act, -0.6, 0, 0,
                        1.0, chunks, *_sched(0, dt))
        # each block's values gathered first, where they fit (all, some, none): same bits
        for width in (W.nnz, W.nnz // 4, 1):
            Zg, Gg = np.full(Z3.shape, np.nan, dt), np.zeros(Z3.shape, np.uint8)
            K.forward_tiled(t_indptr, t_indices, t_perm, data, bias, A3, Zg, Gg, act, -0.6, 0,
                            0, 1.0, chunks, *_sched(width, dt))
            np.testing.assert_array_equal(Zg, Z3)
            np.testing.assert_array_equal(Gg, G3)
        for t in range(2):
            z = Wd.T @ A3[t] + bias[:, None]
            if piecewise:
                np.testing.assert_array_equal(G3[t], np.where(z > 0, 3, 2))
                z = np.where(z > 0, z, -0.6 * z)
            np.testing.assert_allclose(Z3[t], z, **_tol(dt))
        Zp = np.full(Z3.shape, np.nan, dt)
        no_codes = np.zeros((0, 1, 1), np.uint8)
        K.forward_tiled(t_indptr, t_indices, t_perm[:0], data[t_perm], bias, A3, Zp,
                        no_codes if piecewise else G3, act, -0.6, 0, 0, 1.0, chunks,
                        *_sched(0, dt))
        np.testing.assert_array_equal(Zp, Z3)


@pytest.mark.parametrize("idx,dt", [(np.int32, np.float32), (np.int32, np.float64)])
@pytest.mark.parametrize("TB", [5, 16, 48, 80, 128, 144])
@pytest.mark.parametrize("n_out", [1, 5, 6])
def test_forward_tiled_dense_column_pairs(idx, dt, TB, n_out):
    """A dense layer without activation sweeps two columns at once where its values are
    in order (gathered per block, or in CSC order): the bits of one column at a time
    (through the permutation), and the dense product up to rounding."""
    rng = np.random.default_rng(TB + n_out)
    indptr, indices, data, W = _layer(rng, 37, n_out, 1.0, idx, dt, False, False)
    assert W.nnz == 37 * n_out
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, n_out)
    bias = rng.standard_normal(n_out).astype(dt)
    A3 = rng.standard_normal((2, 37, TB)).astype(dt)
    G3 = np.zeros((0, 1, 1), np.uint8)
    for chunks in (1, 2, 3):
        out = []
        for perm, values, width in ((t_perm, data, 0), (t_perm, data, W.nnz),
                                    (t_perm[:0], data[t_perm], 0)):
            Z3 = np.full((2, n_out, TB), np.nan, dt)
            K.forward_tiled(t_indptr, t_indices, perm, values, bias, A3, Z3, G3, K.ACT_NONE,
                            0.0, 0, 0, 1.0, chunks, *_sched(width, dt))
            out.append(Z3)
        for Z3 in out[1:]:
            np.testing.assert_array_equal(Z3, out[0])
        for t in range(2):
            np.testing.assert_allclose(out[0][t], W.toarray().T @ A3[t] + bias[:, None],
                                       **_tol(dt))


@pytest.mark.parametrize("n_in", [9000, 600])
def test_gathers_from_large_panels_prefetch(n_in):
    """Panels larger than the caches take the loops that prefetch the rows of the
    connections ahead (larger than L1: through the permutation, beside the values):
    the same bits as the loops without (forward), the reference's gradients, deltas
    and momentum step (backward)."""
    rng = np.random.default_rng(7)
    dt = np.float64
    indptr, indices, data, W = _layer(rng, n_in, 40, 0.02, np.int32, dt)
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, 40)
    A3 = rng.standard_normal((1, n_in, 64)).astype(dt)
    assert (K._prefetch_ahead(A3) > 0) == (n_in == 9000)
    assert K._prefetch_ahead(A3, K.PREFETCH_ROWS_BYTES) > 0
    assert K._prefetch_ahead(A3[:, :60], K.PREFETCH_ROWS_BYTES) == 0
    bias = rng.standard_normal(40).astype(dt)
    out = []
    # through perm, gathered per block first, in CSC order
    for perm, values, width in ((t_perm, data, 0), (t_perm, data, W.nnz),
                                (t_perm[:0], data[t_perm], 0)):
        Z3 = np.full((1, 40, 64), np.nan, dt)
        G3 = np.zeros(Z3.shape, np.uint8)
        K.forward_tiled(t_indptr, t_indices, perm, values, bias, A3, Z3, G3, K.ACT_PIECEWISE,
                        -0.6, 0, 0, 1.0, 2, *_sched(width, dt))
        out.append((Z3, G3))
    for Z3, G3 in out[1:]:
        np.testing.assert_array_equal(Z3, out[0][0])
        np.testing.assert_array_equal(G3, out[0][1])
    z = W.toarray().T @ A3[0] + bias[:, None]
    np.testing.assert_allclose(out[2][0][0], np.where(z > 0, z, -0.6 * z), **_tol(dt))
    if n_in != 9000:
        return
    # backward: the delta rows gathered from a large panel of the layer above
    indptr, indices, data, W = _layer(rng, 40, 9000, 0.02, np.int32, dt)
    A3 = rng.standard_normal((1, 40, 64)).astype(dt)
    D3 = rng.standard_normal((1, 9000, 64)).astype(dt)
    G3 = rng.integers(0, 4, size=A3.shape).astype(np.uint8)
    assert K._prefetch_ahead(D3) > 0
    grad_ref, delta_ref = _backward_reference(W, A3, D3, G3, -0.6)
    A = A3.copy()
    gbuf = np.full((1, W.nnz), np.nan, dt)
    bsum = np.full((1, 40), np.nan, dt)
    vel = np.zeros_like(data)
    K.backward_tiled(indptr, indices, data, A, D3, G3, gbuf, K.GRAD_WRITE, True,
                     K.ACT_PIECEWISE, -0.6, 1.0, bsum, vel, 0.1, 0.9, 0.0, False, 2, vel, 0.0,
                     0.0, *_scratch(A, indptr))
    np.testing.assert_allclose(gbuf[0], grad_ref, **_tol(dt))
    np.testing.assert_allclose(A[0], delta_ref, **_tol(dt))
    d, v = data.copy(), rng.standard_normal(W.nnz).astype(dt)
    d_ref, v_ref = d.copy(), v.copy()
    S.momentum_step(d_ref, v_ref, grad_ref, 0.1, 0.9, 0.01, True)
    K.backward_tiled(indptr, indices, d, A3.copy(), D3, G3, gbuf, K.GRAD_STEP, True,
                     K.ACT_PIECEWISE, -0.6, 1.0, bsum, v, 0.1, 0.9, 0.01, True, 2, v, 0.0, 0.0,
                     *_scratch(A3, indptr))
    np.testing.assert_allclose(d, d_ref, **_tol(dt))
    np.testing.assert_allclose(v, v_ref, **_tol(dt))


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("B,nt,TB", [(128, 2, 64), (100, 2, 64), (37, 3, 16), (5, 1, 24),
                                     (1, 1, 16)])
def test_gather_input_tiled(dt, B, nt, TB):
    # whole groups of 16 samples, a batch ending inside a group, padded panels and a
    # panel width that is not a multiple of the group (only direct callers have those)
    rng = np.random.default_rng(B + TB)
    X = rng.standard_normal((300, 45)).astype(dt)
    idx = rng.permutation(300)[:B]
    A3 = np.full((nt, 45, TB), np.nan, dt)
    P.gather_input_tiled(X, idx, B, A3)
    expected = np.zeros((nt * TB, 45), dt)
    expected[:B] = X[idx]
    np.testing.assert_array_equal(A3.transpose(0, 2, 1).reshape(nt * TB, 45), expected)


def test_forward_tiled_needs_codes():
    """Activations other than the fused ReLU-like one write codes: no buffer, an error;
    a code buffer must match the output."""
    rng = np.random.default_rng(1)
    indptr, indices, data, W = _layer(rng, 9, 7, 0.5, np.int32, np.float32)
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, 7)
    A3 = rng.standard_normal((1, 9, 16)).astype(np.float32)
    Z3 = np.empty((1, 7, 16), np.float32)
    with pytest.raises(ValueError, match="code buffer"):
        K.forward_tiled(t_indptr, t_indices, t_perm, data, np.zeros(7, np.float32), A3, Z3,
                        np.zeros((0, 1, 1), np.uint8), K.ACT_TANH, 0.0, 0, 0, 1.0, 1, *_sched())
    # a buffer of the wrong shape is refused before anything is written through it
    for act in (K.ACT_PIECEWISE, K.ACT_TANH):
        with pytest.raises(ValueError, match="does not match"):
            K.forward_tiled(t_indptr, t_indices, t_perm, data, np.zeros(7, np.float32), A3,
                            Z3, np.zeros((1, 1, 1), np.uint8), act, 0.0, 0, 0, 1.0, 1, *_sched())


def _backward_case(rng, idx, dt, nt, TB, n_in=37, n_out=29):
    indptr, indices, data, W = _layer(rng, n_in, n_out, 0.3, idx, dt)
    A3 = rng.standard_normal((nt, n_in, TB)).astype(dt)
    D3 = rng.standard_normal((nt, n_out, TB)).astype(dt)
    G3 = rng.integers(0, 4, size=A3.shape).astype(np.uint8)
    return indptr, indices, data, W, A3, D3, G3


def _backward_reference(W, A3, D3, G3, s):
    """Gradient at the connections, deltas and bias sums of the layer below, in float64."""
    Wd = W.toarray().astype(np.float64)
    rows, cols = W.nonzero()
    A = np.concatenate(list(A3), axis=1).astype(np.float64)
    D = np.concatenate(list(D3), axis=1).astype(np.float64)
    G = np.concatenate(list(G3), axis=1)
    grad = (A[rows] * D[cols]).sum(axis=1)
    order = np.lexsort((cols, rows))  # CSR order of the connections
    deriv = np.where(G >= 2, np.where(G & 1, 1.0, s), 0.0)
    delta = (Wd @ D) * deriv
    return grad[np.argsort(order)], delta


@pytest.mark.parametrize("idx,dt", DTYPE_PAIRS)
@pytest.mark.parametrize("TB", [5, 16, 48, 64, 80, 128, 144])
@pytest.mark.parametrize("nt", [1, 2, 3])
def test_backward_tiled(idx, dt, TB, nt):
    """The fused backward kernel against a dense reference, in every mode: gradients
    written, added (micro-batches) and applied as a momentum step (heavy ball and
    Nesterov), over one or several panels, every register-block split and 1-3 chunks."""
    rng = np.random.default_rng(100 * nt + TB)
    indptr, indices, data, W, A3, D3, G3 = _backward_case(rng, idx, dt, nt, TB)
    s = -0.6
    grad_ref, delta_ref = _backward_reference(W, A3, D3, G3, s)
    tol = _tol(dt)
    for chunks in (1, 2, 3):
        # GRAD_WRITE: gradient stored, deltas replace the activations, bias sums per panel
        A = A3.copy()
        gbuf = np.full((1, W.nnz), np.nan, dt)
        bsum = np.full((nt, W.shape[0]), np.nan, dt)
        vel = np.zeros_like(data)
        sq = K.backward_tiled(indptr, indices, data, A, D3, G3, gbuf, K.GRAD_WRITE, True,
                              K.ACT_PIECEWISE, s, 1.0, bsum, vel, 0.1, 0.9, 0.0, False, chunks,
                              vel, 0.0, 0.0, *_scratch(A, indptr))
        assert sq == 0.0
        np.testing.assert_allclose(gbuf[0], grad_ref, **tol)
        np.testing.assert_allclose(np.concatenate(list(A), axis=1), delta_ref, **tol)
        np.testing.assert_allclose(bsum.sum(axis=0), delta_ref.sum(axis=1), **tol)
        # GRAD_ADD: added to what is there (micro-batches), bias sums too
        A = A3.copy()
        before = gbuf.copy()
        K.backward_tiled(indptr, indices, data, A, D3, G3, gbuf, K.GRAD_ADD, False,
                         K.ACT_PIECEWISE, s, 1.0, bsum, vel, 0.1, 0.9, 0.0, False, chunks,
                         vel, 0.0, 0.0, *_scratch(A, indptr))
        np.testing.assert_allclose(gbuf[0], before[0] + grad_ref, **tol)
        np.testing.assert_array_equal(A, A3)  # no delta asked for: activations untouched
        # GRAD_STEP: the momentum step of momentum_step, applied with the old weights
        for nesterov in (False, True):
            d = data.copy()
            v = rng.standard_normal(W.nnz).astype(dt)
            d_ref, v_ref = d.copy(), v.copy()
            S.momentum_step(d_ref, v_ref, grad_ref.astype(dt), 0.1, 0.9, 0.01, nesterov)
            A = A3.copy()
            sq = K.backward_tiled(indptr, indices, d, A, D3, G3, gbuf, K.GRAD_STEP, True,
                                  K.ACT_PIECEWISE, s, 1.0, bsum, v, 0.1, 0.9, 0.01, nesterov,
                                  chunks, v, 0.0, 0.0, *_scratch(A, indptr))
            np.testing.assert_allclose(d, d_ref, **tol)
            np.testing.assert_allclose(v, v_ref, **tol)
            np.testing.assert_allclose(sq, float((data.astype(np.float64) ** 2).sum()),
                                       rtol=1e-5)
            np.testing.assert_allclose(np.concatenate(list(A), axis=1), delta_ref, **tol)
        # GRAD_ADAM: scikit-learn's Adam step (tests/reference.py), from the whole gradient,
        # with the old weights in the deltas
        for t in (1, 7):
            d = data.copy()
            m = rng.standard_normal(W.nnz).astype(dt)
            v2 = rng.random(W.nnz).astype(dt)
            d_ref, m_ref, v_ref = (a.astype(np.float64) for a in (d, m, v2))
            R.adam_step(d_ref, m_ref, v_ref, grad_ref, 0.01, 0.9, 0.999, 0.01, 1e-8, t)
            A = A3.copy()
            sq = K.backward_tiled(indptr, indices, d, A, D3, G3, gbuf, K.GRAD_ADAM, True,
                                  K.ACT_PIECEWISE, s, 1.0, bsum, m,
                                  S.adam_rate(0.01, 0.9, 0.999, t), 0.9, 0.01, False, chunks,
                                  v2, 0.999, 1e-8, *_scratch(A, indptr))
            np.testing.assert_allclose(m, m_ref, **tol)
            np.testing.assert_allclose(v2, v_ref, **tol)
            np.testing.assert_allclose(d, d_ref, **tol)
            np.testing.assert_allclose(sq, float((data.astype(np.float64) ** 2).sum()),
                                       rtol=1e-5)
            np.testing.assert_allclose(np.concatenate(list(A), axis=1), delta_ref, **tol)


@pytest.mark.parametrize("chunks", [1, 2])
def test_backward_step_in_chunks(chunks):
    """Over several panels the rows step together, :data:`~sksparse_mlp._kernels.STEP_CHUNK`
    connections at a time: with blocks of several chunks each (600 x 400 at 30 %), the
    momentum and Adam steps still equal the reference's, and the L2 sum covers them all."""
    rng = np.random.default_rng(11)
    dt = np.float32
    indptr, indices, data, W, A3, D3, G3 = _backward_case(rng, np.int32, dt, 2, 64, 600, 400)
    assert W.nnz // (8 * chunks) > 2 * K.SCRATCH_STEP_CHUNK  # several chunks per block
    s = -0.6
    grad_ref, delta_ref = _backward_reference(W, A3, D3, G3, s)
    tol = _tol(dt)
    gbuf = np.full((1, W.nnz), np.nan, dt)
    bsum = np.full((2, W.shape[0]), np.nan, dt)
    old_sq = float((data.astype(np.float64) ** 2).sum())
    d, v = data.copy(), rng.standard_normal(W.nnz).astype(dt)
    d_ref, v_ref = d.copy(), v.copy()
    S.momentum_step(d_ref, v_ref, grad_ref.astype(dt), 0.1, 0.9, 0.01, False)
    A = A3.copy()
    sq = K.backward_tiled(indptr, indices, d, A, D3, G3, gbuf, K.GRAD_STEP, True,
                          K.ACT_PIECEWISE, s, 1.0, bsum, v, 0.1, 0.9, 0.01, False, chunks, v,
                          0.0, 0.0, *_scratch(A, indptr))
    np.testing.assert_allclose(d, d_ref, **tol)
    np.testing.assert_allclose(v, v_ref, **tol)
    np.testing.assert_allclose(sq, old_sq, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(list(A), axis=1), delta_ref, **tol)
    d, m, v2 = data.copy(), rng.standard_normal(W.nnz).astype(dt), rng.random(W.nnz).astype(dt)
    d_ref, m_ref, v_ref = (a.astype(np.float64) for a in (d, m, v2))
    R.adam_step(d_ref, m_ref, v_ref, grad_ref, 0.01, 0.9, 0.999, 0.01, 1e-8, 3)
    sq = K.backward_tiled(indptr, indices, d, A3.copy(), D3, G3, gbuf, K.GRAD_ADAM, True,
                          K.ACT_PIECEWISE, s, 1.0, bsum, m, S.adam_rate(0.01, 0.9, 0.999, 3),
                          0.9, 0.01, False, chunks, v2, 0.999, 1e-8, *_scratch(A3, indptr))
    for got, want in ((d, d_ref), (m, m_ref), (v2, v_ref)):
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(sq, old_sq, rtol=1e-5)


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [0, 1, 1001])
def test_adam_steps(dt, n):
    """adam_step, apply_adam_step (partial gradients) and bias_adam_step against the
    plain numpy Adam of tests/reference.py, over a few steps."""
    rng = np.random.default_rng(6)
    data = rng.standard_normal(n).astype(dt)
    m, v = np.zeros(n, dt), np.zeros(n, dt)
    ref = [data.astype(np.float64), np.zeros(n), np.zeros(n)]
    ref_b = [data.astype(np.float64), np.zeros(n), np.zeros(n)]
    d2, m2, v2 = data.copy(), m.copy(), v.copy()
    b, bm, bv = data.copy(), m.copy(), v.copy()
    lr, b1, b2, l2, eps = 0.01, 0.8, 0.99, 2e-4, 1e-7
    for t in (1, 2, 3):
        parts = rng.standard_normal((3, n)).astype(dt)
        grad = parts.sum(axis=0)
        lr_t = S.adam_rate(lr, b1, b2, t)
        R.adam_step(*ref, grad, lr, b1, b2, l2, eps, t)
        R.adam_step(*ref_b, grad, lr, b1, b2, 0.0, eps, t)
        S.adam_step(data, m, v, grad, lr_t, b1, b2, l2, eps)
        sq = S.apply_adam_step(d2, m2, v2, parts, 3, lr_t, b1, b2, l2, eps)
        np.testing.assert_allclose(sq, float((b.astype(np.float64) ** 2).sum()), rtol=1e-5)
        S.bias_adam_step(b, bm, bv, parts, 3, lr_t, b1, b2, eps)  # no L2 on a bias
        for out in (data, d2):
            np.testing.assert_allclose(out, ref[0], **_tol(dt))
        np.testing.assert_allclose(m, ref[1], **_tol(dt))
        np.testing.assert_allclose(v2, ref[2], **_tol(dt))
        np.testing.assert_allclose(b, ref_b[0], **_tol(dt))
        np.testing.assert_allclose(bv, ref_b[2], **_tol(dt))
        assert data.dtype == m.dtype == v.dtype == dt


@pytest.mark.parametrize("user", [{}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "7"}])
def test_openmp_wait_policy(user, subprocess_env):
    """OpenMP threads spin for a bounded time (GOMP_SPINCOUNT=20000) unless the user
    chose a wait policy or spin count, which the package then leaves as it is (also for
    the MPI helper process)."""
    import subprocess
    import sys

    env = {k: v for k, v in subprocess_env.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user)
    # and the MPI helper process (the parameter server, beside the workers) sleeps at once
    code = ("import os, sksparse_mlp._kernels; from sksparse_mlp.parallel import _caller; "
            "h = _caller.helper_env(); print(os.environ.get('OMP_WAIT_POLICY'), "
            "os.environ.get('GOMP_SPINCOUNT'), h.get('OMP_WAIT_POLICY'), h.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    expected = {(): ["None", "20000", "PASSIVE", "None"],
                ("OMP_WAIT_POLICY",): ["PASSIVE", "None", "PASSIVE", "None"],
                ("GOMP_SPINCOUNT",): ["None", "7", "None", "7"]}[tuple(user)]
    assert out == expected


def test_kernels_with_avx2_vectors(subprocess_env, tmp_path):
    """The forward and backward kernels compiled for an AVX2 CPU (32-byte vectors, as
    on Zen 3) pass their tests too, whatever CPU runs the suite: on an AVX-512 host the
    rest of the suite checks only the 64-byte vectors (``_intrinsics._vector_bytes``).
    The int32 indices only: an index's width changes no vector code."""
    import subprocess
    import sys

    env = dict(subprocess_env, NUMBA_CPU_NAME="x86-64-v3", NUMBA_NUM_THREADS="2",
               NUMBA_CACHE_DIR=str(tmp_path))
    code = ("import sys, pytest; from sksparse_mlp import _intrinsics as I; "
            "assert I.VEC_BYTES == 32, I.VEC_BYTES; sys.exit(pytest.main(["
            f"{__file__!r}, '-q', '-p', 'no:cacheprovider', "
            "'-k', '(test_forward_tiled or test_backward_tiled) and int32']))")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(__file__))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_warm_cache_calls_match_the_kernels(monkeypatch):
    """``warm_cache.py`` hides its failures from the suite (a variant it misses is compiled
    by the test that needs it), so its kernel calls are checked here against the kernels'
    signatures, without compiling: a stale call warms nothing and slows every cold run."""
    import inspect

    import warm_cache

    called = []
    for mod, name in [(K, "forward_tiled"), (K, "backward_tiled"), (SC, "forward_csr_tiled"),
                      (S, "apply_adam_step")]:
        kernel = getattr(mod, name)

        def bind(*args, _kernel=kernel, _name=name):
            inspect.signature(_kernel.py_func).bind(*args)  # TypeError if the call is stale
            called.append(_name)

        monkeypatch.setattr(mod, name, bind)
    warm_cache._int64_kernels()
    warm_cache._other_kernels()
    assert set(called) == {"forward_tiled", "backward_tiled", "forward_csr_tiled",
                           "apply_adam_step"}


def test_kernels_reject_small_scratch():
    """Scratch too small for the thread count or the rows is an error, not a write past it
    (the kernels run without bounds checks)."""
    rng = np.random.default_rng(5)
    indptr, indices, data, W, A3, D3, G3 = _backward_case(rng, np.int32, np.float32, 1, 16)
    gbuf = np.zeros((1, W.nnz), np.float32)
    bsum = np.zeros((1, W.shape[0]), np.float32)
    v = np.zeros_like(data)
    args = (indptr, indices, data, A3.copy(), D3, G3, gbuf, K.GRAD_STEP, True, K.ACT_PIECEWISE,
            -0.6, 1.0, bsum, v, 0.1, 0.9, 0.0, False, 2, v, 0.0, 0.0)
    sched, block_sq, rows = _scratch(A3, indptr, n_threads=2)
    K.backward_tiled(*args, sched, block_sq, rows)  # the right size
    for small in ((sched[:2], block_sq, rows), (sched, block_sq[:3], rows),
                  (sched, block_sq, rows[:1]), (sched, block_sq, np.zeros((2, 16), np.float32))):
        with pytest.raises(ValueError, match="scratch"):
            K.backward_tiled(*args, *small)
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, W.shape[1])
    Z3 = np.zeros((1, W.shape[1], 16), np.float32)
    fwd = (t_indptr, t_indices, t_perm, data, np.zeros(W.shape[1], np.float32), A3, Z3,
           np.zeros(Z3.shape, np.uint8), K.ACT_PIECEWISE, -0.6, 0, 0, 1.0, 2)
    K.forward_tiled(*fwd, np.zeros(2, np.int64), np.zeros((2, 8), np.float32))
    for small in ((np.zeros(1, np.int64), np.zeros((2, 0), np.float32)),
                  (np.zeros(2, np.int64), np.zeros((1, 8), np.float32))):
        with pytest.raises(ValueError, match="scratch buffers"):
            K.forward_tiled(*fwd, *small)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("out_act", ["softmax", "logistic", "exp", "identity"])
def test_output_rows(dt, out_act):
    """Prediction's output activation: numpy's formula up to rounding, finite for huge
    pre-activations, and the training kernel's outputs up to rounding (the same code,
    compiled over contiguous rows there and strided panels in training)."""
    from reference import output_forward

    from sksparse_mlp import _fastpath as F
    from sksparse_mlp import _loss

    rng = np.random.default_rng(11)
    Z = rng.standard_normal((37, 5)).astype(dt) * 3
    if out_act != "exp":
        Z[0] = [800, -800, 0, 1, -1]  # exp() of these overflows
    code = F._OUT[out_act]
    got = Z.copy()
    _loss.output_rows(got, code)
    with np.errstate(over="ignore"):
        want = output_forward(out_act, Z.T.copy()).T
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-6 if dt == np.float32 else 1e-13, atol=0)
    # training's kernel on the same outputs, as one panel of 48 (37 samples, padding)
    Z3 = np.zeros((1, 5, 48), dt)
    Z3[0, :, :37] = Z.T
    Y = np.zeros((37, 5), dt)
    _loss.output_loss_delta(Z3, Y, np.full(37, 1 / 37, dt), 37, code, _loss.LOSS_SQUARED,
                            1e-7, np.empty_like(Z3), np.zeros((1, 5), dt), False)
    np.testing.assert_allclose(Z3[0, :, :37].T, got, rtol=1e-6 if dt == np.float32 else 1e-13,
                               atol=0)


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (300, 400)])  # numpy's path and the kernel's
def test_has_non_finite(dt, shape):
    """The input check finds a NaN or an infinity anywhere, in C or Fortran order, and
    passes finite values whose sum overflows."""
    X = np.random.default_rng(3).standard_normal(shape).astype(dt)
    assert not P.has_non_finite(X) and not P.has_non_finite(np.asfortranarray(X))
    assert not P.has_non_finite(np.full(shape, np.finfo(dt).max, dt))
    for bad in (np.nan, np.inf, -np.inf):
        for at in ((0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, 1)):
            Y = X.copy()
            Y[at] = bad
            assert P.has_non_finite(Y) and P.has_non_finite(np.asfortranarray(Y))

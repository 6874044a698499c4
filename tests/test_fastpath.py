"""The engine (training and prediction) against the reference of tests/reference.py."""
import copy
import itertools
import types

import numpy as np
import pytest
import scipy.sparse as sp
from reference import predict_output as reference_predict
from reference import run_epoch

from sksparse_mlp import _fastpath as F
from sksparse_mlp import _kernels as K
from sksparse_mlp import _panels as P
from sksparse_mlp import _workspace as WS
from sksparse_mlp import config
from sksparse_mlp._network import SparseMLP, TrainingConfig
from sksparse_mlp._optimizers import Adam, MomentumSGD


def _net(act, out, loss, dtype, n_out, sizes=(13, 40, 30, 20), seed=0):
    rng = np.random.default_rng(seed)
    dens = [0.3, 0.2, 0.5, 1.0][: len(sizes)]
    net = SparseMLP.random(list(sizes) + [n_out], dens, rng, activation=act, slope=0.6,
                           out_activation=out, loss=loss, dtype=dtype)
    for layer in net.layers:
        layer.bias[:] = rng.standard_normal(layer.n_out) * 0.1
    return net


def _assert_same_bits(trained):
    """``[(net, losses), ...]`` trained from the same start: the losses changed between
    epochs and every run has the first one's losses, weights, biases and velocities."""
    (a, la), *others = trained
    assert la[1] != la[0]
    for b, lb in others:
        assert lb == la
        for x, z in zip(a.layers, b.layers):
            np.testing.assert_array_equal(x.W.data, z.W.data)
            np.testing.assert_array_equal(x.bias, z.bias)
            np.testing.assert_array_equal(x.velocity, z.velocity)


def _data(out, dtype, n, n_out, sparse, rng):
    X = rng.standard_normal((n, 13)).astype(dtype)
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0
        X = sp.csr_matrix(X)
    if out == "softmax":
        Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, n)]
    elif out == "logistic":
        Y = (rng.random((n, n_out)) < 0.5).astype(dtype)
    elif out == "exp":  # Poisson counts
        Y = rng.poisson(1.5, (n, n_out)).astype(dtype)
    else:
        Y = rng.standard_normal((n, n_out)).astype(dtype)
    return X, Y


CASES = [
    dict(),
    dict(dtype=np.float32),
    dict(act="relu"),
    dict(act="leaky_relu"),
    dict(act="tanh"),
    dict(act="logistic"),
    dict(act="identity"),
    dict(out="logistic", loss="binary_log_loss", n_out=1),
    dict(out="logistic", loss="binary_log_loss", n_out=4),
    dict(out="identity", loss="squared_error", lr=0.002),
    dict(sparse=True),  # densified batches
    dict(sparse=True, sparse_kernels=True),  # the sparse-input kernels
    dict(sample_weight=True),
    dict(budget=3000),
    dict(budget=3000, sparse=True),
    dict(budget=3000, sparse=True, sparse_kernels=True),
    dict(budget=3000, sample_weight=True, dtype=np.float32),
    dict(nesterov=False),
    dict(solver="adam"),  # the Adam step mode of the fused backward, and its bias step
    dict(solver="adam", dtype=np.float32),
    dict(solver="adam", budget=3000),  # micro-batches: apply_adam_step
    dict(solver="adam", sparse=True, sparse_kernels=True),
    dict(out="exp", loss="poisson", lr=0.002),
    dict(lean=True, batch_size=32),  # no room for the CSC views: the forward pass scatters
    dict(lean=True, batch_size=32, sparse=True, sparse_kernels=True, nesterov=False),
    dict(batch_size=1, n=20, lr=0.002),
    dict(batch_size=200),
    dict(batch_size=37, n=300, sizes=(13, 300, 20)),
]


def _squeeze_memory(monkeypatch, net, batch, samples):
    """Make the engine see room for the CSC views, the gradients of every layer and the
    activations of ``samples`` samples only (every view counted: none cached)."""
    monkeypatch.setattr(WS, "_PREDICT_CACHE_MAX_NNZ", 0)
    monkeypatch.setattr(WS, "AVAILABLE_FRACTION", 1.0)
    p = WS.Workspace(net, batch, available=np.inf).plan
    room = p["reserved"] + p["views"] + samples * p["per_sample"]
    monkeypatch.setattr(WS, "available_memory", lambda: room)
    return p


@pytest.fixture(params=[None, 1, 3], ids=["panels=auto", "panels=1", "panels=3"])
def panels(request, monkeypatch):
    """Number of batch panels: 1 is the fused-step path, more use gradient buffers."""
    monkeypatch.setattr(WS, "PANELS", request.param)
    return request.param


@pytest.mark.parametrize("case", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "default"
                                             for c in CASES])
def test_epoch_matches_reference(case, panels, monkeypatch):
    if case.get("sparse_kernels"):
        monkeypatch.setattr(config, "DENSE_INPUT_BATCH_BYTES", 0)
    act = case.get("act", "allrelu")
    out = case.get("out", "softmax")
    loss = case.get("loss", "log_loss")
    dtype = case.get("dtype", np.float64)
    n_out = case.get("n_out", 3)
    n = case.get("n", 101)
    rng = np.random.default_rng(1)
    X, Y = _data(out, dtype, n, n_out, case.get("sparse", False), rng)
    sw = rng.random(n) if case.get("sample_weight") else None
    if sw is not None:
        sw[:20] = 0  # include batches with (partly) zero weights
    a = _net(act, out, loss, dtype, n_out, case.get("sizes", (13, 40, 30, 20)))
    b = a.copy()
    bs = case.get("batch_size", 16)
    if case.get("lean"):
        _squeeze_memory(monkeypatch, b, bs, 4)
        ws = WS.Workspace(b, bs)
        assert ws.lean and 4 < ws.micro < bs
    if case.get("solver") == "adam":
        oa = Adam(case.get("lr", 0.01), beta_1=0.8, beta_2=0.99, eps=1e-6)
    else:
        oa = MomentumSGD(case.get("lr", 0.05), momentum=0.9, nesterov=case.get("nesterov", True))
    ob = copy.copy(oa)
    cfg = TrainingConfig(alpha=1e-3)
    ra, rb = np.random.default_rng(5), np.random.default_rng(5)
    kw = {} if "budget" not in case else dict(activation_budget=case["budget"])
    for _ in range(2):
        la = run_epoch(a, X, Y, sw, bs, oa, cfg, ra)
        lb = F.run_epoch(b, X, Y, sw, bs, ob, cfg, rb, **kw)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    assert np.isfinite(la)
    assert lb == pytest.approx(la, rel=tol, abs=tol)
    for x, z in zip(a.layers, b.layers):
        np.testing.assert_allclose(z.W.data, x.W.data, rtol=tol, atol=tol)
        np.testing.assert_allclose(z.velocity, x.velocity, rtol=tol, atol=tol)
        np.testing.assert_allclose(z.bias, x.bias, rtol=tol, atol=tol)
        np.testing.assert_allclose(z.bias_velocity, x.bias_velocity, rtol=tol, atol=tol)
        assert (z.second is None) == (x.second is None) == (case.get("solver") != "adam")
        if z.second is not None:
            np.testing.assert_allclose(z.second, x.second, rtol=tol, atol=tol)
            np.testing.assert_allclose(z.bias_second, x.bias_second, rtol=tol, atol=tol)
    if case.get("solver") == "adam":
        assert oa.t == ob.t == 2 * -(-n // bs)
    ref = reference_predict(a, X)
    np.testing.assert_allclose(F.predict_output(b, X), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(F.predict_output(b, X, chunk=7), ref, rtol=tol, atol=tol)
    for rows in (slice(0, 1), slice(3, 20)):  # few rows: the CSR scatter path
        np.testing.assert_allclose(F.predict_output(b, X[rows]), ref[rows], rtol=tol, atol=tol)



def _untile(A3, B):
    nt, n, tb = A3.shape
    return A3.transpose(1, 0, 2).reshape(n, nt * tb)[:, :B]


@pytest.mark.parametrize("act", ["allrelu", "tanh", "logistic"])
@pytest.mark.parametrize("dropout", [0.3, 0.5])
def test_dropout_gradient(act, dropout, panels):
    """One step with dropout equals a dense numpy step using the same masks."""
    rng = np.random.default_rng(3)
    net = _net(act, "softmax", "log_loss", np.float64, 3)
    ref = net.copy()
    B = 23
    X, Y = _data("softmax", np.float64, B, 3, False, rng)
    ws = WS.Workspace(net, B)
    w = np.full(B, 1.0 / B)
    lr = 0.1
    F.train_batch(net, ws, X, Y, np.arange(B), w, lr, 0.0, False, 0.0, dropout, rng)
    nt, tb = ws.nt, (-(-B // ws.nt) + 15) // 16 * 16
    masks = [None] + [(_untile(ws.view(ws.G[l], ws.sizes[l], nt, tb), B) >> 1) & 1
                      for l in range(1, len(ws.sizes) - 1)]
    keep = 1 - dropout
    kept = np.concatenate([m.ravel() for m in masks[1:]]).mean()
    assert abs(kept - keep) < 0.06
    # dense reference with the same masks
    Ws = [layer.W.toarray() for layer in ref.layers]
    bs = [layer.bias.copy() for layer in ref.layers]
    A, Zs, As = X, [], [X]
    for l in range(len(Ws)):
        Z = A @ Ws[l] + bs[l]
        Zs.append(Z)
        if l < len(Ws) - 1:
            if act == "allrelu":
                s = -0.6 if (l + 1) % 2 == 1 else 0.6
                fz, dz = np.where(Z > 0, Z, s * Z), np.where(Z > 0, 1.0, s)
            elif act == "tanh":
                fz = np.tanh(Z)
                dz = 1 - fz ** 2
            else:
                fz = 1 / (1 + np.exp(-Z))
                dz = fz * (1 - fz)
            m = masks[l + 1].T / keep
            A = fz * m
            Zs[-1] = dz * m
        else:
            A = np.exp(Z - Z.max(1, keepdims=True))
            A /= A.sum(1, keepdims=True)
        As.append(A)
    D = (As[-1] - Y) / B
    for l in range(len(Ws) - 1, -1, -1):
        gW = As[l].T @ D
        E = D @ Ws[l].T
        layer = net.layers[l]
        new = layer.W.toarray()
        old = ref.layers[l].W.toarray()
        mask = old != 0
        np.testing.assert_allclose(new[mask], (old - lr * gW)[mask], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.bias, bs[l] - lr * D.sum(0), rtol=1e-9, atol=1e-12)
        if l > 0:
            D = E * Zs[l - 1]


def test_dropout_stream_is_seeded():
    X, Y = _data("softmax", np.float32, 64, 3, False, np.random.default_rng(0))
    nets = []
    for _ in range(2):
        net = _net("allrelu", "softmax", "log_loss", np.float32, 3)
        F.run_epoch(net, X, Y, None, 16, MomentumSGD(0.05), TrainingConfig(dropout=0.3),
                    np.random.default_rng(7))
        nets.append(net)
    for a, b in zip(*[n.layers for n in nets]):
        np.testing.assert_array_equal(a.W.data, b.W.data)


@pytest.mark.parametrize("B,width", [(1, 10), (8, 1000), (9, 1000), (128, 1000), (128, 784),
                                     (128, 100000), (10000, 1000), (75, 3312)])
def test_choose_tiles(B, width):
    nt, tb = WS.choose_tiles(B, width, 4)
    assert nt * tb >= B and tb % 16 == 0 and (nt - 1) * tb < B


@pytest.mark.parametrize("l2,width,itemsize,tb", [
    (512 << 10, 1000, 4, 64),        # Zen 3: a 1000-unit panel of 64 samples fills half the L2
    (1 << 20, 1000, 4, 128),         # Zen 4: 128 samples fit
    (512 << 10, 1000, 8, 32),        # float64 halves the width
    (512 << 10, 3312, 4, 128),       # nothing from 32 up fits: the widest rows
    (512 << 10, 1_000_000, 4, 128),
])
def test_panel_width_follows_the_l2_cache(monkeypatch, l2, width, itemsize, tb):
    monkeypatch.setattr(config, "L2_BYTES", l2)
    assert WS.choose_tiles(128, width, itemsize) == (128 // tb, tb)


@pytest.mark.parametrize("training", [True, False])
def test_workspace_panels_on_cache_lines(training):
    """Every panel of every activation buffer starts on a 64-byte line (the kernels'
    vector loads would otherwise straddle two lines), and so does every code buffer."""
    net = _net("allrelu", "softmax", "log_loss", np.float32, 3)
    for capacity in (1, 37, 128, 300):
        ws = WS.Workspace(net, capacity, training=training)
        for flat, n in zip(ws.A, ws.sizes):
            panels = ws.view(flat, n, ws.nt, ws.tb)
            assert all(p.ctypes.data % 64 == 0 for p in panels), (capacity, n)
        assert all(g.ctypes.data % 64 == 0 for g in ws.G if g is not None and g.size)


@pytest.mark.parametrize("shape", [(60, 40, 0.2), (30, 5, 1.0), (200, 300, 0.05)])
def test_forward_blocks_fit_the_gather_rows(shape):
    """Every block of columns the forward kernel cuts, at 1 to 4 threads (in column
    pairs for a dense layer), fits the scratch row the workspace sizes for gathering
    its values."""
    n_in, n_out, density = shape
    rng = np.random.default_rng(n_out)
    W = sp.random(n_in, n_out, density=density, format="csr", random_state=rng,
                  dtype=np.float32)
    net = types.SimpleNamespace(layers=[types.SimpleNamespace(W=W)])
    width = WS._gather_width(net, [False])
    t_indptr = P.transpose_pattern(W.indptr, W.indices, n_out)[0]
    biggest = 0
    for n_threads, pairs in itertools.product(range(1, 5), (False, density == 1.0)):
        per = max(1, min(n_out // (n_threads * (2 if pairs else 1)), K.BLOCKS_PER_THREAD))
        for blk in range(per * n_threads):
            j0, j1 = K._chunk_bounds(t_indptr, blk, per * n_threads)
            biggest = max(biggest, t_indptr[j1] - t_indptr[j0])
    assert 0 < biggest <= width <= biggest + n_in + 1
    assert WS._gather_width(net, [True]) == 0  # large panels: gathered beforehand


def test_transposed_view_refreshes():
    net = _net("allrelu", "softmax", "log_loss", np.float64, 3)
    T = WS._Transposed()
    W = net.layers[0].W
    first = T.get(W).indices
    assert T.get(W).indices is first
    W2 = W.copy()
    assert T.get(W2).indices is not first
    WT = sp.csr_array((W2.data[T.perm], T.indices, T.indptr), shape=W2.shape[::-1])
    np.testing.assert_array_equal(WT.toarray(), W2.toarray().T)


def _dropout_codes(nt, tb, keep=0.7, seed=12345):
    """Derivative codes of a layer with no connections (bias 1) under dropout."""
    Z3 = np.ones((nt, 50, tb), np.float32)
    G3 = np.empty(Z3.shape, np.uint8)
    data = np.zeros(0, np.float32)
    t_indptr = np.zeros(51, np.int32)
    empty = np.zeros(0, np.int32)
    A3 = np.zeros((nt, 3, tb), np.float32)
    bias = np.ones(50, np.float32)
    K.forward_tiled(t_indptr, empty, empty, data, bias, A3, Z3, G3, K.ACT_PIECEWISE, -0.6,
                    K.dropout_threshold(keep), seed, 1 / keep, 2,
                    np.zeros(2, np.int64), np.zeros((2, 0), np.float32))
    return Z3, G3


def test_hash_dropout_rate():
    Z3, G3 = _dropout_codes(2, 64)
    kept = (G3 >> 1) & 1
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(Z3[kept == 1], 1 / 0.7, rtol=1e-6)
    assert np.all(Z3[kept == 0] == 0)


def test_dropout_mask_does_not_depend_on_panels():
    """The mask of (neuron, sample) is the same however the batch is cut into panels,
    so that machines with other cache sizes (other panel widths) train the same model."""
    masks = []
    for nt, tb in [(1, 128), (2, 64), (4, 32)]:
        _, G3 = _dropout_codes(nt, tb)
        masks.append(np.concatenate(list(G3), axis=1))  # (neurons, samples)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["allrelu", "tanh"])
def test_single_row_prediction_matches_batch(act, dtype):
    """One row alone (serial CSR kernel) adds its terms in the order of a batch (tiled
    kernel through the CSC view): the same bits."""
    rng = np.random.default_rng(11)
    net = _net(act, "softmax", "log_loss", dtype, 3, sizes=(13, 200, 150, 40))
    X = rng.standard_normal((50, 13)).astype(dtype)
    full = F.predict_output(net, X)
    for r in range(0, 50, 7):
        np.testing.assert_array_equal(F.predict_output(net, X[r:r + 1])[0], full[r])


def test_memory_plan_follows_the_available_memory(monkeypatch):
    """Micro-batches shrink with the free memory; the CSC views go only when that
    lets the engine keep larger micro-batches; predictions chunk the same way."""
    net = _net("allrelu", "softmax", "log_loss", np.float32, 3)
    p = _squeeze_memory(monkeypatch, net, 64, 4)
    ample = WS.Workspace(net, 64, available=np.inf)
    assert (ample.micro, ample.lean) == (64, False)
    assert ample.plan["views"] == p["views"] > 0
    with_views = WS.Workspace(net, 64, available=p["reserved"] + p["views"] + 40 * p["per_sample"])
    # panels are multiples of 16 samples, rounded down when memory decides
    assert (with_views.micro, with_views.lean) == (32, False)
    assert with_views.plan["activations"] == 32 * p["per_sample"]
    lean = WS.Workspace(net, 64)  # room for 4 samples beside the views
    extra = p["views"] // p["per_sample"]
    assert lean.lean and lean.micro == 4 + extra and lean.plan["views"] == 0
    # config.CSC_VIEWS overrides the choice both ways
    monkeypatch.setattr(config, "CSC_VIEWS", True)
    assert (WS.Workspace(net, 64).micro, WS.Workspace(net, 64).lean) == (4, False)
    monkeypatch.setattr(config, "CSC_VIEWS", False)
    assert WS.Workspace(net, 64, available=np.inf).lean
    monkeypatch.setattr(config, "CSC_VIEWS", None)
    # the memory plan is said once per network in verbose mode
    X, Y = _data("softmax", np.float32, 64, 3, False, np.random.default_rng(0))
    msgs = []
    # only the plan's lines: numba may print type annotations while compiling afresh
    monkeypatch.setattr("builtins.print", lambda *a, **k: msgs.append(" ".join(map(str, a)))
                        if " ".join(map(str, a)).startswith("memory:") else None)
    for _ in range(2):
        F.run_epoch(net, X, Y, None, 64, MomentumSGD(0.01), TrainingConfig(verbose=True),
                    np.random.default_rng(0))
    assert len(msgs) == 1 and "micro-batches of %d of 64" % lean.micro in msgs[0]
    assert "scatters from the CSR arrays" in msgs[0]
    # prediction: chunks as large as the room allows, the same outputs
    out = F.predict_output(net, X)
    monkeypatch.setattr(WS, "available_memory", lambda: np.inf)
    np.testing.assert_allclose(out, F.predict_output(net, X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_values_in_csc_order_train_the_same_bits(solver, monkeypatch):
    """The forward pass reads each layer's values through the CSC view's permutation,
    or gathered into CSC order before the pass (input panels larger than the caches;
    the threshold is lowered here): the same model to the last bit."""
    monkeypatch.setattr(WS, "PANELS", 3)
    X, Y = _data("softmax", np.float32, 90, 3, False, np.random.default_rng(2))
    cfg = TrainingConfig(alpha=1e-3)
    nets = []
    for way in ("permutation", "gathered"):
        monkeypatch.setattr(K, "PREFETCH_PANEL_BYTES", 0 if way == "gathered" else 4 << 20)
        net = _net("allrelu", "softmax", "log_loss", np.float32, 3)
        opt = Adam(0.01) if solver == "adam" else MomentumSGD(0.05, momentum=0.9)
        assert (WS.Workspace(net, 30).values is not None) == (way != "permutation")
        rng = np.random.default_rng(5)
        losses = [F.run_epoch(net, X, Y, None, 30, opt, cfg, rng) for _ in range(2)]
        nets.append((net, losses))
    _assert_same_bits(nets)


def test_prediction_follows_weights_written_in_place():
    """Views cached between calls hold no weights: weights written in place between
    calls (as a user may through ``coefs_``) are the ones used."""
    net = _net("allrelu", "softmax", "log_loss", np.float64, 3)
    X = np.random.default_rng(3).standard_normal((40, 13))
    before = F.predict_output(net, X)
    for layer in net.layers:
        layer.W.data *= -0.5
    after = F.predict_output(net, X)
    np.testing.assert_allclose(after, reference_predict(net, X), rtol=1e-10, atol=1e-12)
    assert not np.allclose(after, before)


class _Alternating:
    """A thread chooser that switches between one and two threads at every batch."""

    def __init__(self):
        self.n = 1

    def next_count(self):
        self.n = 3 - self.n
        return self.n

    def record(self, n, seconds, samples):
        assert n == self.n and seconds > 0 and samples > 0


@pytest.mark.parametrize("case", [dict(), dict(dtype=np.float32, dropout=0.3),
                                  dict(solver="adam", budget=3000),
                                  dict(sparse=True, sparse_kernels=True), dict(lean=True)],
                         ids=["default", "float32,dropout", "adam,micro-batches",
                              "sparse-input kernels", "lean"])
def test_thread_count_changes_no_bit(case, monkeypatch):
    """The engine may change its thread count between batches (``_threads``) because the
    model does not depend on it: one thread, two, and a switch at every batch train the
    same bits."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads (NUMBA_NUM_THREADS=1)")
    from sksparse_mlp import _threads

    if case.get("sparse_kernels"):
        monkeypatch.setattr(config, "DENSE_INPUT_BATCH_BYTES", 0)
    dtype = case.get("dtype", np.float64)
    X, Y = _data("softmax", dtype, 120, 3, case.get("sparse", False), np.random.default_rng(4))
    kw = {} if "budget" not in case else dict(activation_budget=case["budget"])
    cfg = TrainingConfig(alpha=1e-3, dropout=case.get("dropout", 0.0))
    if case.get("lean"):
        _squeeze_memory(monkeypatch, _net("allrelu", "softmax", "log_loss", dtype, 3), 32, 4)
    old = numba.get_num_threads()
    results = []
    try:
        for threads, chooser in [(1, None), (2, None), (2, _Alternating())]:
            numba.set_num_threads(threads)
            monkeypatch.setattr(_threads, "chooser_for", lambda *a, c=chooser: c)
            net = _net("allrelu", "softmax", "log_loss", dtype, 3)
            if case.get("lean"):
                assert WS.Workspace(net, 32).lean
            opt = Adam(0.01) if case.get("solver") == "adam" else MomentumSGD(0.05, momentum=0.9)
            rng = np.random.default_rng(5)
            losses = [F.run_epoch(net, X, Y, None, 32, opt, cfg, rng, **kw) for _ in range(2)]
            assert numba.get_num_threads() == threads  # restored after the epoch
            results.append((losses, net))
    finally:
        numba.set_num_threads(old)
    _assert_same_bits([(net, losses) for losses, net in results])

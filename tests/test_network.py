"""The sparse network against finite differences and dense references."""
import numpy as np
import pytest
import reference
import scipy.sparse as sp

from sksparse_mlp._activations import HIDDEN_ACTIVATIONS, hidden_forward, negative_slope
from sksparse_mlp._network import SparseMLP, TrainingConfig, evolve_topology, train_step
from sksparse_mlp._optimizers import MomentumSGD

OUTPUTS = [("softmax", "log_loss"), ("logistic", "binary_log_loss"), ("identity", "squared_error")]


def _net(activation, out_activation, loss, sizes=(6, 7, 5, 3), density=0.6, seed=0):
    rng = np.random.default_rng(seed)
    net = SparseMLP.random(list(sizes), [density] * (len(sizes) - 1), rng, activation=activation,
                           slope=0.6, out_activation=out_activation, loss=loss, dtype=np.float64)
    for layer in net.layers:  # non-zero biases exercise the bias gradient
        layer.bias[:] = rng.normal(scale=0.1, size=layer.bias.shape)
    return net


def _targets(out_activation, rng, n, k):
    if out_activation == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    if out_activation == "logistic":
        return (rng.random((n, k)) > 0.5).astype(float)
    return rng.normal(size=(n, k))


@pytest.fixture(params=["engine", "reference"])
def path(request, monkeypatch):
    """Run a test through the engine (production) and through tests/reference.py."""
    if request.param == "reference":
        monkeypatch.setattr(SparseMLP, "loss_and_gradients", reference.loss_and_gradients)
        monkeypatch.setattr(SparseMLP, "predict_output", reference.predict_output)
    return request.param


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("out_activation,loss", OUTPUTS)
@pytest.mark.parametrize("sparse_input", [False, True])
def test_gradients_match_finite_differences(activation, out_activation, loss, sparse_input, path):
    rng = np.random.default_rng(1)
    net = _net(activation, out_activation, loss)
    X = rng.normal(size=(5, 6))
    X[X < -0.5] = 0
    Xin = sp.csr_matrix(X) if sparse_input else X
    Y = _targets(out_activation, rng, 5, 3)
    w = rng.random(5)
    w /= w.sum()
    _, grads = net.loss_and_gradients(Xin, Y, w)
    h = 1e-6
    for layer, (gW, gb) in zip(net.layers, grads):
        for params, grad in ((layer.W.data, gW), (layer.bias, gb)):
            numeric = np.empty_like(grad)
            for k in range(params.size):
                old = params[k]
                params[k] = old + h
                up = net.loss_and_gradients(Xin, Y, w)[0]
                params[k] = old - h
                down = net.loss_and_gradients(Xin, Y, w)[0]
                params[k] = old
                numeric[k] = (up - down) / (2 * h)
            np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_forward_matches_dense_reference(path):
    rng = np.random.default_rng(2)
    net = _net("allrelu", "softmax", "log_loss", sizes=(8, 9, 7, 4))
    X = rng.normal(size=(11, 8))
    A = X
    for l, layer in enumerate(net.layers):
        Z = A @ layer.W.toarray() + layer.bias
        if l < len(net.layers) - 1:
            s = negative_slope("allrelu", l + 1, 0.6)
            A = np.where(Z > 0, Z, s * Z)
        else:
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
            A = E / E.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.predict_output(X), A, rtol=1e-10)
    np.testing.assert_allclose(net.predict_output(sp.csr_matrix(X)), A, rtol=1e-10)


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("sparse_input", [False, True])
def test_output_bound_holds_and_flags_non_finite(activation, sparse_input):
    """The bound the divergence check relies on is never below an output's magnitude
    (pre-activation: identity outputs), also with a slope above 1 and a row of zeros,
    and is not finite once a weight or a bias is not."""
    rng = np.random.default_rng(1)
    X = rng.normal(scale=3.0, size=(40, 6))
    X[0] = 0.0
    if sparse_input:
        X = sp.csr_array(np.where(np.abs(X) > 2, X, 0.0))
    for slope in (0.6, 2.5):
        net = _net(activation, "identity", "squared_error", sizes=(6, 30, 20, 4), seed=2)
        net.slope = slope
        for layer in net.layers:
            layer.W.data *= 3.0  # growing activations: the piecewise slopes matter
        bound = net.output_bound(X)
        assert np.isfinite(bound) and np.abs(net.predict_output(X)).max() <= bound
    for where in ("W", "bias"):
        broken = net.copy()
        getattr(broken.layers[1], where).data[0] = np.nan if where == "W" else np.inf
        assert not np.isfinite(broken.output_bound(X))


def test_allrelu_sign_alternates_by_layer():
    z = np.array([[-2.0, 3.0]])
    outs = []
    for layer in (1, 2, 3, 4):
        Z = z.copy()
        d = hidden_forward("allrelu", Z, layer, 0.5)
        outs.append((Z.ravel().tolist(), d.ravel().tolist()))
    assert outs[0] == ([1.0, 3.0], [-0.5, 1.0])    # odd layers: -alpha * x for x <= 0
    assert outs[1] == ([-1.0, 3.0], [0.5, 1.0])    # even layers: +alpha * x
    assert outs[2] == outs[0] and outs[3] == outs[1]


def test_train_step_decreases_loss_and_keeps_pattern():
    rng = np.random.default_rng(3)
    net = _net("allrelu", "softmax", "log_loss", sizes=(10, 20, 20, 3))
    X = rng.normal(size=(64, 10))
    Y = np.eye(3)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]
    patterns = [(l.W.indptr.copy(), l.W.indices.copy()) for l in net.layers]
    opt = MomentumSGD(0.05, momentum=0.9, nesterov=True)
    cfg = TrainingConfig(alpha=1e-4, dropout=0.0)
    losses = [train_step(net, X, Y, None, opt, cfg, rng) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    for layer, (indptr, indices) in zip(net.layers, patterns):
        np.testing.assert_array_equal(layer.W.indptr, indptr)
        np.testing.assert_array_equal(layer.W.indices, indices)


def test_momentum_update_matches_formula():
    rng = np.random.default_rng(4)
    net = _net("relu", "softmax", "log_loss")
    layer = net.layers[0]
    w0, v0 = layer.W.data.copy(), rng.normal(size=layer.velocity.shape)
    layer.velocity[:] = v0
    g = rng.normal(size=w0.shape)
    gb = rng.normal(size=layer.bias.shape)
    b0 = layer.bias.copy()
    for nesterov in (False, True):
        layer.W.data[:], layer.velocity[:], layer.bias[:] = w0, v0, b0
        layer.bias_velocity[:] = 0
        MomentumSGD(0.1, momentum=0.9, nesterov=nesterov).update_layer(layer, g, gb, l2=0.01)
        v = 0.9 * v0 - 0.1 * (g + 0.01 * w0)
        step = 0.9 * v - 0.1 * (g + 0.01 * w0) if nesterov else v
        np.testing.assert_allclose(layer.velocity, v)
        np.testing.assert_allclose(layer.W.data, w0 + step)
        vb = -0.1 * gb
        np.testing.assert_allclose(layer.bias, b0 + (0.9 * vb - 0.1 * gb if nesterov else vb))


def test_remove_neurons_keeps_inference_unchanged():
    rng = np.random.default_rng(5)
    net = _net("allrelu", "softmax", "log_loss", sizes=(6, 12, 8, 3), density=0.5)
    X = rng.normal(size=(20, 6))
    layer = net.layers[0]
    # cut every incoming connection of three neurons, as importance pruning does
    dead = np.array([1, 4, 9])
    layer.W.data[np.isin(layer.W.indices, dead)] = 0
    before = net.predict_output(X)
    keep = np.ones(12, bool)
    keep[dead] = False
    net.remove_neurons(1, keep)
    assert net.n_neurons == [6, 9, 8, 3]
    assert net.layers[0].W.shape == (6, 9) and net.layers[1].W.shape == (9, 8)
    assert net.layers[0].velocity.shape == net.layers[0].W.data.shape
    assert net.layers[1].velocity.shape == net.layers[1].W.data.shape
    np.testing.assert_allclose(net.predict_output(X), before, rtol=1e-10)


def test_importance_pruning_removes_least_important_neurons():
    net = _net("relu", "softmax", "log_loss", sizes=(6, 10, 3), density=1.0)
    W = net.layers[0].W
    # neuron j gets importance growing with j: the two weakest must go at the 20th percentile
    W.data[:] = (W.indices + 1).astype(float) / 10
    removed = net.importance_prune(20.0)
    assert removed == [2]
    assert net.n_neurons == [6, 8, 3]
    np.testing.assert_allclose(np.unique(net.layers[0].W.data), np.arange(3, 11) / 10)


def test_evolve_topology_schedule():
    rng = np.random.default_rng(6)
    net = _net("allrelu", "softmax", "log_loss", sizes=(20, 30, 30, 3), density=0.3)
    cfg = TrainingConfig(zeta=0.3, importance_pruning=True, pruning_start=4, pruning_interval=2,
                         pruning_percentile=10.0)
    nnz = net.n_connections
    out_pattern = net.layers[-1].W.indices.copy()
    assert evolve_topology(net, 3, cfg, rng) is None     # before the start: SET only
    assert net.n_connections == nnz
    np.testing.assert_array_equal(net.layers[-1].W.indices, out_pattern)
    assert evolve_topology(net, 5, cfg, rng) is None     # off the interval
    removed = evolve_topology(net, 6, cfg, rng)
    assert removed is not None and all(r > 0 for r in removed)
    assert net.n_neurons[1:3] == [30 - removed[0], 30 - removed[1]]

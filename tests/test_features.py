"""Adam, gradient-guided regrowth, per-layer sparsity and the Poisson loss.

The kernels' Adam mode is tested against a plain numpy Adam in test_kernels.py and
the engine's Adam / Poisson epochs against tests/reference.py in test_fastpath.py;
this file tests the rest: the state kept beside the weights through topology changes,
the estimator parameters, and the regrowth's invariants.
"""
import warnings

import numpy as np
import pytest
import reference as R
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.neural_network._base import poisson_loss

from sksparse_mlp import (
    TrulySparseMLPClassifier,
    TrulySparseMLPRegressor,
    _fastpath,
    _regrowth,
    config,
)
from sksparse_mlp._network import SparseMLP, TrainingConfig, evolve_topology
from sksparse_mlp._optimizers import Adam
from sksparse_mlp._workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _positions(W):
    W = sp.csr_array(W)
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    return rows * W.shape[1] + W.indices


def _digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _adam_net(seed=0, sizes=(20, 30, 25, 4), dens=(0.3, 0.3, 1.0)):
    rng = np.random.default_rng(seed)
    net = SparseMLP.random(list(sizes), list(dens), rng)
    Adam().prepare(net)
    for layer in net.layers:  # distinct state values, so misalignment would show
        layer.velocity[:] = rng.standard_normal(layer.W.nnz)
        layer.second[:] = rng.random(layer.W.nnz) + 1
        layer.bias_velocity[:] = rng.standard_normal(layer.n_out)
        layer.bias_second[:] = rng.random(layer.n_out) + 1
    return net, rng


def _state_by_position(layer):
    pos = _positions(layer.W)
    return {int(p): (w, m, v) for p, w, m, v in zip(pos, layer.W.data, layer.velocity,
                                                    layer.second)}


# ------------------------------------------------------------------ Adam
def test_adam_learns_where_sparse_sgd_is_slow():
    """The fan-in effect (README): at the same learning rate a sparse unit moves its
    pre-activation little per SGD step; Adam's per-connection normalisation does not
    depend on the fan-in."""
    X, y = _digits()
    common = dict(hidden_layer_sizes=(100, 100), max_iter=3, random_state=0)
    sgd = TrulySparseMLPClassifier(**common).fit(X, y)
    adam = TrulySparseMLPClassifier(solver="adam", **common).fit(X, y)
    assert adam.loss_ < 0.5 * sgd.loss_
    assert adam.score(X, y) > 0.9 > sgd.score(X, y)
    assert all(layer.second is not None for layer in adam.network_.layers)
    assert all(layer.second is None for layer in sgd.network_.layers)  # no Adam memory


def test_adam_state_follows_set_and_importance_pruning():
    net, rng = _adam_net()
    before = [_state_by_position(layer) for layer in net.layers]
    net.prune_and_regrow(0.3, rng, "sparse_he")
    for l, layer in enumerate(net.layers):
        assert layer.velocity.shape == layer.second.shape == layer.W.data.shape
        new = 0
        for p, (w, m, v) in _state_by_position(layer).items():
            if p in before[l] and before[l][p][0] == w:  # a survivor keeps its moments
                assert (m, v) == before[l][p][1:]
            else:  # a new connection starts with zero moments
                assert m == 0 and v == 0
                new += 1
        assert (new > 0) == (l < len(net.layers) - 1)  # the output layer does not evolve
    # importance pruning removes neurons with their connections and state
    in_map = [_state_by_position(layer) for layer in net.layers]
    n_out_before = net.layers[0].n_out
    bias_second = net.layers[0].bias_second.copy()
    drop = np.zeros(n_out_before, bool)
    drop[[1, 4, 7]] = True
    net.remove_neurons(1, ~drop)
    keep_cols = np.flatnonzero(~drop)
    W0 = net.layers[0]
    rows = np.repeat(np.arange(W0.n_in), np.diff(W0.W.indptr))
    for r, c, m, v in zip(rows, W0.W.indices, W0.velocity, W0.second):
        old = in_map[0][int(r * n_out_before + keep_cols[c])]
        assert (m, v) == old[1:]
    np.testing.assert_array_equal(W0.bias_second, bias_second[~drop])
    assert net.layers[1].second.shape == net.layers[1].W.data.shape


def test_adam_steps_continue_over_partial_fit_and_warm_start():
    X, y = _digits()
    X, y = X[:300], y[:300]
    clf = TrulySparseMLPClassifier((32,), solver="adam", batch_size=100, max_iter=2,
                                   random_state=0)
    clf.partial_fit(X, y, classes=np.unique(y))
    assert clf._optimizer.t == 3
    clf.partial_fit(X, y)
    assert clf._optimizer.t == 6
    warm = TrulySparseMLPClassifier((32,), solver="adam", batch_size=100, max_iter=2,
                                    warm_start=True, random_state=0).fit(X, y)
    assert warm._optimizer.t == 6
    warm.fit(X, y)
    assert warm._optimizer.t == 12
    # switching the solver on a warm start replaces the state (zeroed) by the other kind
    warm.set_params(solver="sgd").fit(X, y)
    assert all(layer.second is None for layer in warm.network_.layers)
    es = TrulySparseMLPClassifier((32,), solver="adam", early_stopping=True, max_iter=8,
                                  random_state=0).fit(X, y)
    assert len(es.validation_scores_) == es.n_iter_
    assert es.best_validation_score_ == max(es.validation_scores_)


def test_adam_same_seed_same_model():
    X, y = _digits()
    a, b = (TrulySparseMLPClassifier((32,), solver="adam", regrow="gradient", max_iter=3,
                                     random_state=4).fit(X[:400], y[:400]) for _ in range(2))
    for Wa, Wb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(Wa.indices, Wb.indices)
        np.testing.assert_array_equal(Wa.data, Wb.data)


@pytest.mark.parametrize("params,match", [
    (dict(solver="rmsprop"), "solver"), (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"), (dict(adam_epsilon=0.0), "adam_epsilon"),
    (dict(regrow_candidates=0.5), "regrow_candidates"),
    (dict(density=[0.2, 0.3]), "density has 2 values"),
    (dict(density=[0.2, 0.0, 1.0]), "density values"),
    (dict(epsilon=[2, -1, 3]), "epsilon values"),
    (dict(loss="poisson"), "loss"),  # the classifier has the log loss only
])
def test_new_parameters_validated(params, match):
    X, y = _digits()
    with pytest.raises(ValueError, match=match):
        TrulySparseMLPClassifier((16, 8), max_iter=1, **params).fit(X[:100], y[:100])


# ------------------------------------------------------------------ per-layer sparsity
def test_per_layer_density_and_epsilon():
    X, y = _digits()
    clf = TrulySparseMLPClassifier((100, 50), density=[0.1, 0.5, 1.0], max_iter=1,
                                   random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.density_, [0.1, 0.5, 1.0], atol=1e-3)
    clf = TrulySparseMLPClassifier((100, 50), epsilon=(2, 5, 20), max_iter=1,
                                   random_state=0).fit(X, y)
    expected = [min(1.0, e * (a + b) / (a * b)) for e, a, b in
                [(2, 64, 100), (5, 100, 50), (20, 50, 10)]]
    np.testing.assert_allclose(clf.density_, expected, rtol=0.02)


# ------------------------------------------------------------------ Poisson
def _poisson_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 5))
    return X, rng.poisson(np.exp(X @ np.array([1.0, -1.0, 0.5, 0.0, 0.3])))


def test_poisson_regressor_learns_and_reports_sklearn_loss():
    X, y = _poisson_data()
    reg = TrulySparseMLPRegressor((32,), loss="poisson", solver="adam", learning_rate_init=0.01,
                                  max_iter=40, random_state=0).fit(X, y)
    assert reg.out_activation_ == "exp"
    pred = reg.predict(X)
    assert pred.min() > 0
    # better than the constant mean model, in sklearn's half Poisson deviance
    assert poisson_loss(y, pred) < 0.8 * poisson_loss(y, np.full_like(pred, y.mean()))
    # the engine's loss of a batch is sklearn's value on the same network
    net = reg.network_
    w = np.full(len(y), 1.0 / len(y), np.float32)
    loss, _ = net.loss_and_gradients(X.astype(np.float32), y.reshape(-1, 1).astype(np.float32), w)
    assert loss == pytest.approx(poisson_loss(y, pred), rel=1e-4)


@pytest.mark.parametrize("bad", ["negative", "all_zero"])
def test_poisson_rejects_invalid_y(bad):
    X, y = _poisson_data()
    y = y.astype(float)
    if bad == "negative":
        y[3] = -1
    else:
        y[:] = 0
    with pytest.raises(ValueError, match="non-negative y and sum"):
        TrulySparseMLPRegressor((8,), loss="poisson", max_iter=1).fit(X, y)


# ------------------------------------------------------------------ gradient regrowth
@pytest.mark.parametrize("case", ["dense", "sparse", "micro-batches"])
def test_candidate_gradients_are_the_reference_gradients(case, monkeypatch):
    """The engine's gradient at arbitrary positions (connections or empty) is the
    reference's dense gradient A @ D.T there, for every layer, and it takes no step."""
    net, rng = _adam_net(sizes=(20, 30, 25, 4))
    B = 40
    X = rng.standard_normal((B, 20)).astype(np.float32)
    if case == "sparse":
        X[rng.random(X.shape) < 0.7] = 0
        X = sp.csr_array(X)
    if case == "micro-batches":  # activations of 16 samples at a time
        per_sample = Workspace(net, B, step=False).plan["per_sample"]
        monkeypatch.setattr(config, "ACTIVATION_BUDGET", 16 * per_sample)
        assert Workspace(net, B, step=False).micro == 16
    Y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, B)]
    w = rng.random(B).astype(np.float32)
    w /= w.sum()
    positions = [(rng.integers(0, l.n_in, 50), rng.integers(0, l.n_out, 50))
                 for l in net.layers]
    positions[1] = None  # a layer asked nothing gets nothing
    before = [(l.W.data.copy(), l.velocity.copy()) for l in net.layers]
    got = _fastpath.candidate_gradients(net, X, Y, w, positions)
    assert got[1] is None
    for (A, D), p, g in zip(R.layer_signals(net, X, Y, w), positions, got):
        if p is not None:
            np.testing.assert_allclose(g, (A @ D.T)[p], rtol=1e-4, atol=1e-6)
    for layer, (data, vel) in zip(net.layers, before):
        np.testing.assert_array_equal(layer.W.data, data)
        np.testing.assert_array_equal(layer.velocity, vel)


def _prune_and_grow(W, vel, zeta, rng, A, D, factor):
    """Regrowth of one layer from dense signals (the oracle's gradients)."""
    cand = _regrowth.draw_candidates(W, zeta, rng, factor)
    grads = (A @ D.T)[cand.rows, cand.cols]
    W1, v1, chosen = _regrowth.grow(W, vel, cand, grads)
    return W1, v1, (cand.rows, cand.cols, grads, chosen)


@pytest.mark.parametrize("factor", [1.0, 3.0, 1e9])
def test_gradient_regrowth_invariants_and_choice(factor):
    rng = np.random.default_rng(1)
    n_in, n_out = 40, 30
    W = sp.random_array((n_in, n_out), density=0.2, format="csr", rng=rng, dtype=np.float32)
    W.data -= 0.5
    W.sort_indices()
    A = rng.standard_normal((n_in, 9)).astype(np.float32)
    D = rng.standard_normal((n_out, 9)).astype(np.float32)
    vel = np.arange(1, W.nnz + 1)  # tracks where each survivor came from
    W1, v1, (rows, cols, grads, chosen) = _prune_and_grow(
        W, vel, 0.3, np.random.default_rng(2), A, D, factor=factor)
    old_pos, new = _positions(W), _positions(W1)
    assert W1.nnz == W.nnz and len(set(new.tolist())) == W.nnz  # count kept, no duplicates
    assert W1.has_canonical_format
    # survivors keep position, value and state; new connections hold 0 and zero state (a
    # just-pruned position is empty and may be grown again, as in SET)
    survivor = v1 > 0
    np.testing.assert_array_equal(old_pos[v1[survivor] - 1], new[survivor])
    np.testing.assert_array_equal(W.data[v1[survivor] - 1], W1.data[survivor])
    assert np.all(W1.data[~survivor] == 0)
    grown = new[~survivor].tolist()
    k = len(grown)
    assert k == int(0.3 * (W.data >= 0).sum()) + int(0.3 * (W.data < 0).sum()) > 0
    kept = set(new[survivor].tolist())
    # candidates: distinct empty positions of the pruned pattern, their gradient exact
    cand = rows * n_out + cols
    assert len(set(cand.tolist())) == len(cand) == min(int(np.ceil(factor * k)),
                                                       n_in * n_out - (W.nnz - k))
    assert not (set(cand.tolist()) & kept)
    # grown = the candidates with the largest |gradient|
    assert set(grown) == set(cand[chosen].tolist())
    rest = np.setdiff1d(np.arange(len(cand)), chosen)
    if len(rest):
        assert np.abs(grads[chosen]).min() >= np.abs(grads[rest]).max()


def test_gradient_regrowth_in_training_keeps_output_layer_and_counts():
    X, y = _digits()
    clf = TrulySparseMLPClassifier((64, 32), solver="adam", regrow="gradient", max_iter=1,
                                   warm_start=True, random_state=0).fit(X, y)
    for _ in range(2):
        before = [W.copy() for W in clf.coefs_]
        clf.fit(X, y)
        for l, (W0, W1) in enumerate(zip(before, clf.coefs_)):
            assert W1.nnz == W0.nnz
            same = set(_positions(W0).tolist()) == set(_positions(W1).tolist())
            assert same == (l == len(before) - 1)
    assert clf.score(X, y) > 0.8


def test_gradient_regrowth_needs_data():
    net, rng = _adam_net()
    with pytest.raises(ValueError, match="needs the training data"):
        evolve_topology(net, 1, TrainingConfig(regrow="gradient"), rng)
    with pytest.raises(ValueError, match="needs the training data"):
        net.prune_and_regrow(0.3, rng, "sparse_he", regrow="gradient")
    W, vel = net.layers[0].W, net.layers[0].velocity
    with pytest.raises(ValueError, match="factor"):
        _regrowth.draw_candidates(W, 0.3, rng, factor=0.5)
    with pytest.raises(ValueError, match="zeta"):
        _regrowth.draw_candidates(W, 1.5, rng)
    assert _regrowth.draw_candidates(W, 0.0, rng) is None
    cand = _regrowth.draw_candidates(W, 0.3, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, not a numpy warning
        with pytest.raises(ValueError, match="gradients for"):
            _regrowth.grow(W, vel, cand, np.zeros(len(cand.rows) - 1))
        with pytest.raises(ValueError, match="velocity has shape"):
            _regrowth.grow(W, vel[:-1], cand, np.zeros(len(cand.rows)))

"""What a user of scikit-learn's MLPClassifier / MLPRegressor (1.9) expects of ours.

Each test pins one documented behaviour of scikit-learn's MLPs that applies to
us (or our deliberate, documented answer where theirs does not apply: see
docs/sklearn_differences.md): partial_fit and early stopping, labels outside
``classes``, sample weights, divergence, warm start, single samples, batch
sizes, output dtypes, thread safety of prediction, and persistence.
Small data (iris, diabetes, digits), a few epochs each.
"""
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning

from sksparse_mlp import TrulySparseMLPClassifier, TrulySparseMLPRegressor
from sksparse_mlp._network import SparseMLP

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = [TrulySparseMLPClassifier, TrulySparseMLPRegressor]
EST_IDS = ["classifier", "regressor"]
SMALL = dict(hidden_layer_sizes=(16,), max_iter=4, random_state=0)


def _iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _data(Est):
    X, y = _iris()
    if Est is TrulySparseMLPRegressor:
        return X, (y - 1.0)
    return X, y


def _params(est):
    return [W.data.copy() for W in est.coefs_] + [b.copy() for b in est.intercepts_]


def _assert_params_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _fit_args(Est, X, y):
    return {"classes": np.unique(y)} if Est is TrulySparseMLPClassifier else {}


# ---------------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_partial_fit_refuses_early_stopping(Est):
    X, y = _data(Est)
    est = Est(early_stopping=True, **SMALL)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        est.partial_fit(X, y, **_fit_args(Est, X, y))
    assert not hasattr(est, "network_")
    est.fit(X, y)
    before = _params(est)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        est.partial_fit(X, y)
    _assert_params_equal(before, _params(est))


def test_first_partial_fit_refuses_labels_outside_classes():
    X, y = _iris()
    est = TrulySparseMLPClassifier(**SMALL)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        est.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(est, "network_")
    # and on later calls, as before
    est.partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    assert est.predict_proba(X).shape == (150, 2) and est.n_outputs_ == 1
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        est.partial_fit(X, y)


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_partial_fit_after_fit_continues_the_model(Est):
    X, y = _data(Est)
    est = Est(**SMALL).fit(X, y)
    curve = list(est.loss_curve_)
    est.partial_fit(X, y)
    assert est.n_iter_ == 1 and est.t_ == 5 * X.shape[0]
    assert est.loss_curve_[:4] == curve and len(est.loss_curve_) == 5
    # the same as a fit of 5 epochs (one topology, one schedule)
    ref = Est(**{**SMALL, "max_iter": 5}).fit(X, y)
    _assert_params_equal(_params(ref), _params(est))


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_loaded_model_continues_with_partial_fit(Est):
    X, y = _data(Est)
    est = Est(**SMALL).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    est.partial_fit(X, y)
    loaded.partial_fit(X, y)
    _assert_params_equal(_params(est), _params(loaded))
    assert est.loss_curve_ == loaded.loss_curve_


# ---------------------------------------------------------------------- sample_weight
@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_negative_or_zero_sum_sample_weight_refused(Est, how):
    X, y = _data(Est)
    est = Est(**SMALL)
    kw = _fit_args(Est, X, y) if how == "partial_fit" else {}
    with pytest.raises(ValueError, match="Negative values"):
        getattr(est, how)(X, y, sample_weight=-np.ones(len(y)), **kw)
    w = np.ones(len(y))
    w[7] = -0.5
    with pytest.raises(ValueError, match="Negative values"):
        getattr(est, how)(X, y, sample_weight=w, **kw)
    with pytest.raises(ValueError, match="sums to zero|at least one non-zero"):
        getattr(est, how)(X, y, sample_weight=np.zeros(len(y)), **kw)
    assert not hasattr(est, "network_")


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_sample_weight_is_relative(Est):
    """Scaling every weight by a constant changes nothing, as in MLPClassifier."""
    X, y = _data(Est)
    rng = np.random.default_rng(0)
    w = rng.random(len(y))
    a = Est(batch_size=16, **SMALL).fit(X, y, sample_weight=w)
    b = Est(batch_size=16, **SMALL).fit(X, y, sample_weight=4 * w)
    _assert_params_equal(_params(a), _params(b))
    c = Est(batch_size=16, **SMALL).fit(X, y, sample_weight=np.full(len(y), 3.0))
    d = Est(batch_size=16, **SMALL).fit(X, y)
    _assert_params_equal(_params(c), _params(d))


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_zero_weight_batches_are_steps_not_skipped(Est):
    """A batch of zero-weight samples has no data gradient but momentum goes on.

    Trained sample by sample (batch_size=1, no shuffling), the data ``[A, Z]`` with
    weights ``[2, 0]`` (relative: mean 1) at half the learning rate moves like ``A``
    alone at the full rate, until the zero-weight samples come: without momentum
    and weight decay they leave the model as it is; with momentum it keeps moving.
    """
    X, y = _data(Est)
    A, Z = np.arange(0, 150, 2), np.arange(1, 150, 2)
    XA = np.vstack([X[A], X[Z]])
    yA = np.concatenate([y[A], y[Z]])
    w = np.r_[np.full(len(A), 2.0), np.zeros(len(Z))]
    base = dict(SMALL, batch_size=1, shuffle=False, alpha=0.0, learning_rate_init=0.01)
    kw = _fit_args(Est, X, y)
    for momentum, same in ((0.0, True), (0.9, False)):
        ref = Est(**base, momentum=momentum).partial_fit(X[A], y[A], **kw)
        half = dict(base, learning_rate_init=0.005, momentum=momentum)
        weighted = Est(**half).partial_fit(XA, yA, sample_weight=w, **kw)
        assert weighted.t_ == len(yA)
        pa, pb = _params(ref), _params(weighted)
        close = all(np.allclose(u, v, rtol=1e-5, atol=1e-6) for u, v in zip(pa, pb))
        assert close == same, momentum


@pytest.mark.slow
def test_early_stopping_validation_score_is_weighted():
    """Half of iris gets random labels and weight zero: the weighted validation
    accuracy measures the clean half only (scikit-learn 1.9 weights it too)."""
    X, y = _iris()
    rng = np.random.default_rng(0)
    noisy = rng.random(len(y)) < 0.5
    y_noisy = y.copy()
    y_noisy[noisy] = rng.integers(0, 3, noisy.sum())
    est = TrulySparseMLPClassifier(hidden_layer_sizes=(32,), max_iter=60, early_stopping=True,
                                   validation_fraction=0.3, n_iter_no_change=60,
                                   learning_rate_init=0.05, random_state=0)
    est.fit(X, y_noisy, sample_weight=(~noisy).astype(float))
    assert est.best_validation_score_ > 0.85
    unweighted = TrulySparseMLPClassifier(**est.get_params()).fit(X, y_noisy)
    assert unweighted.best_validation_score_ < 0.8


def test_validation_split_too_small_for_stratification_says_why():
    X, y = _iris()
    est = TrulySparseMLPClassifier(early_stopping=True, **SMALL)
    with pytest.raises(ValueError, match="validation_fraction.*3 classes"):
        est.fit(X[::10], y[::10])


# ---------------------------------------------------------------------- divergence
def _diabetes():
    return load_diabetes(return_X_y=True)


DIVERGING = {
    # one batch per epoch: the step that overflows is the last one of its epoch
    "unscaled": (dict(max_iter=4, learning_rate_init=0.01, batch_size=442), 100.0),
    "huge_learning_rate": (dict(max_iter=1, learning_rate_init=1e30, batch_size=442), 1.0),
    "early_stopping": (dict(max_iter=4, learning_rate_init=1e10, batch_size=442,
                            early_stopping=True), 1.0),
}


@pytest.mark.parametrize("case", list(DIVERGING))
def test_divergence_is_reported_and_previous_model_kept(case):
    params, scale = DIVERGING[case]
    X, y = _diabetes()
    est = TrulySparseMLPRegressor(random_state=0, **params)
    with pytest.raises(ValueError, match="^Training diverged"):
        est.fit(X * scale, y)
    assert not hasattr(est, "network_")
    good = TrulySparseMLPRegressor(random_state=0, max_iter=2).fit(X, y / 100)
    before = _params(good)
    good.set_params(warm_start=True, **params)
    with pytest.raises(ValueError, match="^Training diverged"):
        good.fit(X * scale, y)
    _assert_params_equal(before, _params(good))
    assert np.isfinite(good.predict(X)).all()


def test_diverging_partial_fit_keeps_the_last_finite_model():
    X, y = _diabetes()
    est = TrulySparseMLPRegressor(random_state=0, batch_size=442)
    with pytest.raises(ValueError, match="^Training diverged"):
        est.partial_fit(X * 1e15, y * 1e15)
    assert not hasattr(est, "network_")
    est.partial_fit(X, y / 100)
    before = _params(est)
    with pytest.raises(ValueError, match="^Training diverged"):
        est.partial_fit(X * 1e15, y * 1e15)
    _assert_params_equal(before, _params(est))
    est.partial_fit(X, y / 100)  # the finite model trains on
    assert all(np.isfinite(p).all() for p in _params(est))


def test_divergence_check_predicts_rows_only_when_outputs_could_overflow(monkeypatch):
    """After each epoch the probe rows are predicted only when the network's bound on
    its outputs does not rule an overflow out; huge but finite weights are caught."""
    X, y = _diabetes()
    est = TrulySparseMLPRegressor(random_state=0, max_iter=1).fit(X, y / 100)
    est._probe_X = X[:32].astype(est.network_.dtype)  # as a fit sets it (and drops it after)
    calls = []
    predict = SparseMLP.predict_output
    monkeypatch.setattr(SparseMLP, "predict_output",
                        lambda net, rows: calls.append(rows.shape[0]) or predict(net, rows))
    est._check_diverged(1.0)
    assert calls == []
    for layer in est.network_.layers:
        layer.W.data[:] = 1e20  # finite in float32, but the outputs are not
    with pytest.raises(ValueError, match="the outputs overflowed"):
        est._check_diverged(1.0)
    assert calls == [est._probe_X.shape[0]]


def test_classifier_divergence_with_early_stopping_is_reported():
    X, y = _iris()
    est = TrulySparseMLPClassifier(early_stopping=True, batch_size=135, max_iter=1,
                                   learning_rate_init=1e30, random_state=0)
    with pytest.raises(ValueError, match="^Training diverged"):
        est.fit(X * 100, y)


# ---------------------------------------------------------------------- stopping, warm start
@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_n_iter_no_change_inf_never_stops_early(Est):
    X, y = _data(Est)
    stopping = Est(**{**SMALL, "max_iter": 8}, tol=1e3, n_iter_no_change=2).fit(X, y)
    assert stopping.n_iter_ < 8
    with pytest.warns(ConvergenceWarning):
        est = Est(**{**SMALL, "max_iter": 8}, tol=1e3, n_iter_no_change=np.inf).fit(X, y)
    assert est.n_iter_ == 8


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_warm_start_n_iter_counts_the_last_fit(Est):
    X, y = _data(Est)
    est = Est(**{**SMALL, "max_iter": 3}, warm_start=True).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\)"):
        est.set_params(max_iter=5).fit(X, y)
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 8 and est.t_ == 8 * X.shape[0]
    # the SET schedule counts all epochs: 3 + 5 warm-started epochs are 8 epochs
    ref = Est(**{**SMALL, "max_iter": 8}).fit(X, y)
    _assert_params_equal(_params(ref), _params(est))
    est.partial_fit(X, y)
    assert est.n_iter_ == 1


def test_warm_start_with_other_classes_raises():
    X, y = _iris()
    est = TrulySparseMLPClassifier(**SMALL, warm_start=True).fit(X, y)
    before = _params(est)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        est.fit(X[y < 2], y[y < 2])
    _assert_params_equal(before, _params(est))
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    # the same classes in another order of samples are fine
    order = np.random.default_rng(0).permutation(len(y))
    est.fit(X[order], y[order])
    # partial_fit takes batches that miss a class
    est.partial_fit(X[y < 2], y[y < 2])


def test_fit_on_a_single_sample():
    X, y = _data(TrulySparseMLPRegressor)
    reg = TrulySparseMLPRegressor(**SMALL).fit(X[:1], y[:1])
    assert reg.predict(X[:3]).shape == (3,) and reg.n_iter_ >= 1
    Y = (np.c_[y, -y] > 0).astype(int)
    TrulySparseMLPClassifier(**SMALL).fit(X[:1], Y[:1])  # one multilabel sample
    # a single sample of one class is one-class data, refused as any (see docs)
    with pytest.raises(ValueError, match="one class"):
        TrulySparseMLPClassifier(**SMALL).fit(X[:1], y[:1])


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_batch_size_larger_than_data_warns_and_clips(Est):
    X, y = _data(Est)
    with pytest.warns(UserWarning, match="batch_size.*clipped"):
        big = Est(**SMALL, batch_size=1000).fit(X, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*batch_size")
        exact = Est(**SMALL, batch_size=len(y)).fit(X, y)
    _assert_params_equal(_params(big), _params(exact))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_output_dtype_follows_model_and_input(Est, dtype):
    """As MLPRegressor: float32 in, float32 out for a float32 model; float64 input
    (or a float64 model) gives float64."""
    X, y = _data(Est)
    est = Est(**SMALL, dtype=dtype).fit(X.astype(np.float32), y)
    method = est.predict_proba if Est is TrulySparseMLPClassifier else est.predict
    assert method(X.astype(np.float32)).dtype == np.dtype(dtype)
    assert method(X).dtype == np.float64
    np.testing.assert_allclose(method(X.astype(np.float32)), method(X), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sizes", [["a"], ("10", 3), [2.5], [np.nan], [True]])
def test_hidden_layer_sizes_bad_values_get_our_message(sizes):
    X, y = _iris()
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive integers"):
        TrulySparseMLPClassifier(hidden_layer_sizes=sizes, max_iter=1).fit(X, y)


# ---------------------------------------------------------------------- threads
_THREADS_SCRIPT = textwrap.dedent("""
    import sys, threading, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    import numba
    from sklearn.datasets import load_digits
    from sksparse_mlp import TrulySparseMLPClassifier
    try:
        @numba.njit(parallel=True)
        def probe(a):
            s = 0.0
            for i in numba.prange(a.size):
                s += a[i]
            return s
        probe(np.ones(4))
        layer = numba.threading_layer()
    except Exception as e:                      # the layer is not installed here
        print("UNAVAILABLE", e)
        sys.exit(0)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(64, 64), max_iter=2,
                                   random_state=0).fit(X, y)
    ref = clf.predict_proba(X)
    errors = []

    def predict():
        for _ in range(15):
            if not np.array_equal(clf.predict_proba(X), ref):
                errors.append("different")

    def fit():
        TrulySparseMLPClassifier(hidden_layer_sizes=(32,), max_iter=2,
                                 random_state=0).fit(X[:300], y[:300])

    threads = [threading.Thread(target=predict) for _ in range(4)]
    threads += [threading.Thread(target=fit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("LAYER", layer, "ERRORS", len(errors))
""")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_concurrent_predict_from_threads_on_every_threading_layer(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2")
    res = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=280)
    if "UNAVAILABLE" in res.stdout:
        pytest.skip("numba threading layer %r is not available here" % layer)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert ("LAYER %s ERRORS 0" % layer) in res.stdout, res.stdout


# ---------------------------------------------------------------------- persistence
SKOPS_TRUSTED = {  # as documented in docs/sklearn_differences.md
    TrulySparseMLPClassifier: ["sksparse_mlp._estimators.TrulySparseMLPClassifier"],
    TrulySparseMLPRegressor: ["sksparse_mlp._estimators.TrulySparseMLPRegressor"],
}
SKOPS_COMMON = ["sksparse_mlp._network.SparseMLP", "sksparse_mlp._network.SparseLayer",
                "sksparse_mlp._optimizers.MomentumSGD", "scipy.sparse._csr.csr_array"]


@pytest.mark.parametrize("Est", ESTIMATORS, ids=EST_IDS)
def test_skops_round_trip_with_the_documented_trusted_list(Est):
    sio = pytest.importorskip("skops.io")
    X, y = _data(Est)
    est = Est(**SMALL).fit(X, y)
    blob = sio.dumps(est)
    trusted = SKOPS_TRUSTED[Est] + SKOPS_COMMON
    assert sorted(sio.get_untrusted_types(data=blob)) == sorted(trusted)
    loaded = sio.loads(blob, trusted=trusted)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    loaded.partial_fit(X, y)
    est.partial_fit(X, y)
    _assert_params_equal(_params(est), _params(loaded))

"""WASAP-SGD traffic accounting with real spawned workers: the bytes the server counts in
phase 1 are exactly what the wire format (``_protocol``'s message sizes) says.

The benchmarks' cluster model (``benchmarks/wasap_scaling.py``) is built on these
counts, so they are checked here, byte for byte.
"""
import os
import time

import numpy as np
import pytest
from procs import workers_of

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def _data():
    from sklearn.datasets import make_classification
    X, y = make_classification(n_samples=600, n_features=20, n_informative=10, n_classes=3,
                               random_state=0)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.fixture(scope="module")
def warm_kernels():
    """Kernels compiled (or loaded) here first, so workers load the on-disk cache."""
    from sksparse_mlp import TrulySparseMLPClassifier
    X, y = _data()
    TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(X, y)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_phase1_bytes_match_the_wire_format(warm_kernels, mode):
    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _protocol as P
    from sksparse_mlp.parallel import _testing
    X, y = _data()
    # 3 epochs, all in phase 1: SET changes the topology twice (structure re-sent)
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(24, 16), max_iter=3, random_state=0,
                                   n_workers=2, worker_mode=mode, phase1_fraction=1.0,
                                   batch_size=64, worker_timeout=60).fit(X, y)
    st = _testing.last_stats
    layers = clf.network_.layers
    n_values = sum(layer.W.nnz + layer.n_out for layer in layers)
    shapes = [(layer.W.shape[0], layer.W.shape[1], layer.W.nnz) for layer in layers]
    received, structures = st["phase1_received"], st["phase1_structure_replies"]
    # every worker saw both new topologies once
    assert structures == 2 * 2
    # one reply per gradient received; the last one of each worker is END (header only)
    assert st["phase1_bytes_in"] == received * P.gradient_bytes(n_values, 4)
    assert st["phase1_bytes_out"] == (received * P.reply_bytes(0, 4)
                                      + (received - 2) * 4 * n_values
                                      + structures * P.structure_bytes(shapes))
    steps = 3 * (-(-len(X) // 64) if mode == "async" else -(-len(X) // 128))
    assert st["phase1_steps"] == steps
    assert st["phase1_gradients"] == steps * (1 if mode == "async" else 2)
    assert st["phase1_update_s"] > 0 and st["phase1_evolve_s"] > 0
    assert all(w["compute_cpu_s"] > 0 for w in st["workers"])


@pytest.mark.timeout(180)
def test_allreduce_mode_is_reproducible_and_keeps_the_server_out_of_the_data_path(
        warm_kernels):
    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _testing
    X, y = _data()
    params = dict(hidden_layer_sizes=(24, 16), max_iter=4, random_state=3, n_workers=2,
                  worker_mode="allreduce", phase1_fraction=1.0, batch_size=32, dropout=0.1,
                  worker_timeout=60)
    a = TrulySparseMLPClassifier(**params).fit(X, y)
    st = dict(_testing.last_stats)
    b = TrulySparseMLPClassifier(**params).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_ and len(a.loss_curve_) == 4
    for Wa, Wb, ba, bb in zip(a.coefs_, b.coefs_, a.intercepts_, b.intercepts_):
        assert np.array_equal(Wa.indices, Wb.indices) and np.array_equal(Wa.indptr, Wb.indptr)
        assert np.array_equal(Wa.data, Wb.data) and np.array_equal(ba, bb)
    c = TrulySparseMLPClassifier(**dict(params, random_state=4)).fit(X, y)
    assert c.loss_curve_ != a.loss_curve_
    # it learns: the loss falls and the accuracy is far above chance (3 classes)
    assert a.loss_curve_[-1] < a.loss_curve_[0] and a.score(X, y) > 0.6
    # the steps were taken by the workers: per epoch the server received one model
    # (values + momentum, 4 bytes each) plus small results, never the gradients
    layers = a.network_.layers
    n_values = sum(layer.W.nnz + layer.n_out for layer in layers)
    steps = 4 * -(-len(X) // (32 * 2))
    assert st["phase1_steps"] == steps and st["phase1_gradients"] == 2 * steps
    assert 4 * 8 * n_values <= st["phase1_bytes_in"] <= 4 * (8 * n_values + 2048)
    assert sum(w["steps"] for w in st["workers"]) == 2 * steps
    assert all(w["step_cpu_s"] > 0 for w in st["workers"])


@pytest.mark.timeout(180)
def test_allreduce_mode_takes_the_sync_steps_with_adam_neuron_removal_and_phase_2(
        warm_kernels):
    """Same steps as mode "sync" (up to the order of the sums): importance pruning changes
    the layer shapes at the server between allreduce epochs (worker 0 broadcasts the new
    model, Adam's moments with it), and phase 2 follows."""
    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _testing
    X, y = _data()
    params = dict(hidden_layer_sizes=(24, 16), max_iter=5, random_state=0, n_workers=2,
                  phase1_fraction=0.6, solver="adam", learning_rate_init=0.003,
                  batch_size=64, importance_pruning=True, pruning_start=1,
                  pruning_interval=1, pruning_percentile=20.0, worker_timeout=60)
    clf = TrulySparseMLPClassifier(worker_mode="allreduce", **params).fit(X, y)
    st = dict(_testing.last_stats)
    ref = TrulySparseMLPClassifier(worker_mode="sync", **params).fit(X, y)
    assert st["epochs"] == 5 and clf.n_iter_ == 5 and st["phase1_steps"] == 3 * 5
    shapes = [layer.W.shape for layer in clf.network_.layers]
    assert shapes[0][1] < 24                          # neurons were removed
    assert shapes == [layer.W.shape for layer in ref.network_.layers]
    assert np.allclose(clf.loss_curve_, ref.loss_curve_, rtol=1e-4), (
        clf.loss_curve_, ref.loss_curve_)
    assert clf._optimizer.t == ref._optimizer.t >= 3 * 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,error", [("raise", "WorkerError"), ("kill", "WorkerDied")])
def test_allreduce_mode_worker_failure_mid_epoch_never_hangs(warm_kernels, kind, error):
    """Worker 1 fails after a few steps while worker 0 waits in the Allreduce: the fit
    raises promptly, no process of it is left, and the next fit works."""
    from sksparse_mlp import TrulySparseMLPClassifier, parallel
    from sksparse_mlp.parallel import _testing
    X, y = _data()
    params = dict(hidden_layer_sizes=(24, 16), max_iter=3, random_state=0, n_workers=2,
                  worker_mode="allreduce", batch_size=32, worker_timeout=30)
    _testing.hooks["fault"] = {"rank": 1, "kind": kind, "where": "step", "after": 3}
    try:
        t0 = time.monotonic()
        with pytest.raises(getattr(parallel, error)):
            TrulySparseMLPClassifier(**params).fit(X, y)
        took = time.monotonic() - t0
    finally:
        _testing.hooks["fault"] = None
    assert took < 30, took                      # well before worker_timeout
    deadline = time.monotonic() + 10
    while workers_of(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers_of(os.getpid()) == []
    assert TrulySparseMLPClassifier(**params).fit(X, y).n_iter_ == 3

"""WASAP-SGD traffic accounting with real spawned workers: the bytes the server counts in
phase 1 are exactly what the wire format (``_protocol``'s message sizes) says.

The benchmarks' cluster model (``benchmarks/wasap_scaling.py``) is built on these
counts, so they are checked here, byte for byte.
"""
import numpy as np
import pytest

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

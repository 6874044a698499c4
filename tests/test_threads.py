"""The thread count chosen from batch times (``_threads``), on simulated machines."""
import threading

import numpy as np
import pytest

from sksparse_mlp import _threads
from sksparse_mlp._threads import ThreadChooser


def _run(chooser, seconds_at, batches, rng, samples=128):
    """Feed ``batches`` batches whose time at ``n`` threads is ``seconds_at(n)`` times a
    5 % jitter; returns the thread count of every batch."""
    counts = []
    for _ in range(batches):
        n = chooser.next_count()
        counts.append(n)
        chooser.record(n, seconds_at(n) * (1 + 0.05 * rng.random()), samples)
    return np.array(counts)


def quiet(n):  # two threads 1.9x faster than one
    return 4e-3 if n == 1 else 4e-3 / 1.9


def busy(n):  # a busy process beside us: two threads 3x slower than one
    return 6e-3 if n == 1 else 18e-3


def test_quiet_machine_trains_at_most_threads():
    counts = _run(ThreadChooser(2), quiet, 1000, np.random.default_rng(0))
    assert counts[0] == 2
    assert np.mean(counts == 2) > 0.97  # a trial of one thread now and then
    assert np.mean(counts[-500:] == 2) > 0.98


def test_busy_neighbour_switches_to_one_thread_and_back():
    rng = np.random.default_rng(1)
    chooser = ThreadChooser(2)
    _run(chooser, quiet, 200, rng)
    counts = _run(chooser, busy, 400, rng)
    # noticed within a few batches (the batches became slower), then mostly one thread
    assert (counts[5:] == 1).mean() > 0.95
    assert np.argmax(counts == 1) <= 5
    counts = _run(chooser, quiet, 400, rng)
    # back to two threads within the longest wait between trials
    first = np.argmax(counts == 2)
    assert counts[first] == 2 and first <= _threads.LONGEST_WAIT + 2 * _threads.TRIAL_BATCHES
    assert (counts[first + 2 * _threads.TRIAL_BATCHES:] == 2).mean() > 0.95


def test_one_slow_batch_does_not_switch():
    rng = np.random.default_rng(2)
    chooser = ThreadChooser(2)
    _run(chooser, quiet, 300, rng)
    chooser.record(chooser.next_count(), 0.1, 128)  # one batch 50x slower: a page fault storm
    counts = _run(chooser, quiet, 100, rng)
    assert (counts == 2).mean() > 0.9


def test_more_cores_climb_to_the_best_count():
    def seconds_at(n):  # 8 threads but one core busy: 7 is fastest
        return 1e-3 * (8 / n if n < 8 else 3.0)

    counts = _run(ThreadChooser(8), seconds_at, 1500, np.random.default_rng(3))
    assert np.bincount(counts[-500:]).argmax() == 7
    assert counts.min() >= 1 and counts.max() <= 8


def test_chooser_kept_per_shape_and_batch(monkeypatch):
    class Net:
        n_neurons = [4, 8, 2]

    monkeypatch.setattr(_threads, "_CHOOSERS", type(_threads._CHOOSERS)())
    a = _threads.chooser_for(Net(), 128, 2)
    assert _threads.chooser_for(Net(), 128, 2) is a  # a partial_fit trains a copy
    assert _threads.chooser_for(Net(), 64, 2) is not a
    other = []
    thread = threading.Thread(target=lambda: other.append(_threads.chooser_for(Net(), 128, 2)))
    thread.start()
    thread.join()
    assert other[0] is not None and other[0] is not a  # one per Python thread
    assert _threads.chooser_for(Net(), 128, 1) is None
    monkeypatch.setattr(_threads.cfg, "ADAPTIVE_THREADS", False)
    assert _threads.chooser_for(Net(), 128, 2) is None
    monkeypatch.setattr(_threads.cfg, "ADAPTIVE_THREADS", True)
    for batch in range(_threads.KEPT + 1):
        _threads.chooser_for(Net(), batch + 1000, 2)
    assert len(_threads._CHOOSERS) == _threads.KEPT


@pytest.mark.parametrize("most", [2, 3])
def test_counts_stay_within_bounds(most):
    counts = _run(ThreadChooser(most), lambda n: 1e-3 * n, 300, np.random.default_rng(4))
    assert counts.min() >= 1 and counts.max() <= most
    assert np.bincount(counts[-100:]).argmax() == 1  # more threads slower here: one wins


def test_training_times_only_full_batches(monkeypatch):
    # a short last batch is mostly fixed cost: its time per sample would make the
    # count it ran at look slow (and the first batch builds the CSC views)
    import numba

    from sksparse_mlp import TrulySparseMLPClassifier, _fastpath

    recorded = []

    class Recorder:
        def next_count(self):
            return numba.get_num_threads()

        def record(self, n, seconds, samples):
            recorded.append(samples)

    monkeypatch.setattr(_fastpath._threads, "chooser_for", lambda *args: Recorder())
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((300, 6)), rng.integers(0, 2, 300)
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), batch_size=128, max_iter=2,
                                   random_state=0)
    clf.fit(X, y)
    assert recorded == [128, 128]  # per epoch: batches 128 (building), 128, 44

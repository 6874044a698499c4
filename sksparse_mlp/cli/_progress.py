"""The per-epoch progress line and the warm-up that compiles the kernels before the clock starts."""
from __future__ import annotations

import contextlib
import sys
import time
import warnings

import numpy as np

from ._util import PROG, as_tuple


@contextlib.contextmanager
def epoch_callback(estimator, callback):
    """Use ``callback`` as the estimator's per-epoch ``callback`` for the ``with`` block.

    The previous value comes back afterwards, so the saved model carries no
    reference to the progress line (which holds a stream and does not pickle).
    """
    previous = estimator.callback
    estimator.set_params(callback=callback)
    try:
        yield
    finally:
        estimator.set_params(callback=previous)


class Progress:
    """One status line per epoch: live (``\\r``-updated) on a terminal, plain lines otherwise."""

    def __init__(self, max_iter: int, stream=None, holdout=None, scorer_name: str = "score",
                 enabled=True):
        self.max_iter = max_iter
        self.stream = stream if stream is not None else sys.stderr
        self.holdout = holdout
        self.scorer_name = scorer_name
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.holdout_curve = []
        self.overhead = 0.0  # seconds spent scoring the hold-out set (not training)
        self._last_len = 0

    def __call__(self, est) -> None:
        elapsed = time.perf_counter() - self.start
        n = est.n_iter_
        parts = [f"epoch {n:>{len(str(self.max_iter))}}/{self.max_iter}"]
        if self.live:
            width = 20
            done = min(width, int(width * n / max(1, self.max_iter)))
            parts[0] = "[" + "#" * done + "." * (width - done) + "] " + parts[0]
        parts.append(f"loss {est.loss_:.4f}")
        val = getattr(est, "validation_scores_", None)
        if val:
            parts.append(f"val {val[-1]:.4f}")
        if self.holdout is not None:
            X_h, y_h = self.holdout
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score = float(est.score(X_h, y_h))
            self.holdout_curve.append(score)
            self.overhead += time.perf_counter() - t0
            parts.append(f"holdout {self.scorer_name} {score:.4f}")
        parts.append(f"conn {sum(est.n_connections_):,}")
        hidden = est.n_neurons_[1:-1]
        if getattr(est, "importance_pruning", False):
            parts.append("neurons " + "-".join(str(h) for h in hidden))
        parts.append(f"{elapsed:.1f}s")
        line = "  ".join(parts)
        if not self.enabled:
            return
        if self.live:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.live and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


def warm_up(est, sparse_input: bool = False, stream=None) -> float:
    """Fit a tiny copy of ``est`` so that numba compiles (first run after installing)
    or loads its kernels now, not inside a timed fit or the progress line's clock."""
    from sklearn.base import clone, is_classifier

    stream = stream if stream is not None else sys.stderr
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    # layers large and sparse enough at epsilon 20 for the kernels of Erdős–Rényi
    # sampling and SET to compile too
    X = rng.standard_normal((64, 200)).astype(np.dtype(est.dtype))
    y = np.arange(64) % 3 if is_classifier(est) else X[:, 0].astype(np.float64)
    if sparse_input:
        from scipy.sparse import csr_matrix
        X = csr_matrix(X)
    tiny = clone(est).set_params(
        hidden_layer_sizes=(128,) * len(as_tuple(est.hidden_layer_sizes)), max_iter=3,
        batch_size=32, n_workers=1, early_stopping=False, verbose=False, callback=None,
        importance_pruning=True, pruning_start=1, pruning_interval=1, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tiny.fit(X, y)
            tiny.predict(X)
            tiny.predict(X[:1])
        # Erdős–Rényi layers denser than 50 % sample the connections they leave out
        from .._sampling import _sample_sorted_distinct
        _sample_sorted_distinct(8192, 6000, rng)
    except Exception:  # the real fit reports any problem with the settings
        return 0.0
    seconds = time.perf_counter() - t0
    if seconds > 2.0:
        print(f"{PROG}: compiled the numba kernels in {seconds:.0f} s (once after installing; "
              "cached on disk)", file=stream, flush=True)
    return seconds


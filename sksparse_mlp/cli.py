"""Command line: ``sksparse-mlp demo | train | predict`` (also ``python -m sksparse_mlp``).

``demo``
    Trains the sparse classifier on a built-in data set (no download), beside a
    dense :class:`~sklearn.neural_network.MLPClassifier` of the same shape,
    prints a comparison table and saves a plot.
``train DATA``
    Trains on a user file (CSV with ``--target``, svmlight/libsvm, ``.npz``
    with ``X`` and ``y``). Every estimator hyper-parameter is a flag, generated
    from the estimator's signature and docstring. Shows one live progress line
    per epoch, evaluates on a held-out split, saves the model (joblib) and a
    metrics JSON.
``predict MODEL DATA``
    Writes predictions (and class probabilities with ``--proba``) as CSV.

Bad input gives a one-line ``sksparse-mlp: error: ...`` on stderr and exit
status 2; a failure during training gives exit status 1.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import re
import sys
import time
import warnings

import numpy as np

PROG = "sksparse-mlp"
MODEL_MARKER = "sksparse_mlp.cli/model"
MODEL_FORMAT_VERSION = 1


class CLIError(Exception):
    """An error reported as one line on stderr; ``status`` is the exit code."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# ==========================================================================
# estimator flags, generated from the estimators themselves
# ==========================================================================
def _estimator_classes():
    from . import TrulySparseMLPClassifier, TrulySparseMLPRegressor

    return TrulySparseMLPClassifier, TrulySparseMLPRegressor


def _init_params(cls):
    """(name, default) of every ``__init__`` parameter of an estimator class."""
    sig = inspect.signature(cls.__init__)
    # callback takes a Python callable: no flag (the CLI sets its own progress line)
    return [(p.name, p.default) for p in sig.parameters.values()
            if p.name not in ("self", "callback")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _param_docs(cls):
    """{name: (type line, first sentence)} from the numpydoc Parameters section."""
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not m:
        return {}
    out, name = {}, None
    for line in m.group(1).splitlines():
        head = re.match(r"^(\w+) : (.*)$", line)
        if head:
            name = head.group(1)
            out[name] = [head.group(2).strip(), ""]
        elif name and line.startswith("    ") and line.strip():
            out[name][1] = (out[name][1] + " " + line.strip()).strip()
    docs = {}
    for key, (typ, text) in out.items():
        sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0] if text else ""
        docs[key] = (re.split(r",\s*default\s*=", typ)[0].strip(), sentence.replace("``", ""))
    return docs


def _parse_layers(text):
    parts = [p for p in re.split(r"[,\sx]+", text.strip().strip("()[]")) if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes like 256,256 (got {text!r})") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one layer size")
    return sizes


def _parse_literal(text):
    """'none' -> None, 'true'/'false' -> bool, ints, floats, JSON objects, comma-separated
    numbers (per-layer ``density`` / ``epsilon``) as a list, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if "," in text and not text.strip().startswith(("{", "[")):
        try:
            return [float(p) for p in text.split(",")]
        except ValueError:
            pass
    if text.strip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc.msg}") from None
    return text


def _flag(name):
    return "--" + name.replace("_", "-")


def add_estimator_flags(parser):
    """Add one flag per parameter of the two estimators; returns the names added.

    Flags default to ``argparse.SUPPRESS`` so that a parameter the user does not
    give keeps the estimator's own default (the two cannot drift apart).
    """
    clf_cls, reg_cls = _estimator_classes()
    params = dict(_init_params(reg_cls))
    params.update(_init_params(clf_cls))
    from sklearn.neural_network import MLPClassifier

    # MLPClassifier describes the parameters we share with it; ours take precedence
    docs = {k: v for k, v in _param_docs(MLPClassifier).items() if k in params}
    for cls in (reg_cls, clf_cls):
        docs.update({k: v for k, v in _param_docs(cls).items() if v[1] or k not in docs})
    group = parser.add_argument_group(
        "estimator parameters",
        "Every parameter of TrulySparseMLPClassifier / TrulySparseMLPRegressor "
        "(see their docstrings). Unset flags keep the estimator's default.")
    for name, default in params.items():
        typ, sentence = docs.get(name, ("", ""))
        help_text = " ".join(p for p in (sentence, f"[{typ}]" if typ else "") if p)
        help_text = (help_text + f" (default: {default!r})").replace("%", "%%")
        kw = dict(dest=name, default=argparse.SUPPRESS, help=help_text)
        if isinstance(default, bool):
            group.add_argument(_flag(name), action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, (tuple, list)):
            group.add_argument(_flag(name), type=_parse_layers, metavar="N,N,...", **kw)
        else:
            group.add_argument(_flag(name), type=_parse_literal, metavar=name.upper(), **kw)
    return list(params)


def estimator_from_args(args, regression):
    """Build the estimator from the flags the user gave."""
    clf_cls, reg_cls = _estimator_classes()
    cls = reg_cls if regression else clf_cls
    accepted = {name for name, _ in _init_params(cls)}
    given = {k: v for k, v in vars(args).items() if k in args._estimator_params}
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise CLIError(f"{_flag(unknown[0])} does not apply to {cls.__name__}")
    est = cls(**given)
    try:
        est._validate_params()
    except AttributeError:  # pragma: no cover
        pass
    except (ValueError, TypeError) as exc:
        raise CLIError(_one_line(exc)) from None
    return est


# ==========================================================================
# per-epoch progress
# ==========================================================================
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
    """One status line per epoch: a live ``\\r``-updated line on a terminal, plain lines otherwise."""

    def __init__(self, max_iter, stream=None, holdout=None, scorer_name="score",
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

    def __call__(self, est):
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

    def close(self):
        if self.enabled and self.live and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


# ==========================================================================
# helpers
# ==========================================================================
class _NullStream:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def warm_up(est, sparse_input=False, stream=None):
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
        hidden_layer_sizes=(128,) * len(_as_tuple(est.hidden_layer_sizes)), max_iter=3,
        batch_size=32, n_workers=1, early_stopping=False, verbose=False, callback=None,
        importance_pruning=True, pruning_start=1, pruning_interval=1, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tiny.fit(X, y)
            tiny.predict(X)
            tiny.predict(X[:1])
        # Erdős–Rényi layers denser than 50 % sample the connections they leave out
        from ._topology import _sample_sorted_distinct
        _sample_sorted_distinct(8192, 6000, rng)
    except Exception:  # the real fit reports any problem with the settings
        return 0.0
    seconds = time.perf_counter() - t0
    if seconds > 2.0:
        print(f"{PROG}: compiled the numba kernels in {seconds:.0f} s (once after installing; "
              "cached on disk)", file=stream, flush=True)
    return seconds


def _one_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _fmt_int(n):
    return f"{int(n):,}"


def _dense_params(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _print_table(rows, headers, stream=None):
    stream = stream or sys.stdout
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]

    def fmt(r):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    print(fmt(headers), file=stream)
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|", file=stream)
    for r in cols[1:]:
        print(fmt(r), file=stream)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


# ==========================================================================
# demo
# ==========================================================================
_DEMO_SETS = ("digits", "breast_cancer", "wine", "madelon", "fashion")


def _demo_data(name, seed):
    from sklearn import datasets as skd
    from sklearn.model_selection import train_test_split

    from .datasets import make_fashion_like, make_madelon

    if name == "madelon":
        return make_madelon(random_state=seed)
    if name == "fashion":
        return make_fashion_like(3000, 1000, random_state=seed)
    loader = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer,
              "wine": skd.load_wine}[name]
    X, y = loader(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def cmd_demo(args):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    clf_cls, _ = _estimator_classes()
    X_tr, X_te, y_tr, y_te = _demo_data(args.dataset, args.random_state)
    scaler = StandardScaler().fit(X_tr)
    X_tr = scaler.transform(X_tr).astype(np.float32)
    X_te = scaler.transform(X_te).astype(np.float32)
    hidden = args.hidden_layer_sizes
    epochs = args.epochs
    print(f"{PROG} demo: {args.dataset} ({X_tr.shape[0]} train / {X_te.shape[0]} test samples, "
          f"{X_tr.shape[1]} features, {len(np.unique(y_tr))} classes); hidden layers "
          f"{','.join(map(str, hidden))}; {epochs} epochs; epsilon {args.epsilon}", flush=True)
    start = max(1, int(epochs * 0.25))
    models = [
        ("dense MLPClassifier (adam)",
         MLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs,
                       random_state=args.random_state)),
        ("sparse: SET + All-ReLU",
         clf_cls(hidden_layer_sizes=hidden, max_iter=epochs, epsilon=args.epsilon,
                 random_state=args.random_state)),
        ("sparse: SET + All-ReLU + importance pruning",
         clf_cls(hidden_layer_sizes=hidden, max_iter=epochs, epsilon=args.epsilon,
                 importance_pruning=True, pruning_start=start,
                 pruning_interval=max(1, epochs // 10), pruning_percentile=10.0,
                 random_state=args.random_state)),
    ]
    sizes_dense = [X_tr.shape[1], *hidden, len(np.unique(y_tr)) if len(np.unique(y_tr)) > 2 else 1]
    warm_up(models[1][1], stream=None if not args.quiet else _NullStream())  # fit times: no JIT
    results = []
    for label, model in models:
        curve = []
        sparse = not isinstance(model, MLPClassifier)
        progress = Progress(epochs, holdout=(X_te, y_te), scorer_name="acc",
                            enabled=not args.quiet)
        progress.stream.write(f"{label}\n") if not args.quiet else None
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if sparse:
                with epoch_callback(model, progress):
                    model.fit(X_tr, y_tr)
                curve = progress.holdout_curve
            else:
                model.fit(X_tr, y_tr)
        fit_time = time.perf_counter() - t0 - progress.overhead
        progress.close()
        acc = float(model.score(X_te, y_te))
        if sparse:
            conns = list(model.n_connections_)
            neurons = list(model.n_neurons_)
        else:
            conns = [c.size for c in model.coefs_]
            neurons = [X_tr.shape[1], *hidden, model.coefs_[-1].shape[1]]
        results.append(dict(label=label, accuracy=acc, fit_time=fit_time, connections=conns,
                             neurons=neurons, loss_curve=list(model.loss_curve_),
                             holdout_curve=list(curve), n_iter=int(model.n_iter_)))
    dense_total = _dense_params(sizes_dense)
    rows = []
    for r in results:
        total = sum(r["connections"])
        rows.append([r["label"], f"{r['accuracy']:.4f}", f"{r['fit_time']:.2f}",
                     _fmt_int(total), f"{100 * total / dense_total:.1f}%",
                     "-".join(map(str, r["neurons"][1:-1]))])
    print()
    _print_table(rows, ["model", "test accuracy", "fit time (s)", "weights (connections)",
                        "of dense", "hidden neurons"])
    print("\nweights = non-zero connections of all layers (biases excluded); hidden neurons "
          "= neurons left in each hidden layer after training.")
    if not args.no_plot:
        path = _demo_plot(results, args)
        print(f"plot saved to {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_json_safe(dict(dataset=args.dataset, hidden_layer_sizes=hidden,
                                      epochs=epochs, results=results)), f, indent=2)
        print(f"results saved to {args.json}")
    return 0


def _demo_plot(results, args):
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    colors = ["#444444", "#1f77b4", "#d62728"]
    ax = axes[0]
    for r, c in zip(results, colors):
        ax.plot(np.arange(1, len(r["loss_curve"]) + 1), r["loss_curve"], color=c,
                label=r["label"])
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax = axes[1]
    for r, c in zip(results[1:], colors[1:]):
        ax.plot(np.arange(1, len(r["holdout_curve"]) + 1), r["holdout_curve"], color=c,
                label=r["label"])
    ax.axhline(results[0]["accuracy"], color=colors[0], ls="--",
               label=f"{results[0]['label']} (final)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy per epoch (dashed: dense, final)")
    ax = axes[2]
    n_layers = len(results[0]["connections"])
    width = 0.8 / len(results)
    x = np.arange(n_layers)
    for i, (r, c) in enumerate(zip(results, colors)):
        ax.bar(x + (i - (len(results) - 1) / 2) * width, r["connections"], width, color=c,
               label=r["label"])
    ax.set_xticks(x, [f"layer {i + 1}\n{a}->{b}" for i, (a, b) in
                      enumerate(zip(results[0]["neurons"][:-1], results[0]["neurons"][1:]))])
    ax.set_ylabel("connections")
    ax.set_title("Connections per weight matrix")
    fig.suptitle(f"sksparse-mlp demo on {args.dataset}: truly sparse vs dense MLP")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(results), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "sksparse-mlp-demo.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ==========================================================================
# train
# ==========================================================================
def _classification_target(y, path, target):
    """Labels for classification; refuse a continuous target with a hint."""
    if y.dtype.kind == "f":
        if np.all(np.mod(y, 1) == 0):
            return y.astype(np.int64)
        n_unique = len(np.unique(y))
        raise CLIError(f"{path}: target {target or 'y'!r} has {n_unique} distinct non-integer "
                       "values; use --regression for a numeric target")
    return y


def _scaler_for(kind, X):
    import scipy.sparse as sp
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    if kind == "auto":
        kind = "maxabs" if sp.issparse(X) else "standard"
    if kind == "none":
        return None
    if kind == "standard" and sp.issparse(X):
        return StandardScaler(with_mean=False)
    return {"standard": StandardScaler, "minmax": MinMaxScaler, "maxabs": MaxAbsScaler}[kind]()


def _default_model_path(data_path):
    stem = os.path.splitext(os.path.basename(data_path))[0] or "model"
    return f"{stem}.sksparse.joblib"


def _metrics_path(model_path):
    base = model_path[:-7] if model_path.endswith(".joblib") else model_path
    return base + ".metrics.json"


def cmd_train(args):
    import joblib
    import scipy.sparse as sp
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, mean_absolute_error,
                                 mean_squared_error, r2_score)
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from .datasets import DataError, load_data

    est = estimator_from_args(args, args.regression)
    try:
        data = load_data(args.data, args.target, format=args.format)
    except DataError as exc:
        raise CLIError(str(exc)) from None
    X, y = data.X, data.y
    if y.ndim != 1:
        raise CLIError(f"{args.data}: the target must be one column, got shape {y.shape}")
    if args.regression:
        if y.dtype.kind not in "biuf":
            raise CLIError(f"{args.data}: --regression needs a numeric target, "
                           f"{data.target or 'y'!r} has values like {str(y[0])!r}")
        y = y.astype(np.float64)
    else:
        y = _classification_target(y, args.data, data.target)
    n = X.shape[0]
    if n < 2:
        raise CLIError(f"{args.data}: needs at least 2 samples, found {n}")
    if not args.regression and len(np.unique(y)) < 2:
        raise CLIError(f"{args.data}: the target has a single class ({str(y[0])!r}); "
                       "classification needs at least 2")

    seed = args.split_seed
    X_te = y_te = None
    if args.test_size > 0:
        n_test = int(math.ceil(args.test_size * n)) if args.test_size < 1 else int(args.test_size)
        if n_test >= n or n - n_test < 2:
            raise CLIError(f"{args.data}: --test-size {args.test_size} leaves too few training "
                           f"samples ({n} in all)")
        stratify = None
        if not args.regression:
            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= 2 and n_test >= len(counts):
                stratify = y
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=n_test, random_state=seed,
                                                  stratify=stratify)
    else:
        X_tr, y_tr = X, y

    scaler = _scaler_for(args.scale, X_tr)
    if scaler is not None:
        X_tr = scaler.fit_transform(X_tr)
        X_te = scaler.transform(X_te) if X_te is not None else None
    holdout = None
    if X_te is not None and not args.quiet:
        k = min(X_te.shape[0], 5000)
        holdout = (X_te[:k], y_te[:k])
    metric_name = "r2" if args.regression else "acc"
    max_iter = est.get_params()["max_iter"]
    kind = type(est).__name__
    shape = "-".join(str(s) for s in [X_tr.shape[1], *_as_tuple(est.hidden_layer_sizes)])
    print(f"training {kind} on {args.data}: {X_tr.shape[0]} train / "
          f"{0 if X_te is None else X_te.shape[0]} held-out samples, {X_tr.shape[1]} features"
          + ("" if args.regression else f", {len(np.unique(y))} classes")
          + f"; layers {shape}-out; max_iter {max_iter}", file=sys.stderr, flush=True)
    from scipy.sparse import issparse
    warm_up(est, sparse_input=issparse(X_tr), stream=None if not args.quiet else _NullStream())
    progress = Progress(max_iter, holdout=holdout, scorer_name=metric_name,
                        enabled=not args.quiet)
    t0 = time.perf_counter()
    converged = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            with epoch_callback(est, progress):
                est.fit(X_tr, y_tr)
            converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            for w in caught:
                if not issubclass(w.category, ConvergenceWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except KeyboardInterrupt:
        progress.close()
        raise CLIError("interrupted; no model saved", status=130) from None
    except (ValueError, TypeError, MemoryError, RuntimeError) as exc:
        progress.close()
        raise CLIError(f"training failed: {_one_line(exc)}", status=1) from None
    fit_time = time.perf_counter() - t0 - progress.overhead
    progress.close()

    metrics = dict(
        data=os.path.abspath(args.data), format=args.format, target=data.target,
        task="regression" if args.regression else "classification", estimator=kind,
        n_samples=int(n), n_train=int(X_tr.shape[0]),
        n_test=0 if X_te is None else int(X_te.shape[0]), n_features=int(X_tr.shape[1]),
        scale=args.scale, split_seed=seed, fit_time_s=fit_time, n_iter=int(est.n_iter_),
        converged=converged, final_loss=float(est.loss_),
        n_connections=list(map(int, est.n_connections_)),
        density=list(map(float, est.density_)), n_neurons=list(map(int, est.n_neurons_)),
        dense_parameters=_dense_params([X_tr.shape[1], *_as_tuple(est.hidden_layer_sizes),
                                        int(est.n_outputs_)]),
        params=est.get_params(), loss_curve=list(est.loss_curve_),
        validation_scores=est.validation_scores_, holdout_curve=progress.holdout_curve)
    if not args.regression:
        metrics["classes"] = est.classes_.tolist()
    summary = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred_tr = est.predict(X_tr)
        if args.regression:
            metrics["train"] = dict(r2=r2_score(y_tr, pred_tr))
        else:
            metrics["train"] = dict(accuracy=accuracy_score(y_tr, pred_tr))
        if X_te is not None:
            pred = est.predict(X_te)
            if args.regression:
                metrics["holdout"] = dict(r2=r2_score(y_te, pred),
                                          mae=mean_absolute_error(y_te, pred),
                                          rmse=float(np.sqrt(mean_squared_error(y_te, pred))))
            else:
                metrics["holdout"] = dict(accuracy=accuracy_score(y_te, pred),
                                          balanced_accuracy=balanced_accuracy_score(y_te, pred))
    for split in ("train", "holdout"):
        if split in metrics:
            summary.append(split + " " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items()))

    model = est if scaler is None else Pipeline([("scale", scaler), ("mlp", est)])
    bundle = dict(marker=MODEL_MARKER, version=MODEL_FORMAT_VERSION,
                  package_version=_package_version(), model=model,
                  task=metrics["task"], feature_names=data.feature_names, target=data.target,
                  n_features=int(X_tr.shape[1]), format=_resolved_format(data, args.format),
                  svmlight_zero_based=getattr(data, "zero_based", None),
                  sparse_input=bool(sp.issparse(X)))
    model_path = args.output or _default_model_path(args.data)
    metrics_path = args.metrics or _metrics_path(model_path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
        joblib.dump(bundle, model_path)
        with open(metrics_path, "w") as f:
            json.dump(_json_safe(metrics), f, indent=2)
    except OSError as exc:
        raise CLIError(f"cannot write {exc.filename or model_path}: {exc.strerror or exc}",
                       status=1) from None
    total = sum(metrics["n_connections"])
    print(f"done in {fit_time:.1f}s, {metrics['n_iter']} epochs"
          + ("" if converged else " (max_iter reached)") + f"; {' | '.join(summary)}")
    print(f"connections {total:,} ({100 * total / metrics['dense_parameters']:.1f}% of dense), "
          f"neurons per layer {'-'.join(map(str, metrics['n_neurons']))}")
    print(f"model saved to {model_path}\nmetrics saved to {metrics_path}")
    return 0


def _as_tuple(sizes):
    return (sizes,) if isinstance(sizes, (int, np.integer)) else tuple(sizes)


def _resolved_format(data, requested):
    if requested != "auto":
        return requested
    import scipy.sparse as sp

    if data.feature_names is not None:
        return "csv"
    return "svmlight" if sp.issparse(data.X) else "npz"


def _package_version():
    try:
        from . import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return None


# ==========================================================================
# predict
# ==========================================================================
def load_model(path):
    """Load a model file written by ``sksparse-mlp train``; CLIError if it is not one."""
    import joblib

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a model file")
    if os.path.getsize(path) == 0:
        raise CLIError(f"{path}: empty file, not a sksparse-mlp model")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bundle = joblib.load(path)
    except Exception:
        raise CLIError(f"{path}: not a sksparse-mlp model file (written by "
                       f"'{PROG} train')") from None
    if not isinstance(bundle, dict) or bundle.get("marker") != MODEL_MARKER:
        raise CLIError(f"{path}: not a sksparse-mlp model file (written by '{PROG} train')")
    if bundle.get("version", 0) > MODEL_FORMAT_VERSION:
        raise CLIError(f"{path}: model file format {bundle['version']} is newer than this "
                       f"{PROG} understands ({MODEL_FORMAT_VERSION}); upgrade sksparse_mlp")
    return bundle


def cmd_predict(args):
    from .datasets import DataError, load_data, load_svmlight

    bundle = load_model(args.model)
    model = bundle["model"]
    n_features = bundle["n_features"]
    try:
        fmt = args.format
        if fmt == "auto":
            from .datasets import _FORMATS, _check_file, _sniff

            _check_file(args.data)
            fmt = _FORMATS.get(os.path.splitext(args.data)[1].lower()) or _sniff(args.data)
        if fmt == "svmlight":
            zero_based = bundle.get("svmlight_zero_based")
            data = load_svmlight(args.data, n_features=n_features,
                                 zero_based="auto" if zero_based is None else zero_based)
        else:
            data = load_data(args.data, bundle.get("target"), format=fmt, require_target=False)
    except DataError as exc:
        raise CLIError(str(exc)) from None
    X = data.X
    names = bundle.get("feature_names")
    if names is not None and data.feature_names is not None:
        missing = [c for c in names if c not in data.feature_names]
        if missing:
            raise CLIError(f"{args.data}: missing feature column(s) the model was trained on: "
                           + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        order = [data.feature_names.index(c) for c in names]
        X = X[:, order]
    if X.shape[1] != n_features:
        raise CLIError(f"{args.data}: has {X.shape[1]} features, the model expects {n_features}")
    proba = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pred = model.predict(X)
            if args.proba:
                if bundle["task"] != "classification":
                    raise CLIError("--proba needs a classification model; this one is a regressor")
                proba = model.predict_proba(X)
        except CLIError:
            raise
        except (ValueError, TypeError) as exc:
            raise CLIError(f"prediction failed: {_one_line(exc)}", status=1) from None
    header = ["prediction"]
    columns = [pred]
    if proba is not None:
        classes = model.classes_ if hasattr(model, "classes_") else model[-1].classes_
        header += [f"proba_{c}" for c in classes]
        columns += [proba[:, j] for j in range(proba.shape[1])]
    out = sys.stdout if args.output in (None, "-") else None
    try:
        stream = out or open(args.output, "w", newline="")
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}", status=1) from None
    try:
        import csv

        w = csv.writer(stream, lineterminator="\n")
        w.writerow(header)
        for i in range(len(pred)):
            w.writerow([_fmt_cell(col[i]) for col in columns])
    finally:
        if out is None:
            stream.close()
    if data.y is not None:
        y = data.y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if bundle["task"] == "classification":
                if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
                    y = y.astype(np.int64)
                try:
                    score = float(np.mean(np.asarray(pred).astype(str) == np.asarray(y).astype(str)))
                    print(f"accuracy against column {data.target!r}: {score:.4f}", file=sys.stderr)
                except Exception:  # pragma: no cover
                    pass
            elif y.dtype.kind in "biuf":
                from sklearn.metrics import r2_score

                print(f"r2 against column {data.target!r}: {r2_score(y, pred):.4f}",
                      file=sys.stderr)
    if out is None:
        print(f"{len(pred)} predictions written to {args.output}", file=sys.stderr)
    return 0


def _fmt_cell(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


# ==========================================================================
# parser and entry point
# ==========================================================================
def build_parser(with_estimator_flags=True):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Truly sparse multilayer perceptrons (SET, All-ReLU, importance "
                    "pruning, WASAP-SGD) from the command line.",
        epilog=f"Start with '{PROG} demo'. Help on a command: '{PROG} COMMAND --help'.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="sparse vs dense on a built-in data set (no download)",
                          description="Train the sparse classifier (with and without "
                                      "importance pruning) and a dense MLPClassifier of the "
                                      "same shape on a built-in data set; print a table and "
                                      "save a plot.")
    demo.add_argument("--dataset", choices=_DEMO_SETS, default="digits",
                      help="built-in data set (default: digits)")
    demo.add_argument("--hidden-layer-sizes", type=_parse_layers, default=(256, 256),
                      metavar="N,N,...", help="hidden layers of all models (default: 256,256)")
    demo.add_argument("--epochs", type=int, default=40, help="maximum epochs (default: 40)")
    demo.add_argument("--epsilon", type=float, default=20,
                      help="Erdős–Rényi sparsity of the sparse models (default: 20)")
    demo.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    demo.add_argument("--output-dir", default=".", help="where the plot goes (default: .)")
    demo.add_argument("--no-plot", action="store_true", help="do not save a plot")
    demo.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    demo.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser(
        "train", help="train on a CSV / svmlight / .npz file",
        description="Train a truly sparse MLP on a data file, evaluate it on a held-out "
                    "split, save the model (joblib) and a metrics JSON.")
    train.add_argument("data", metavar="DATA",
                       help="CSV (header row, --target column), svmlight/libsvm "
                            "(.svm/.libsvm/.svmlight) or .npz with arrays X and y")
    train.add_argument("--target", "-t", help="name of the target column (CSV) or array (npz)")
    train.add_argument("--format", choices=("auto", "csv", "svmlight", "npz"), default="auto",
                       help="file format (default: auto = from the extension, else sniffed)")
    train.add_argument("--regression", action="store_true",
                       help="fit TrulySparseMLPRegressor (numeric target) instead of the classifier")
    train.add_argument("--test-size", type=float, default=0.2,
                       help="held-out fraction (or count if >= 1) for the evaluation; 0 = none "
                            "(default: 0.2)")
    train.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split (default: 0)")
    train.add_argument("--scale", choices=("auto", "standard", "minmax", "maxabs", "none"),
                       default="auto",
                       help="feature scaling fitted on the training split and saved with the "
                            "model (default: auto = standard for dense data, maxabs for sparse)")
    train.add_argument("--output", "-o", metavar="MODEL",
                       help="model file (default: <DATA name>.sksparse.joblib)")
    train.add_argument("--metrics", metavar="JSON",
                       help="metrics file (default: next to the model, .metrics.json)")
    train.add_argument("--quiet", "-q", action="store_true", help="no per-epoch progress line")
    params = add_estimator_flags(train) if with_estimator_flags else []
    train.set_defaults(func=cmd_train, _estimator_params=params)

    pred = sub.add_parser("predict", help="predict with a model saved by 'train'",
                          description="Write predictions of a saved model for a data file "
                                      "as CSV (a 'prediction' column, plus one probability "
                                      "column per class with --proba).")
    pred.add_argument("model", metavar="MODEL", help="model file written by 'train'")
    pred.add_argument("data", metavar="DATA",
                      help="data file in the training format; a target column, if present, "
                           "is ignored (and scored)")
    pred.add_argument("--proba", action="store_true", help="add class probabilities")
    pred.add_argument("--format", choices=("auto", "csv", "svmlight", "npz"), default="auto")
    pred.add_argument("--output", "-o", metavar="CSV", help="output file (default: stdout)")
    pred.set_defaults(func=cmd_predict)
    return parser


def main(argv=None):
    """Entry point of the ``sksparse-mlp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

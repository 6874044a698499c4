"""``sksparse-mlp train``: load a file, split, scale, fit with a progress line, save."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

from .. import config
from ._bundle import save_model
from ._flags import add_estimator_flags, estimator_from_args
from ._loaders import DataError, load_data
from ._progress import Progress, epoch_callback, warm_up
from ._util import CLIError, NullStream, as_tuple, dense_params, json_safe, one_line


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


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``train``: fit on the file, save the model and the metrics; 0 on success."""
    import scipy.sparse as sp
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline


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
        k = min(X_te.shape[0], config.PROGRESS_HOLDOUT_ROWS)
        holdout = (X_te[:k], y_te[:k])
    metric_name = "r2" if args.regression else "acc"
    max_iter = est.get_params()["max_iter"]
    kind = type(est).__name__
    shape = "-".join(str(s) for s in [X_tr.shape[1], *as_tuple(est.hidden_layer_sizes)])
    print(f"training {kind} on {args.data}: {X_tr.shape[0]} train / "
          f"{0 if X_te is None else X_te.shape[0]} held-out samples, {X_tr.shape[1]} features"
          + ("" if args.regression else f", {len(np.unique(y))} classes")
          + f"; layers {shape}-out; max_iter {max_iter}", file=sys.stderr, flush=True)
    from scipy.sparse import issparse
    warm_up(est, sparse_input=issparse(X_tr), stream=None if not args.quiet else NullStream())
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
        raise CLIError(f"training failed: {one_line(exc)}", status=1) from None
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
        dense_parameters=dense_params([X_tr.shape[1], *as_tuple(est.hidden_layer_sizes),
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
            scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items())
            summary.append(f"{split} {scores}")

    model = est if scaler is None else Pipeline([("scale", scaler), ("mlp", est)])
    model_path = args.output or _default_model_path(args.data)
    metrics_path = args.metrics or _metrics_path(model_path)
    save_model(model_path, model, metrics_path, json_safe(metrics),
               task=metrics["task"], feature_names=data.feature_names, target=data.target,
               n_features=int(X_tr.shape[1]), format=_resolved_format(data, args.format),
               svmlight_zero_based=getattr(data, "zero_based", None),
               sparse_input=bool(sp.issparse(X)))
    total = sum(metrics["n_connections"])
    print(f"done in {fit_time:.1f}s, {metrics['n_iter']} epochs"
          + ("" if converged else " (max_iter reached)") + f"; {' | '.join(summary)}")
    print(f"connections {total:,} ({100 * total / metrics['dense_parameters']:.1f}% of dense), "
          f"neurons per layer {'-'.join(map(str, metrics['n_neurons']))}")
    print(f"model saved to {model_path}\nmetrics saved to {metrics_path}")
    return 0


def _resolved_format(data, requested):
    if requested != "auto":
        return requested
    import scipy.sparse as sp

    if data.feature_names is not None:
        return "csv"
    return "svmlight" if sp.issparse(data.X) else "npz"


def add_command(sub, with_estimator_flags: bool = True) -> None:
    """Add the ``train`` sub-parser, with a flag per estimator parameter unless told not to."""
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
                       help="fit TrulySparseMLPRegressor (numeric target) instead of the "
                            "classifier")
    train.add_argument("--test-size", type=float, default=0.2,
                       help="held-out fraction (or count if >= 1) for the evaluation; 0 = none "
                            "(default: 0.2)")
    train.add_argument("--split-seed", type=int, default=0,
                       help="seed of the held-out split (default: 0)")
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

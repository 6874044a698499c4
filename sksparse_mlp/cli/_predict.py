"""``sksparse-mlp predict``: predictions of a saved model for a data file, as CSV."""
from __future__ import annotations

import argparse
import csv
import sys
import warnings

import numpy as np

from ._bundle import load_model
from ._loaders import DataError, load_data, load_svmlight, resolve_format
from ._util import CLIError, one_line


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``predict``: write the CSV of predictions (and probabilities); 0 on success."""
    bundle = load_model(args.model)
    model = bundle["model"]
    n_features = bundle["n_features"]
    try:
        fmt = resolve_format(args.data, args.format)
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
            raise CLIError(f"prediction failed: {one_line(exc)}", status=1) from None
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
                    same = np.asarray(pred).astype(str) == np.asarray(y).astype(str)
                    score = float(np.mean(same))
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


def add_command(sub) -> None:
    """Add the ``predict`` sub-parser."""
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

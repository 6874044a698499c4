"""``sksparse-mlp demo``: sparse vs dense on a built-in data set, a table and a plot."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from .._estimators import TrulySparseMLPClassifier
from ._flags import parse_layers
from ._progress import Progress, epoch_callback, warm_up
from ._util import PROG, NullStream, dense_params, fmt_int, json_safe, print_table

DEMO_SETS = ("digits", "breast_cancer", "wine", "madelon", "fashion")


def _demo_data(name, seed):
    from sklearn import datasets as skd
    from sklearn.model_selection import train_test_split

    from ..datasets import make_fashion_like, make_madelon

    if name == "madelon":
        return make_madelon(random_state=seed)
    if name == "fashion":
        return make_fashion_like(3000, 1000, random_state=seed)
    loader = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer,
              "wine": skd.load_wine}[name]
    X, y = loader(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``demo``: three models on one data set, a table, optionally a plot and JSON."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

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
         TrulySparseMLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs, epsilon=args.epsilon,
                 random_state=args.random_state)),
        ("sparse: SET + All-ReLU + importance pruning",
         TrulySparseMLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs, epsilon=args.epsilon,
                 importance_pruning=True, pruning_start=start,
                 pruning_interval=max(1, epochs // 10), pruning_percentile=10.0,
                 random_state=args.random_state)),
    ]
    sizes_dense = [X_tr.shape[1], *hidden, len(np.unique(y_tr)) if len(np.unique(y_tr)) > 2 else 1]
    warm_up(models[1][1], stream=None if not args.quiet else NullStream())  # fit times: no JIT
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
    dense_total = dense_params(sizes_dense)
    rows = []
    for r in results:
        total = sum(r["connections"])
        rows.append([r["label"], f"{r['accuracy']:.4f}", f"{r['fit_time']:.2f}",
                     fmt_int(total), f"{100 * total / dense_total:.1f}%",
                     "-".join(map(str, r["neurons"][1:-1]))])
    print()
    print_table(rows, ["model", "test accuracy", "fit time (s)", "weights (connections)",
                        "of dense", "hidden neurons"])
    print("\nweights = non-zero connections of all layers (biases excluded); hidden neurons "
          "= neurons left in each hidden layer after training.")
    if not args.no_plot:
        path = _demo_plot(results, args)
        print(f"plot saved to {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe(dict(dataset=args.dataset, hidden_layer_sizes=hidden,
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


def add_command(sub) -> None:
    """Add the ``demo`` sub-parser (it has no estimator flags)."""
    demo = sub.add_parser("demo", help="sparse vs dense on a built-in data set (no download)",
                          description="Train the sparse classifier (with and without "
                                      "importance pruning) and a dense MLPClassifier of the "
                                      "same shape on a built-in data set; print a table and "
                                      "save a plot.")
    demo.add_argument("--dataset", choices=DEMO_SETS, default="digits",
                      help="built-in data set (default: digits)")
    demo.add_argument("--hidden-layer-sizes", type=parse_layers, default=(256, 256),
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

"""Reproduce the comparisons of "Truly Sparse Neural Networks at Scale" at small scale.

Offline data only (nothing is downloaded):

* ``madelon``: Guyon's Madelon generator (500 features, 5 informative, 15
  redundant, 2000 train / 600 test), the paper's 500-400-100-400-2 network,
  ``epsilon=10``, batch 32, All-ReLU slope 0.5;
* ``fashion``: a Fashion-MNIST-shaped generated set (784 features in [0, 1],
  10 classes; 4000 train / 1000 test), 784-300-300-300-10 (the paper: three
  layers of 1000), ``epsilon=20``, batch 128, slope 0.6;
* ``digits``: scikit-learn's ``load_digits`` (1347 train / 450 test),
  64-256-256-10, ``epsilon=20``, slope 0.6.

Comparisons, each over several seeds (the data stay fixed, the seed drives
initialisation, SET, dropout and shuffling):

* All-ReLU versus ReLU (both with SET);
* SET (``zeta=0.3``) versus a static sparse topology (``zeta=0``) versus a
  dense ``MLPClassifier`` with the same layers and optimiser (SGD, momentum
  0.9, Nesterov, learning rate 0.01, same batch size and epochs, ReLU);
* with versus without importance pruning (10th percentile every ``E/10``
  epochs from 40 % of the epochs on);
* ``n_workers`` 1 versus 2 (WASAP-SGD over MPI; fashion only, skipped when
  mpi4py is missing).

Accuracy is the test accuracy after the last epoch (no early stopping, no
selection on the test set). The script writes a markdown table (mean ± std)
and the raw runs as JSON::

    python benchmarks/reproduce_paper.py                    # 5 seeds, ~6-10 minutes on 2 cores
    python benchmarks/reproduce_paper.py --quick            # 1 seed, a third of the epochs, ~1 min
    python benchmarks/reproduce_paper.py --seeds 5 --epoch-scale 4 --datasets madelon fashion

Both the sparse kernels (numba) and the dense baseline (BLAS) get the same
number of threads, ``--threads`` (default 1, which is also the fastest choice
for these small layers on a busy machine); the MPI workers inherit it.
"""
import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import sksparse_mlp
from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like, make_madelon

DATASETS = {
    "madelon": dict(title="Madelon-like", hidden=(400, 100, 400), epsilon=10, batch=32,
                    slope=0.5, epochs=100),
    "fashion": dict(title="Fashion-shaped", hidden=(300, 300, 300), epsilon=20, batch=128,
                    slope=0.6, epochs=50),
    "digits": dict(title="digits", hidden=(256, 256), epsilon=20, batch=128, slope=0.6,
                   epochs=60),
}

VARIANTS = {
    "allrelu": "All-ReLU, SET",
    "relu": "ReLU, SET",
    "static": "All-ReLU, static sparse (zeta=0)",
    "dense": "dense MLPClassifier (ReLU, SGD)",
    "pruning": "All-ReLU, SET + importance pruning",
    "workers2": "All-ReLU, SET, n_workers=2 (WASAP-SGD)",
}

# rows of the main table: (comparison, variant)
ROWS = [
    ("activation", "allrelu"), ("activation", "relu"),
    ("training", "allrelu"), ("training", "static"), ("training", "dense"),
    ("pruning", "allrelu"), ("pruning", "pruning"),
    ("parallel", "allrelu"), ("parallel", "workers2"),
]

# Reference figures (third-party runs of the authors' code, 500 epochs, full-size data)
PAPER = {
    "madelon": "All-ReLU (0.5) 67.5-68.2 %, ReLU 64.7-67.7 % (500-400-100-400-2, epsilon 10)",
    "fashion": "All-ReLU (0.6) 91.0-91.2 %, ReLU 90.5-91.0 % (784-1000-1000-1000-10, "
               "epsilon 20, Fashion-MNIST)",
}


def load(name, quick):
    if name == "madelon":
        X_tr, X_te, y_tr, y_te = make_madelon(random_state=0)
    elif name == "fashion":
        X_tr, X_te, y_tr, y_te = make_fashion_like(2000 if quick else 4000, 1000,
                                                   random_state=0)
    else:
        X, y = load_digits(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=0)
    if name != "fashion":  # fashion is already in [0, 1], like the paper's pixels
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return (X_tr.astype(np.float32), X_te.astype(np.float32), y_tr, y_te)


def make_model(variant, cfg, epochs, seed):
    common = dict(hidden_layer_sizes=cfg["hidden"], batch_size=cfg["batch"], max_iter=epochs,
                  n_iter_no_change=epochs + 1, learning_rate_init=0.01, momentum=0.9,
                  nesterovs_momentum=True, alpha=1e-4, random_state=seed)
    if variant == "dense":
        return MLPClassifier(solver="sgd", activation="relu", **common)
    sparse = dict(activation="allrelu", allrelu_slope=cfg["slope"], epsilon=cfg["epsilon"],
                  zeta=0.3, **common)
    if variant == "relu":
        sparse["activation"] = "relu"
    elif variant == "static":
        sparse["zeta"] = 0.0
    elif variant == "pruning":
        sparse.update(importance_pruning=True, pruning_start=max(1, int(0.4 * epochs)),
                      pruning_interval=max(1, epochs // 10), pruning_percentile=10.0)
    elif variant == "workers2":
        sparse.update(n_workers=2)
    return TrulySparseMLPClassifier(**sparse)


def run_one(name, variant, data, cfg, epochs, seed):
    X_tr, X_te, y_tr, y_te = data
    model = make_model(variant, cfg, epochs, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        model.fit(X_tr, y_tr)
        seconds = time.perf_counter() - t0
    acc = float(model.score(X_te, y_te))
    if variant == "dense":
        connections = int(sum(W.size for W in model.coefs_))
        neurons = [X_tr.shape[1], *cfg["hidden"], model.coefs_[-1].shape[1]]
    else:
        connections = int(sum(model.n_connections_))
        neurons = [int(n) for n in model.n_neurons_]
    return dict(dataset=name, variant=variant, seed=seed, accuracy=acc, fit_time=seconds,
                connections=connections, neurons=neurons, epochs=int(model.n_iter_))


def mpi_available():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def summarise(runs, names):
    """{(dataset, variant): dict of mean/std} over seeds."""
    out = {}
    for name in names:
        for variant in VARIANTS:
            sel = [r for r in runs if r["dataset"] == name and r["variant"] == variant]
            if not sel:
                continue
            acc = np.array([r["accuracy"] for r in sel])
            out[(name, variant)] = dict(
                n=len(sel), acc_mean=float(acc.mean()), acc_std=float(acc.std(ddof=0)),
                time_mean=float(np.mean([r["fit_time"] for r in sel])),
                connections=float(np.mean([r["connections"] for r in sel])),
                hidden=[float(np.mean([r["neurons"][i] for r in sel]))
                        for i in range(1, len(sel[0]["neurons"]) - 1)])
    return out


def markdown(summary, names, meta):
    lines = []
    head = "| comparison | variant | " + " | ".join(DATASETS[n]["title"] for n in names) + " |"
    lines += [head, "|---|---|" + "---:|" * len(names)]
    for comp, variant in ROWS:
        cells = []
        for n in names:
            s = summary.get((n, variant))
            if comp == "parallel" and (n, "workers2") not in summary:
                s = None
            cells.append(f"{s['acc_mean']:.3f} ± {s['acc_std']:.3f}" if s else "n/a")
        if all(c == "n/a" for c in cells):
            continue
        lines.append(f"| {comp} | {VARIANTS[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "Connections (weights), hidden neurons left and fit time (mean over seeds):", ""]
    lines += ["| variant | " + " | ".join(DATASETS[n]["title"] for n in names) + " |",
              "|---|" + "---:|" * len(names)]
    for variant in VARIANTS:
        cells = []
        for n in names:
            s = summary.get((n, variant))
            if not s:
                cells.append("n/a")
                continue
            hidden = "-".join(f"{h:.0f}" for h in s["hidden"])
            cells.append(f"{s['connections']:,.0f} w, {hidden} n, {s['time_mean']:.1f} s")
        if all(c == "n/a" for c in cells):
            continue
        lines.append(f"| {VARIANTS[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "Settings: " + "; ".join(
        f"{DATASETS[n]['title']}: {'-'.join(map(str, DATASETS[n]['hidden']))} hidden, "
        f"epsilon {DATASETS[n]['epsilon']}, batch {DATASETS[n]['batch']}, "
        f"slope {DATASETS[n]['slope']}, {meta['epochs'][n]} epochs" for n in names) + "."]
    lines += [f"Test accuracy after the last epoch, mean ± std over {meta['seeds']} seed(s) "
              f"(seeds {', '.join(map(str, meta['seed_values']))}); "
              f"{meta['machine']}; {meta['numba_threads']} numba / BLAS thread(s) per model; "
              f"total {meta['total_seconds'] / 60:.1f} min."]
    refs = [f"{DATASETS[n]['title']}: {PAPER[n]}" for n in names if n in PAPER]
    if refs:
        lines += ["Reference figures at full scale (SPEC §5, 500 epochs): " + "; ".join(refs)
                  + "."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (default: 5)")
    parser.add_argument("--epoch-scale", type=float, default=1.0,
                        help="multiply every data set's epochs (default: 1)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS),
                        default=list(DATASETS))
    parser.add_argument("--no-mpi", action="store_true", help="skip the n_workers=2 runs")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, a third of the epochs, smaller fashion set")
    parser.add_argument("--threads", type=int, default=1,
                        help="numba and BLAS threads for every model (default: 1; 0 = "
                             "the libraries' defaults)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results"),
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    scale = args.epoch_scale / (3 if args.quick else 1)
    names = args.datasets
    use_mpi = not args.no_mpi and mpi_available()
    if not use_mpi:
        print("n_workers=2 runs skipped (" + ("--no-mpi" if args.no_mpi else
              "mpi4py not installed: pip install 'sksparse_mlp[mpi]'") + ")", flush=True)
    import numba
    from threadpoolctl import threadpool_limits

    if args.threads > 0:
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)  # for the MPI workers
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        threadpool_limits(args.threads)
    numba_threads = numba.get_num_threads()

    start = time.perf_counter()
    runs, epochs_used = [], {}
    for name in names:
        cfg = DATASETS[name]
        epochs = max(2, int(round(cfg["epochs"] * scale)))
        epochs_used[name] = epochs
        data = load(name, args.quick)
        variants = ["allrelu", "relu", "static", "dense", "pruning"]
        if name == "fashion" and use_mpi:
            variants.append("workers2")
        # compile numba's kernels (or load them from the cache) outside the timings
        for variant in ("allrelu", "relu", "pruning"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make_model(variant, cfg, 2, 0).fit(data[0][:256], data[2][:256])
        for seed in range(seeds):
            for variant in variants:
                r = run_one(name, variant, data, cfg, epochs, seed)
                runs.append(r)
                print(f"[{time.perf_counter() - start:6.0f}s] {name:<8} seed {seed} "
                      f"{VARIANTS[variant]:<42} acc {r['accuracy']:.3f}  "
                      f"{r['fit_time']:5.1f}s  {r['connections']:>7,} w  "
                      f"neurons {'-'.join(map(str, r['neurons']))}", flush=True)

    meta = dict(seeds=seeds, seed_values=list(range(seeds)), epochs=epochs_used,
                numba_threads=numba_threads, total_seconds=time.perf_counter() - start,
                machine=f"{platform.machine()}, {os.cpu_count()} cores, "
                        f"Python {platform.python_version()}",
                versions=dict(sksparse_mlp=sksparse_mlp.__version__, numpy=np.__version__))
    summary = summarise(runs, names)
    md = markdown(summary, names, meta)
    os.makedirs(args.out, exist_ok=True)
    md_path = os.path.join(args.out, "reproduce_paper.md")
    json_path = os.path.join(args.out, "reproduce_paper.json")
    with open(md_path, "w") as f:
        f.write(md)
    with open(json_path, "w") as f:
        json.dump(dict(meta=meta, datasets={n: {k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in DATASETS[n].items()}
                                             for n in names},
                       summary={f"{n}/{v}": s for (n, v), s in summary.items()}, runs=runs),
                  f, indent=2)
    print()
    print(md)
    print(f"written: {md_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

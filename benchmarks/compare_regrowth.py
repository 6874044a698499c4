"""Gradient-guided versus random regrowth, and Adam versus SGD, on the reproduction sets.

The data sets, networks and settings of ``reproduce_paper.py`` (Madelon-like,
Fashion-shaped, digits; All-ReLU, SET with ``zeta=0.3``), each over several seeds:

* ``random``: SET's random regrowth (``regrow="pruned"``, the default), SGD;
* ``gradient``: ``regrow="gradient"`` (RigL-style, 4 candidates per connection), SGD;
* ``adam``, ``adam+gradient``: the same two with ``solver="adam"``
  (``learning_rate_init=0.001``, scikit-learn's default for Adam).

Test accuracy after the last epoch, mean ± std over the seeds, written to
``benchmarks/results/compare_regrowth.{md,json}``::

    python benchmarks/compare_regrowth.py              # 3 seeds
    python benchmarks/compare_regrowth.py --seeds 5 --datasets digits
"""
import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce_paper import DATASETS, load, make_model  # noqa: E402

VARIANTS = {
    "random": dict(),
    "gradient": dict(regrow="gradient"),
    "adam": dict(solver="adam", learning_rate_init=0.001),
    "adam+gradient": dict(solver="adam", learning_rate_init=0.001, regrow="gradient"),
}


def run(name, variant, data, cfg, epochs, seed):
    model = make_model("allrelu", cfg, epochs, seed).set_params(**VARIANTS[variant])
    X_tr, X_te, y_tr, y_te = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        model.fit(X_tr, y_tr)
        seconds = time.perf_counter() - t0
    return dict(dataset=name, variant=variant, seed=seed,
                accuracy=float(model.score(X_te, y_te)), final_loss=float(model.loss_),
                fit_time=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results"))
    args = parser.parse_args(argv)
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads)
    start = time.perf_counter()
    runs = []
    for name in args.datasets:
        cfg = DATASETS[name]
        data = load(name, False)
        for seed in range(args.seeds):
            for variant in VARIANTS:  # alternated: load drifts hit every variant alike
                r = run(name, variant, data, cfg, cfg["epochs"], seed)
                runs.append(r)
                print(f"[{time.perf_counter() - start:6.0f}s] {name:<8} seed {seed} "
                      f"{variant:<14} acc {r['accuracy']:.3f} loss {r['final_loss']:.4f} "
                      f"{r['fit_time']:5.1f}s", flush=True)
    lines = ["| variant | " + " | ".join(DATASETS[n]["title"] for n in args.datasets) + " |",
             "|---|" + "---:|" * len(args.datasets)]
    summary = {}
    for variant in VARIANTS:
        cells = []
        for n in args.datasets:
            acc = np.array([r["accuracy"] for r in runs
                            if r["dataset"] == n and r["variant"] == variant])
            t = np.mean([r["fit_time"] for r in runs
                         if r["dataset"] == n and r["variant"] == variant])
            summary[f"{n}/{variant}"] = dict(acc_mean=float(acc.mean()), acc_std=float(acc.std()),
                                             time_mean=float(t))
            cells.append(f"{acc.mean():.3f} ± {acc.std():.3f} ({t:.1f} s)")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    total = time.perf_counter() - start
    epochs = ", ".join("%s: %d epochs" % (n, DATASETS[n]["epochs"]) for n in args.datasets)
    lines += ["", f"Test accuracy after the last epoch, mean ± std over {args.seeds} seeds "
              f"(0..{args.seeds - 1}), mean fit time in brackets; settings of reproduce_paper.py "
              f"({epochs}); "
              f"{platform.machine()}, {os.cpu_count()} cores (shared), {args.threads} thread(s); "
              f"total {total / 60:.1f} min."]
    md = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compare_regrowth.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "compare_regrowth.json"), "w") as f:
        json.dump(dict(summary=summary, runs=runs, seeds=args.seeds, total_seconds=total), f,
                  indent=2)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

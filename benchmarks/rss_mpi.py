"""Memory of the caller over many ``n_workers=2`` fits in a row (issue 10, item 8).

One process fits the same small classifier ``--fits`` times with ``n_workers=2`` and
records its resident set size (``VmRSS``) and open file descriptors after every fit. The
first fit loads numpy, scipy, numba and the kernels, so growth is counted from the end
of the second fit: a leak per fit (0.3 MB per fit before the MPI world moved into a
helper process) shows as a slope, noise as a wobble around a flat line.

Usage::

    python benchmarks/rss_mpi.py [--fits 20] [--out benchmarks/results/rss_mpi.json]
"""
import argparse
import gc
import json
import os
import time

import numpy as np


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fits", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from sksparse_mlp import TrulySparseMLPClassifier
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 8))
    y = (X[:, 0] > 0).astype(int)
    rows = []
    for i in range(args.fits):
        t0 = time.perf_counter()
        clf = TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=i,
                                       n_workers=2, worker_timeout=60.0).fit(X, y)
        del clf
        gc.collect()
        rows.append({"fit": i + 1, "s": round(time.perf_counter() - t0, 2),
                     "rss_mb": round(rss_mb(), 2), "fds": len(os.listdir("/proc/self/fd"))})
        print(rows[-1], flush=True)
    base = rows[1] if len(rows) > 1 else rows[0]
    tail = rows[1:]
    slope = float(np.polyfit([r["fit"] for r in tail], [r["rss_mb"] for r in tail], 1)[0]) \
        if len(tail) > 2 else float("nan")
    summary = {"fits": args.fits, "rss_after_fit_1_mb": rows[0]["rss_mb"],
               "rss_after_fit_2_mb": base["rss_mb"], "rss_last_mb": rows[-1]["rss_mb"],
               "growth_2_to_last_mb": round(rows[-1]["rss_mb"] - base["rss_mb"], 2),
               "slope_mb_per_fit": round(slope, 4),
               "fds_first_last": [rows[0]["fds"], rows[-1]["fds"]]}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

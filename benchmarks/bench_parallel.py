"""WASAP-SGD benchmark: n_workers=1 versus 2 on this machine.

Measures, in one run:

1. time to a target test accuracy with ``n_workers=1`` (local optimizer) and with
   ``n_workers=2`` in "async" and "sync" mode (wall clock from the start of ``fit``,
   spawn included, the benchmark's own per-epoch evaluation excluded);
2. the spawn + shutdown overhead of a pool of 2 workers (first pool in the process, which
   also starts MPICH's launcher, and later pools), and the full fixed cost of a fit
   (spawn, worker set-up with data shards and model, shutdown);
3. the share of time spent communicating: per worker, time waiting for the server or in
   MPI calls over (that + gradient computation); at the server, time in MPI waits over
   the training time.

Usage: python benchmarks/bench_parallel.py [--quick] [--epochs N] [--hidden 1000,1000,1000]
Writes a JSON summary to benchmarks/results/bench_parallel.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def _pool_overhead(reps):
    from sksparse_mlp.parallel import _pool
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with _pool.Pool(2, timeout=60) as pool:
            t1 = time.perf_counter()
            for r in range(2):
                pool.send(("ping", r), r)
            for r in range(2):
                pool.recv(r)
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        out.append({"spawn_s": t1 - t0, "ping_s": t2 - t1, "close_s": t3 - t2, "total_s": t3 - t0})
    return out


def _run(Est, params, Xtr, ytr, Xte, yte):
    from sksparse_mlp.parallel import _testing
    clf = Est(**params)
    trace = []
    state = {"eval_s": 0.0}
    t_start = [None]

    def record(est):      # test accuracy per epoch; its own time is not counted
        t0 = time.perf_counter()
        acc = float(np.mean(est._decode(est.network_.predict_output(Xte)) == yte))
        t1 = time.perf_counter()
        trace.append({"epoch": est.n_iter_, "t": t0 - t_start[0] - state["eval_s"],
                      "loss": float(est.loss_), "acc": acc})
        state["eval_s"] += t1 - t0

    clf.set_params(callback=record)
    _testing.last_stats.clear()
    t_start[0] = time.perf_counter()
    clf.fit(Xtr, ytr)
    wall = time.perf_counter() - t_start[0] - state["eval_s"]
    clf.set_params(callback=None)
    return {"wall_s": wall, "trace": trace, "final_acc": float(clf.score(Xte, yte)),
            "stats": dict(_testing.last_stats), "n_connections": clf.n_connections_}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small problem (smoke test)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--hidden", default=None, help="hidden layer sizes, e.g. 1000,1000,1000")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.005, help="learning_rate_init")
    ap.add_argument("--target", type=float, default=None,
                    help="target test accuracy (default: 0.97 x best of n_workers=1)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "bench_parallel.json"))
    args = ap.parse_args(argv)

    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.datasets import make_fashion_like

    quick = args.quick
    n_train = args.n_train or (1500 if quick else 6000)
    hidden = args.hidden or ("100,100" if quick else "1000,1000,1000")
    hidden = tuple(int(h) for h in hidden.split(","))
    epochs = args.epochs or (4 if quick else 20)
    Xtr, Xte, ytr, yte = make_fashion_like(n_train, 1000, random_state=0)
    print("data: %d x %d train, %d test; network 784-%s-10, epsilon 20, batch 128, lr %g, "
          "%d epochs; %d cores, load average %.1f" % (
              Xtr.shape[0], Xtr.shape[1], Xte.shape[0], "-".join(map(str, hidden)), args.lr,
              epochs, len(os.sched_getaffinity(0)), os.getloadavg()[0]), flush=True)
    base = dict(hidden_layer_sizes=hidden, epsilon=20, max_iter=epochs, random_state=0,
                learning_rate_init=args.lr,
                worker_timeout=300, tol=0.0, n_iter_no_change=10 ** 6)

    # warm the numba cache (and the kernels) before timing anything
    TrulySparseMLPClassifier(**dict(base, max_iter=1)).fit(Xtr[:256], ytr[:256])

    results = {"config": {"n_train": int(n_train), "hidden": hidden, "epochs": epochs,
                          "lr": args.lr, "cores": len(os.sched_getaffinity(0)),
                          "loadavg_start": os.getloadavg()}}
    print("\n[1] spawn + shutdown of a pool of 2 workers", flush=True)
    pools = _pool_overhead(1 if quick else 5)
    results["pool"] = pools
    for i, p in enumerate(pools):
        print("  pool %d: spawn %.3f s, ping %.4f s, close %.3f s, total %.3f s"
              % (i + 1, p["spawn_s"], p["ping_s"], p["close_s"], p["total_s"]), flush=True)

    print("\n[2] training", flush=True)
    runs = {}
    for name, extra in [("n_workers=1", {}),
                        ("n_workers=2 async", {"n_workers": 2, "worker_mode": "async"}),
                        ("n_workers=2 sync", {"n_workers": 2, "worker_mode": "sync"})]:
        r = _run(TrulySparseMLPClassifier, dict(base, **extra), Xtr, ytr, Xte, yte)
        runs[name] = r
        print("  %-18s wall %.2f s, final test accuracy %.4f, best %.4f"
              % (name, r["wall_s"], r["final_acc"], max(t["acc"] for t in r["trace"])), flush=True)
    target = args.target or round(0.97 * max(t["acc"] for t in runs["n_workers=1"]["trace"]), 4)
    results["target_acc"] = target
    print("\n  time to test accuracy >= %.4f:" % target)
    for name, r in runs.items():
        hit = next((t for t in r["trace"] if t["acc"] >= target), None)
        r["time_to_target_s"] = None if hit is None else hit["t"]
        r["epochs_to_target"] = None if hit is None else hit["epoch"]
        print("  %-18s %s" % (name, "not reached" if hit is None else
                              "%.2f s (epoch %d)" % (hit["t"], hit["epoch"])))
    results["runs"] = runs

    print("\n[3] fixed cost and communication share (2 workers)")
    for name in ("n_workers=2 async", "n_workers=2 sync"):
        st = runs[name]["stats"]
        ws = st["workers"]
        train = max(st["train_s"], 1e-9)
        comm = [w["comm_s"] / train for w in ws]
        idle = [1 - (w["compute_s"] + w["comm_s"]) / train for w in ws]
        st["worker_comm_share"] = comm
        st["worker_other_share"] = idle
        st["server_wait_share"] = st["server_wait_s"] / train
        print("  %-18s spawn %.2f s, set-up (data shards + model to workers) %.2f s, "
              "close %.3f s, training %.2f s" % (name, st["spawn_s"], st["setup_s"],
                                                 st["close_s"], st["train_s"]))
        compute = [w["compute_s"] / train for w in ws]
        print("  %-18s of the training time, each worker spent %s computing, %s in MPI "
              "(sending, waiting for the server's reply), %s otherwise (waiting for the "
              "phase-2 merge, overheads);" % ("", *(", ".join("%.0f%%" % (100 * c) for c in part)
                                                   for part in (compute, comm, idle))))
        print("  %-18s the server spent %.0f%% in MPI waits, %.0f%% computing; %.1f MB sent, "
              "%.1f MB received" % ("", 100 * st["server_wait_share"],
                                    100 * st["server_compute_s"] / train,
                                    st["bytes_out"] / 1e6, st["bytes_in"] / 1e6))
    results["config"]["loadavg_end"] = os.getloadavg()
    print("load average (1, 5, 15 min) at the end: %.1f %.1f %.1f" % os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=float)
    print("\nwrote", args.out)


if __name__ == "__main__":
    sys.exit(main())

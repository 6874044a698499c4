#!/usr/bin/env python
"""The record run: a network with 30 million hidden neurons, trained with SET.

Usage (from the repository root)::

    python benchmarks/record.py                     # 3 x 10 M hidden neurons, epsilon 2
    python benchmarks/record.py --hidden 3400000 --epsilon 20   # the previous record
    python benchmarks/record.py --hidden 300000     # a quick rehearsal

Trains ``TrulySparseMLPClassifier`` on the lung-shaped generated set (203 samples x
3312 features, standardised, 5 classes) with ``fit(max_iter=2)``: Erdős–Rényi
initialisation, one epoch, SET evolution (prune and regrow), a second full epoch
(forward, backward, update).
Nothing is special-cased: the same estimator and defaults as any user, except the
architecture and epsilon.  Times of initialisation, epochs and
evolution are taken by wrapping the library's functions.  Peak memory is measured
from outside: the script runs the fit in a child process and takes the kernel's
maximum resident set size of that child (``wait4``); the child also samples its own
resident size to tell which phase reached it, and notes the resident size just before
the fit and the engine's memory plan (micro-batch, gradient buffers, CSC views) so that
the peak can be set against weights + index + optimizer state + the activations of the
micro-batch used.  Writes
``benchmarks/results/record.json``.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=10_000_000)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128, help="batch_size")
    ap.add_argument("--lr", type=float, default=0.01,
                    help="learning_rate_init (the estimator's default)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "record.json"))
    ap.add_argument("--no-csc-views", action="store_true",
                    help="config.CSC_VIEWS = False: the forward pass scatters from CSR (leanest)")
    ap.add_argument("--activation-budget", type=float, default=None, metavar="GIB",
                    help="config.ACTIVATION_BUDGET in GiB (default: the engine's)")
    ap.add_argument("--micro", type=int, default=None, metavar="N",
                    help="set config.ACTIVATION_BUDGET to the activations of N samples")
    ap.add_argument("--no-score", action="store_true",
                    help="skip predicting the training set after the fit")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.child:
        return measure_child(args, argv)

    from sksparse_mlp import (
        TrulySparseMLPClassifier,
        _base,
        _fastpath,
        _training,
        _workspace,
        config,
    )
    if args.no_csc_views:
        config.CSC_VIEWS = False
    if args.activation_budget:
        config.ACTIVATION_BUDGET = int(args.activation_budget * 2 ** 30)
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    from sksparse_mlp.datasets import make_lung_like

    log = []
    phase = ["start"]
    t0 = time.perf_counter()

    def note(msg):
        line = f"[{time.perf_counter() - t0:8.1f} s, RSS {rss() / 2 ** 30:6.2f} GiB] {msg}"
        print(line, flush=True)
        log.append(line)

    # sample the resident set size to know which phase reaches the peak
    peaks = {}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            r = rss()
            if r > peaks.get(phase[0], 0):
                peaks[phase[0]] = r
            time.sleep(0.2)

    threading.Thread(target=sampler, daemon=True).start()

    # wrap the library's phases with timers (no change to what they do)
    timings = {"epoch": [], "evolution": [], "init": []}
    cpu = {}  # CPU seconds of all threads: less dependent on a busy machine than wall time

    def wrap(module, name, key, label):
        orig = getattr(module, name)

        def timed(*a, **k):
            phase[0] = label
            note(f"{label} ...")
            t, c = time.perf_counter(), time.process_time()
            out = orig(*a, **k)
            timings[key].append(time.perf_counter() - t)
            cpu.setdefault(key, []).append(time.process_time() - c)
            note(f"{label} done in {timings[key][-1]:.1f} s")
            phase[0] = "other"
            return out
        setattr(module, name, timed)

    wrap(_fastpath, "run_epoch", "epoch", "epoch (forward, backward, update)")
    # the engine's memory plan of every training workspace (the largest is kept)
    plans = []
    orig_ws = _workspace.Workspace.__init__

    def workspace(ws, *a, **k):
        orig_ws(ws, *a, **k)
        if ws.training:
            plans.append(dict(ws.plan, micro=ws.micro, lean=ws.lean))
    _workspace.Workspace.__init__ = workspace
    wrap(_training, "evolve_topology", "evolution", "SET evolution")
    orig_new = _base._BaseTrulySparseMLP._new_network

    def new_network(self, *a, **k):
        phase[0] = "initialisation"
        note("Erdős–Rényi initialisation ...")
        t = time.perf_counter()
        net = orig_new(self, *a, **k)
        timings["init"].append(time.perf_counter() - t)
        if args.micro:  # bytes per sample from the engine's own plan
            per_sample = _workspace.Workspace(net, 1, available=float("inf")).plan["per_sample"]
            config.ACTIVATION_BUDGET = args.micro * per_sample
        note(f"initialisation done in {timings['init'][-1]:.1f} s: {sum(net.n_connections):,} "
             f"connections")
        phase[0] = "other"
        return net
    _base._BaseTrulySparseMLP._new_network = new_network

    X, y = make_lung_like(random_state=0)[:2]
    X = StandardScaler().fit_transform(X).astype(np.float32)  # log-expression values: centre
    classes = np.unique(y)
    note(f"data {X.shape} (standardised), {len(classes)} classes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # compile and load every code path on a tiny network first: the resident
        # size before the fit then holds the runtime, not the model
        tiny = TrulySparseMLPClassifier((64,) * 3, epsilon=2, max_iter=2, random_state=0).fit(X, y)
        tiny.score(X, y)
        del tiny
    for v in (plans, log, cpu, *timings.values()):
        v.clear()
    peaks.clear()
    rss_before = rss()
    note("runtime loaded")
    clf = TrulySparseMLPClassifier((args.hidden,) * args.layers, epsilon=args.epsilon,
                                   max_iter=args.epochs, learning_rate_init=args.lr,
                                   batch_size=args.batch, random_state=0, dtype="float32",
                                   verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        clf.fit(X, y)  # fit, not partial_fit: warm-start calls copy the model first
        calls = [time.perf_counter() - t]
        note(f"fit: {calls[-1]:.1f} s, loss curve {[round(v, 4) for v in clf.loss_curve_]}")
    acc = data_loss = None
    if not args.no_score:
        # the loss curve includes the L2 penalty 0.5 * alpha * ||W||^2 / batch, which grows
        # with the number of neurons (He-initialised layers: ||W||^2 ~ 2 per neuron)
        P = clf.predict_proba(X)
        acc = float(np.mean(clf.classes_[P.argmax(axis=1)] == y))
        data_loss = float(log_loss(y, P, labels=clf.classes_))
        note(f"training accuracy {acc:.3f}, training log-loss (no penalty) {data_loss:.4f}")
    stop.set()
    net = clf.network_
    res = {
        "hidden_layer_sizes": [args.hidden] * args.layers,
        "hidden_neurons": int(sum(net.n_neurons[1:-1])),
        "neurons_total": int(sum(net.n_neurons)),
        "connections": int(sum(net.n_connections)),
        "connections_per_layer": list(map(int, net.n_connections)),
        "epsilon": args.epsilon, "csc_views": config.CSC_VIEWS,
        "activation_budget": config.ACTIVATION_BUDGET or _workspace.DEFAULT_ACTIVATION_BUDGET,
        "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
        "batch_size": args.batch, "epochs": args.epochs,
        "init_s": timings["init"], "epoch_s": timings["epoch"], "evolution_s": timings["evolution"],
        "epoch_cpu_s": cpu.get("epoch", []), "evolution_cpu_s": cpu.get("evolution", []),
        "load_average": os.getloadavg(),
        "fit_s": calls[0], "learning_rate_init": args.lr,
        "loss_curve": list(map(float, clf.loss_curve_)),
        "training_accuracy": acc, "training_log_loss": data_loss, "alpha": clf.alpha,
        "peak_rss_inside_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_fit_bytes": rss_before,
        "peak_rss_by_phase_bytes": peaks,
        # weights + index + optimizer state (values, indices, index pointers, velocity, biases)
        "weights_state_bytes": int(net.nbytes),
        # the training workspace with the most activation bytes (micro-batch, buffers, views)
        "memory_plan": max(plans, key=lambda p: p["activations"]),
        "machine_memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "cores": len(os.sched_getaffinity(0)),
        "log": log,
    }
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    return 0


def measure_child(args, argv):
    """Run the fit in a child process; its peak resident size comes from the kernel."""
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--child"] + list(
        sys.argv[1:] if argv is None else argv)
    child = subprocess.Popen(cmd)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:
        child.kill()
        child.wait()
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        return child.returncode
    with open(args.out) as fh:
        res = json.load(fh)
    res["peak_rss_bytes"] = usage.ru_maxrss * 1024  # Linux: kilobytes
    plan = res["memory_plan"]
    model = res["weights_state_bytes"] + plan["activations"]
    res["model_and_micro_batch_bytes"] = model
    res["peak_over_model"] = (res["peak_rss_bytes"] - res["rss_before_fit_bytes"]) / model
    res["ns_per_connection_sample"] = (min(res["epoch_s"]) / res["connections"]
                                       / res["n_samples"] * 1e9)
    res["cpu_ns_per_connection_sample"] = (min(res["epoch_cpu_s"]) / res["connections"]
                                           / res["n_samples"] * 1e9)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"peak RSS {res['peak_rss_bytes'] / 2 ** 30:.2f} GiB (measured from outside), "
          f"{res['rss_before_fit_bytes'] / 2 ** 30:.2f} GiB before the fit; (peak - before) / "
          f"(weights + index + optimizer state {res['weights_state_bytes'] / 2 ** 30:.2f} GiB + "
          f"micro-batch activations {plan['activations'] / 2 ** 30:.2f} GiB) = "
          f"{res['peak_over_model']:.3f}; {res['ns_per_connection_sample']:.2f} ns per "
          f"connection and sample ({res['cpu_ns_per_connection_sample']:.2f} CPU ns); wrote "
          f"{args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

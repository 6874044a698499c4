"""WASAP-SGD at cluster scale: measured on this machine, modelled for 1 to 64 workers.

Measured (``measure``), for ``n_workers`` = 2, 4 and 8 in every phase-1 mode (the
workers oversubscribe the cores: wall times mean nothing, CPU times and bytes do):

* bytes per update and per epoch, both directions, counted by the server (the pool's
  byte counters over the phase-1 loop: gradients in, replies out, structures re-sent
  after SET; ``tests/test_wasap_traffic.py`` checks them against the wire format);
* server time per update (from a gradient's arrival to the replies posted, epoch ends
  apart; CPU seconds of the helper process) and SET evolution per epoch at the server;
* worker compute per batch (forward, backward and gradient of one batch; CPU seconds,
  one numba thread per worker), also measured in this process without MPI;
* statistical efficiency: epochs until the test accuracy of local training
  (``n_workers=1``) is reached, on the Fashion-shaped set with the benchmark network
  (784-1000-1000-1000-10, epsilon 20, batch 128) and on the Madelon-like set
  (500-400-100-400-2, epsilon 10, batch 32). Phase 1 only (``phase1_fraction=1``):
  the parameter-server phase is what the cluster model is about.

Modelled (``model``): time to that accuracy for 1 to 64 workers on 10 and 100 Gb/s links,
for the benchmark network and a 100 M-connection one; the formula is in
``benchmarks/README.md`` ("WASAP-SGD at cluster scale") and in :func:`predict`.

Usage::

    nice -n 19 python benchmarks/wasap_scaling.py            # about 20 minutes here
    python benchmarks/wasap_scaling.py --quick                # smoke test
    python benchmarks/wasap_scaling.py --model-only           # re-model the saved JSON

Writes ``results/wasap_scaling.json``, ``results/wasap_scaling.md`` and
``results/wasap_model.png``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

WORKERS = (2, 4, 8)
MODES = ("async", "sync", "allreduce")
DATASETS = {
    "fashion": dict(title="Fashion-shaped", hidden=(1000, 1000, 1000), epsilon=20, batch=128,
                    slope=0.6, n_train=4000, n_test=1000, epochs=10),
    "madelon": dict(title="Madelon-like", hidden=(400, 100, 400), epsilon=10, batch=32,
                    slope=0.5, n_train=2000, n_test=600, epochs=20),
}
TARGET_MARGIN = 0.01    # target = best local test accuracy - 1 point (one seed is noisy)
EPOCH_CAP = 2.0         # parallel runs stop at EPOCH_CAP x the local epochs

# the cluster model's fixed assumptions (not measured here)
LINKS = {"10 Gb/s": dict(bandwidth=10e9 / 8, latency=10e-6),
         "100 Gb/s": dict(bandwidth=100e9 / 8, latency=2e-6)}
MODEL_WORKERS = (1, 2, 4, 8, 16, 32, 64)
N_TRAIN_MODEL = 60000   # samples per epoch in the model (Fashion-MNIST's training set)
BIG_CONNECTIONS = 100_000_000


# ====================================================================== measurement
def load(name, quick):
    from sklearn.preprocessing import StandardScaler

    from sksparse_mlp.datasets import make_fashion_like, make_madelon
    cfg = DATASETS[name]
    n_train = cfg["n_train"] // (4 if quick else 1)
    if name == "madelon":
        X_tr, X_te, y_tr, y_te = make_madelon(n_train, cfg["n_test"], random_state=0)
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    else:
        X_tr, X_te, y_tr, y_te = make_fashion_like(n_train, cfg["n_test"], random_state=0)
    return X_tr.astype(np.float32), X_te.astype(np.float32), y_tr, y_te


def params(name, epochs, **extra):
    cfg = DATASETS[name]
    p = dict(hidden_layer_sizes=cfg["hidden"], epsilon=cfg["epsilon"],
             batch_size=cfg["batch"], allrelu_slope=cfg["slope"], max_iter=epochs,
             random_state=0, tol=0.0, n_iter_no_change=10 ** 6, worker_timeout=300,
             phase1_fraction=1.0)
    p.update(extra)
    return p


def run_fit(name, data, epochs, target=None, **extra):
    """One fit with the test accuracy after every epoch; stops at ``target``."""
    import warnings

    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _testing
    X_tr, X_te, y_tr, y_te = data
    accs = []

    def record(est):
        acc = float(np.mean(est._decode(est.network_.predict_output(X_te)) == y_te))
        accs.append(acc)
        return target is not None and acc >= target

    clf = TrulySparseMLPClassifier(**params(name, epochs, callback=record, **extra))
    _testing.last_stats.clear()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X_tr, y_tr)
    wall = time.perf_counter() - t0
    stats = dict(_testing.last_stats)
    return clf, {"acc": accs, "wall_s": wall, "stats": stats}


def kernel_times(clf, X, reps):
    """CPU seconds per batch on one numba thread, in this process: the worker's gradient
    (forward + backward + SDDMM), a local training step (the same + the momentum step)
    and the server's step alone."""
    import numba

    from sksparse_mlp._network import _normalised_weights, train_step
    net, opt, config = clf.network_, clf._optimizer, clf._training_config()
    B = clf.batch_size
    rng = np.random.default_rng(0)
    Y = np.zeros((B, net.layers[-1].n_out), dtype=net.dtype)
    Y[np.arange(B), rng.integers(0, Y.shape[1], B)] = 1
    Xb = np.ascontiguousarray(X[:B])
    w, total = _normalised_weights(None, B, net.dtype)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    out = {"grad": [], "step": [], "apply": []}
    try:
        for _ in range(reps):
            c0 = time.process_time()
            _, grads = net.loss_and_gradients(Xb, Y, w, config.dropout, rng)
            c1 = time.process_time()
            net.apply_gradients(grads, opt, config.alpha / total)
            c2 = time.process_time()
            train_step(net, Xb, Y, None, opt, config, rng)
            c3 = time.process_time()
            out["grad"].append(c1 - c0)
            out["apply"].append(c2 - c1)
            out["step"].append(c3 - c2)
    finally:
        numba.set_num_threads(saved)
    return {k: {"best": min(v), "median": float(np.median(v))} for k, v in out.items()}


def summarise(stats, res):
    """The model's inputs from one run's statistics (phase 1 only), and the check that
    the bytes counted are those of the wire format: every gradient received is answered,
    the last answer to each worker is an END header, a worker whose topology is old gets
    the structure too."""
    from sksparse_mlp.parallel import _protocol as P
    g, steps, epochs = stats["phase1_gradients"], stats["phase1_steps"], stats["epochs"]
    workers = stats["workers"]
    nv, rcv, W = res["n_values"], stats["phase1_received"], stats["n_workers"]
    if stats["mode"] != "allreduce":   # there the gradients never reach the server
        expect_in = rcv * P.gradient_bytes(nv, 4)
        expect_out = (rcv * P.reply_bytes(0, 4) + (rcv - W) * 4 * nv
                      + stats["phase1_structure_replies"] * P.structure_bytes(res["shapes"]))
        if (expect_in, expect_out) != (stats["phase1_bytes_in"], stats["phase1_bytes_out"]):
            raise RuntimeError("bytes counted %s differ from the wire format's %s" % (
                (stats["phase1_bytes_in"], stats["phase1_bytes_out"]), (expect_in, expect_out)))
        rcv = max(rcv, 1)
    else:
        rcv = g
    return {
        "worker_step_cpu_per_batch_s": sum(w.get("step_cpu_s", 0.0) for w in workers)
                                        / sum(w["steps"] for w in workers),
        "epochs": epochs, "gradients": g, "steps": steps,
        "bytes_in_per_update": stats["phase1_bytes_in"] / rcv,
        "bytes_out_per_update": stats["phase1_bytes_out"] / rcv,
        "bytes_in_per_epoch": stats["phase1_bytes_in"] / epochs,
        "bytes_out_per_epoch": stats["phase1_bytes_out"] / epochs,
        "structure_replies_per_epoch": stats["phase1_structure_replies"] / epochs,
        "server_cpu_per_step_s": stats["phase1_update_cpu_s"] / steps,
        "server_wall_per_step_s": stats["phase1_update_s"] / steps,
        "server_evolve_per_epoch_s": stats["phase1_evolve_s"] / max(epochs - 1, 1),
        "worker_cpu_per_batch_s": sum(w["compute_cpu_s"] for w in workers)
                                   / sum(w["steps"] for w in workers),
        "worker_wall_per_batch_s": sum(w["compute_s"] for w in workers)
                                    / sum(w["steps"] for w in workers),
        "phase1_wall_s": stats["phase1_s"],
    }


def measure(quick, modes=MODES, previous=None):
    """All measurements; with ``previous`` (saved ones), only the runs of ``modes``, against
    the saved local runs and targets."""
    from sksparse_mlp import TrulySparseMLPClassifier
    workers = (2, 4) if quick else WORKERS
    if previous is not None:
        for name, res in previous["datasets"].items():
            data = load(name, quick)
            cap = int(np.ceil(EPOCH_CAP * len(res["local"]["acc"])))
            res["runs"].update(parallel_runs(name, data, res, modes, workers, cap))
        previous["config"]["modes"] = sorted(set(previous["config"]["modes"]) | set(modes))
        return previous
    out = {"config": {"workers": workers, "modes": modes, "quick": quick,
                      "target_margin": TARGET_MARGIN, "epoch_cap": EPOCH_CAP,
                      "cores": len(os.sched_getaffinity(0)), "loadavg_start": os.getloadavg(),
                      "datasets": {k: dict(v, hidden=list(v["hidden"]))
                                   for k, v in DATASETS.items()}},
           "datasets": {}}
    t_all = time.perf_counter()
    for name, cfg in DATASETS.items():
        data = load(name, quick)
        epochs = max(2, cfg["epochs"] // (4 if quick else 1))
        # warm the kernels (and the on-disk cache the workers load) before timing
        warm = TrulySparseMLPClassifier(**params(name, 1)).fit(data[0][:512], data[2][:512])
        layers = warm.network_.layers
        res = {"n_train": int(data[0].shape[0]),
               "n_connections": int(sum(l.W.nnz for l in layers)),
               "n_values": int(sum(l.W.nnz + l.n_out for l in layers)),
               "shapes": [[l.W.shape[0], l.W.shape[1], l.W.nnz] for l in layers],
               "kernels": kernel_times(warm, data[0], 5 if quick else 30)}
        print("[%s] %d train samples, %d connections; one thread, per batch of %d: gradient "
              "%.2f ms, training step %.2f ms, server step %.2f ms (best)" % (
                  name, res["n_train"], res["n_connections"], cfg["batch"],
                  1e3 * res["kernels"]["grad"]["best"], 1e3 * res["kernels"]["step"]["best"],
                  1e3 * res["kernels"]["apply"]["best"]), flush=True)
        _, local = run_fit(name, data, epochs)
        best = max(local["acc"])
        target = round(best - TARGET_MARGIN, 4)
        e1 = 1 + next(i for i, a in enumerate(local["acc"]) if a >= target)
        res.update(local=local, target=target, local_epochs_to_target=e1)
        print("  local: %d epochs, best test accuracy %.4f; target %.4f reached at epoch %d "
              "(%.1f s)" % (epochs, best, target, e1, local["wall_s"]), flush=True)
        cap = int(np.ceil(EPOCH_CAP * epochs))
        res["runs"] = parallel_runs(name, data, res, modes, workers, cap)
        out["datasets"][name] = res
    out["config"]["loadavg_end"] = os.getloadavg()
    out["config"]["total_s"] = time.perf_counter() - t_all
    return out


def parallel_runs(name, data, res, modes, workers, cap):
    runs = {}
    target = res["target"]
    for mode in modes:
        for W in workers:
            _, r = run_fit(name, data, cap, target, n_workers=W, worker_mode=mode)
            hit = next((i + 1 for i, a in enumerate(r["acc"]) if a >= target), None)
            r["epochs_to_target"] = hit
            r["inputs"] = summarise(r["stats"], res)
            runs["%s %d" % (mode, W)] = r
            s = r["inputs"]
            print("  %-9s W=%d: target %s; per update %.0f B in / %.0f B out; per epoch "
                  "%.2f MB in / %.2f MB out; server %.2f ms CPU per step; worker %.2f ms CPU "
                  "per batch (%.1f s)" % (
                      mode, W, "at epoch %d" % hit if hit else "not reached in %d" % cap,
                      s["bytes_in_per_update"], s["bytes_out_per_update"],
                      s["bytes_in_per_epoch"] / 1e6, s["bytes_out_per_epoch"] / 1e6,
                      1e3 * s["server_cpu_per_step_s"], 1e3 * s["worker_cpu_per_batch_s"],
                      r["wall_s"]), flush=True)
    return runs


# ====================================================================== model
def fit_efficiency(res, mode):
    """``E_W / E_1 = 1 + c (W - 1)``: least squares through (1, 1) over the measured W;
    a target not reached counts as reached at the cap (a bound: c is then optimistic)."""
    e1 = res["local_epochs_to_target"]
    xs, ys, censored = [], [], []
    for key, r in res["runs"].items():
        m, W = key.split()
        if m != mode:
            continue
        e = r["epochs_to_target"]
        if e is None:
            e = len(r["acc"])
            censored.append(int(W))
        xs.append(int(W) - 1)
        ys.append(e / e1 - 1)
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    c = max(0.0, float(xs @ ys / (xs @ xs))) if len(xs) else 0.0
    return {"c": c, "censored": censored}


def predict(W, mode, inp, link, N):
    """Seconds per epoch of ``N_TRAIN_MODEL`` samples for ``W`` workers.

    ``inp``: measured inputs at ``N0`` connections, scaled linearly by ``N / N0``;
    ``link``: bandwidth (bytes/s) and one-way latency (s) of every node's link.
    Returns ``(epoch_s, parts)``.
    """
    s = N / inp["N0"]
    B, lat = link["bandwidth"], link["latency"]
    batches = N_TRAIN_MODEL / inp["batch"]
    tc = inp["worker_batch_s"] * s            # gradient of one batch (worker)
    tstep = inp["local_step_s"] * s           # local training step (W = 1)
    ts = inp["server_step_s"] * s             # server: step + pack, per update
    bg = inp["bytes_in_per_update"] * s       # gradient message
    bm = inp["bytes_out_per_update"] * s      # reply (values)
    bst = inp["structure_bytes"] * s          # structure, once per worker and epoch
    tev = inp["evolve_s"] * s                 # SET at the server, once per epoch
    if W == 1:
        return batches * tstep + tev, {"bound": "local"}
    if mode == "async":
        cycle = tc + bg / B + lat + ts + bm / B + lat   # one worker's round trip
        server = max(ts, bg / B, bm / B)                # the server's time per update
        rate = min(W / cycle, 1.0 / server)
        bound = "server" if W / cycle > 1.0 / server else "workers"
        epoch = batches / rate
    elif mode == "sync":
        # all gradients in over the server's link, one step, all models out
        at_server = W * bg / B + inp["server_add_s"] * s * W + ts + W * bm / B
        step = tc + 2 * lat + at_server
        epoch = batches / W * step
        bound = "server" if at_server > tc else "workers"
    else:  # allreduce: ring Allreduce among the workers, each applies the mean itself
        ring = 2 * (W - 1) / W * inp["allreduce_bytes"] * s / B + 2 * (W - 1) * lat
        step = tc + ring + inp["allreduce_apply_s"] * s
        epoch = batches / W * step
        bound = "ring" if ring > tc else "workers"
        # per epoch: worker 0's model to the server and the new one back (values and
        # momentum, 4 bytes each, + structure), then a binomial-tree broadcast of it
        model = 2 * bm + bst
        epoch += tev + (2 + np.ceil(np.log2(W))) * model / B
        return epoch, {"bound": bound}
    epoch += tev + W * bst / B
    return epoch, {"bound": bound}


def model_inputs(meas):
    """The model's inputs from the Fashion-shaped runs (the benchmark network)."""
    res = meas["datasets"]["fashion"]
    runs = res["runs"]
    cfg = meas["config"]["datasets"]["fashion"]

    def median(key, mode):
        vals = [r["inputs"][key] for k, r in runs.items() if k.startswith(mode)]
        return float(np.median(vals))
    from sksparse_mlp.parallel import _protocol as P
    inp = {
        "N0": res["n_connections"], "batch": cfg["batch"],
        # CPU seconds per batch of the workers in the async runs (one thread each)
        "worker_batch_s": median("worker_cpu_per_batch_s", "async"),
        "local_step_s": res["kernels"]["step"]["median"],
        "server_step_s": median("server_cpu_per_step_s", "async"),
        # message sizes of the wire format, which the counted bytes matched exactly
        "bytes_in_per_update": float(P.gradient_bytes(res["n_values"], 4)),
        "bytes_out_per_update": float(P.reply_bytes(res["n_values"], 4)),
        "structure_bytes": float(P.structure_bytes(res["shapes"])),
        "evolve_s": median("server_evolve_per_epoch_s", "async"),
    }
    # sync: the server's step for W gradients = step + (W - 1) weighted adds
    sync = {int(k.split()[1]): r["inputs"]["server_cpu_per_step_s"]
            for k, r in runs.items() if k.startswith("sync")}
    Ws = np.array(sorted(sync), float)
    ts = np.array([sync[int(w)] for w in Ws])
    slope = float(np.polyfit(Ws, ts, 1)[0]) if len(Ws) > 1 else 0.0
    inp["server_add_s"] = max(0.0, slope)
    inp["allreduce_bytes"] = float(4 * P.allreduce_len(res["n_values"]))
    # a worker's own optimizer step in mode "allreduce" (measured there; else in-process)
    inp["allreduce_apply_s"] = (median("worker_step_cpu_per_batch_s", "allreduce")
                                if any(k.startswith("allreduce") for k in runs)
                                else res["kernels"]["apply"]["median"])
    return inp


def model(meas):
    inp = model_inputs(meas)
    eff = {}
    for mode in [m for m in ("async", "sync", "allreduce")
                 if any(k.startswith(m) for k in meas["datasets"]["fashion"]["runs"])]:
        eff[mode] = {name: fit_efficiency(res, mode) for name, res in meas["datasets"].items()}
    e1 = meas["datasets"]["fashion"]["local_epochs_to_target"]
    rows = []
    for net_name, N in (("benchmark", inp["N0"]), ("100M", BIG_CONNECTIONS)):
        for link_name, link in LINKS.items():
            t1, _ = predict(1, "async", inp, link, N)
            for mode in eff:
                c = eff[mode]["fashion"]["c"]
                for W in MODEL_WORKERS:
                    epoch, parts = predict(W, mode, inp, link, N)
                    epochs = e1 * (1 + c * (W - 1))
                    rows.append({"network": net_name, "connections": N, "link": link_name,
                                 "mode": mode, "W": W, "epoch_s": epoch, "epochs": epochs,
                                 "time_s": epoch * epochs, "speedup": t1 * e1 / (epoch * epochs),
                                 "epoch_speedup": t1 / epoch, "bound": parts["bound"]})
    return {"inputs": inp, "efficiency": eff, "local_epochs": e1, "rows": rows}


# ====================================================================== output
def _fmt_t(s):
    return "%.0f ms" % (1e3 * s) if s < 1 else ("%.1f s" % s if s < 600 else "%.0f min" % (s / 60))


def write_markdown(meas, mod, path):
    L = ["# WASAP-SGD at cluster scale (`benchmarks/wasap_scaling.py`)", ""]
    c = meas["config"]
    L.append("Measured on %d cores, load average %.1f at the start and %.1f at the end, %.0f s "
             "in all; phase 1 only (`phase1_fraction=1`), one seed." % (
                 c["cores"], c["loadavg_start"][0], c["loadavg_end"][0], c["total_s"]))
    L.append("")
    L.append("## Measured")
    L.append("")
    L.append("| set | mode | W | epochs to target (local) | bytes per update in / out | MB per "
             "epoch in / out | server CPU per step | worker CPU per batch | structure re-sends "
             "per epoch |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name, res in meas["datasets"].items():
        L.append("| %s | local | 1 | %d (target %.3f) | | | | %.2f ms (step %.2f ms, "
                 "in-process) | |" % (DATASETS[name]["title"], res["local_epochs_to_target"],
                                      res["target"],
                    1e3 * res["kernels"]["grad"]["median"],
                    1e3 * res["kernels"]["step"]["median"]))
        for key, r in res["runs"].items():
            mode, W = key.split()
            s = r["inputs"]
            e = r["epochs_to_target"]
            L.append("| %s | %s | %s | %s | %.0f / %.0f | %.2f / %.2f | %.2f ms | %.2f ms "
                     "| %.1f |" % (
                DATASETS[name]["title"], mode, W,
                str(e) if e else "> %d" % len(r["acc"]),
                s["bytes_in_per_update"], s["bytes_out_per_update"],
                s["bytes_in_per_epoch"] / 1e6, s["bytes_out_per_epoch"] / 1e6,
                1e3 * s["server_cpu_per_step_s"], 1e3 * s["worker_cpu_per_batch_s"],
                s["structure_replies_per_epoch"]))
    L.append("")
    L.append("## Model inputs (benchmark network, %d connections)" % mod["inputs"]["N0"])
    L.append("")
    for k, v in mod["inputs"].items():
        L.append("* `%s`: %s" % (k, ("%.4g" % v) if isinstance(v, float) else v))
    for mode, per in mod["efficiency"].items():
        L.append("* statistical efficiency, %s: E_W / E_1 = 1 + c (W - 1) with c = %s" % (
            mode, ", ".join("%.3f (%s%s)" % (
                e["c"], DATASETS[n]["title"],
                ", censored at W=%s" % e["censored"] if e["censored"] else "")
                for n, e in per.items())))
    L.append("")
    L.append("## Modelled time to the local accuracy (%d samples per epoch; Fashion-shaped "
             "efficiency)" % N_TRAIN_MODEL)
    L.append("")
    L.append("Each cell: time to the accuracy of local training, its speed-up over one process "
             "training locally, the speed-up of the epoch time alone (hardware, without the "
             "statistical efficiency), and what bounds the step (`workers`: their compute; "
             "`server`: the parameter server's CPU or link; `ring`: the Allreduce).")
    L.append("")
    modes = list(mod["efficiency"])
    L.append("| network | link | W | " + " | ".join(modes) + " |")
    L.append("|---|---|---|" + "---|" * len(modes))
    for net in ("benchmark", "100M"):
        for link in LINKS:
            for W in MODEL_WORKERS:
                cells = []
                for m in modes:
                    r = next(r for r in mod["rows"] if r["network"] == net and r["link"] == link
                             and r["mode"] == m and r["W"] == W)
                    cells.append("%s (%.2fx; epoch %.1fx; %s)" % (
                        _fmt_t(r["time_s"]), r["speedup"], r["epoch_speedup"], r["bound"]))
                L.append("| %s | %s | %d | %s |" % (net, link, W, " | ".join(cells)))
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def plot(mod, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    styles = {"async": "-", "sync": "--", "allreduce": ":"}
    colors = {"10 Gb/s": "tab:blue", "100 Gb/s": "tab:red"}
    nets = (("benchmark", "784-1000-1000-1000-10, eps 20 (%d k connections)"
             % (mod["inputs"]["N0"] // 1000)), ("100M", "100 M connections"))
    for row, (key, what) in enumerate((("speedup", "speed-up in time to accuracy"),
                                       ("epoch_speedup", "speed-up of the epoch time"))):
        for ax, (net, title) in zip(axes[row], nets):
            for link in LINKS:
                for m in mod["efficiency"]:
                    rows = [r for r in mod["rows"] if r["network"] == net
                            and r["link"] == link and r["mode"] == m]
                    ax.plot([r["W"] for r in rows], [r[key] for r in rows], styles[m],
                            color=colors[link], marker="o", ms=3, label="%s, %s" % (m, link))
            ax.plot(MODEL_WORKERS, MODEL_WORKERS, color="0.7", lw=0.8, label="linear")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_xticks(MODEL_WORKERS)
            ax.set_xticklabels([str(w) for w in MODEL_WORKERS])
            ax.set_xlabel("workers")
            ax.set_ylabel(what)
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("WASAP-SGD: model fed with inputs measured on this machine (2, 4, 8 workers "
                 "measured; 16-64 extrapolated)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--model-only", action="store_true",
                    help="re-run the model on the saved measurements")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="phase-1 modes to measure (default: all)")
    ap.add_argument("--merge", action="store_true",
                    help="measure only --modes and add them to the saved measurements")
    ap.add_argument("--out", default=os.path.join(RESULTS, "wasap_scaling"))
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    modes = tuple(args.modes.split(","))
    if args.model_only or args.merge:
        with open(args.out + ".json") as f:
            meas = json.load(f)["measured"]
        if args.merge:
            meas = measure(args.quick, modes, meas)
    else:
        meas = measure(args.quick, modes)
    mod = model(meas)
    with open(args.out + ".json", "w") as f:
        json.dump({"measured": meas, "model": mod}, f, indent=1, default=float)
    write_markdown(meas, mod, args.out + ".md")
    plot(mod, os.path.join(os.path.dirname(args.out), "wasap_model.png"))
    print(open(args.out + ".md").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())

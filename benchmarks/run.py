#!/usr/bin/env python
"""sksparse_mlp benchmark suite: throughput, dense comparison, evolution cost,
convergence, prediction and scaling, each measured in the same run as its baseline.

Usage (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py --fast   # < 2 min
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py          # full

Unsetting the OpenBLAS overrides lets numpy's GEMM baseline use the kernel
OpenBLAS picks for this CPU (the table records what threadpoolctl reports).
Results go to ``benchmarks/results/``: ``results[-fast].json`` and PNG plots.

Every timing is the best of several interleaved repetitions: the machine may be
shared, and the best run is the closest to what the hardware can do.  The GEMM
rate that throughput is compared with is measured between those repetitions.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

ARCH = (1000, 1000, 1000)
BATCH = 128


# ----------------------------------------------------------------------------- helpers
def now():
    return time.perf_counter()


def rss_bytes():
    """Current resident set size of this process."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes():
    """Peak resident set size since the last :func:`reset_peak_rss` (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss():
    """Restart the peak RSS from the current RSS (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def gemm_gflops(n=2048, repeats=3):
    """numpy float32 GEMM rate (GFLOP/s), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    best = np.inf
    for _ in range(repeats):
        t = now()
        np.matmul(a, b, out=c)
        best = min(best, now() - t)
    return 2.0 * n ** 3 / best / 1e9


class Gemm:
    """Keeps the best GEMM rate seen while the benchmark runs."""

    def __init__(self, n):
        self.n = n
        self.samples = []

    def sample(self):
        self.samples.append(gemm_gflops(self.n, repeats=2))
        # let OpenBLAS's threads stop spinning before anything else is timed
        time.sleep(1.0)
        return self.samples[-1]

    @property
    def best(self):
        return max(self.samples)


def machine_info():
    import numba
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import sksparse_mlp

    cpu = "?"
    flags = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu == "?":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    blas = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
            for d in threadpool_info() if d.get("user_api") == "blas"]
    return {
        "cpu": cpu, "simd": simd, "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)), "memory_gib": round(mem / 2 ** 30, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "numba": numba.__version__, "scikit_learn": sklearn.__version__,
        "sksparse_mlp": sksparse_mlp.__version__, "blas": blas,
        "numba_threads": numba.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                "NUMBA_NUM_THREADS")},
    }


def fashion_data(n_train, n_test, seed=0):
    """Fashion-MNIST-shaped generated set, standardised (fit on the training part)."""
    from sklearn.preprocessing import StandardScaler

    from sksparse_mlp.datasets import make_fashion_like

    X, Xt, y, yt = make_fashion_like(n_train, n_test, random_state=seed)
    sc = StandardScaler().fit(X)
    return sc.transform(X).astype(np.float32), sc.transform(Xt).astype(np.float32), y, yt


def ours(**kw):
    from sksparse_mlp import TrulySparseMLPClassifier

    params = dict(hidden_layer_sizes=ARCH, epsilon=20, batch_size=BATCH, learning_rate_init=0.01,
                  momentum=0.9, max_iter=1, random_state=0, dtype="float32")
    params.update(kw)
    return TrulySparseMLPClassifier(**params)


def dense(**kw):
    from sklearn.neural_network import MLPClassifier

    params = dict(hidden_layer_sizes=ARCH, solver="sgd", batch_size=BATCH, learning_rate_init=0.01,
                  momentum=0.9, max_iter=1, random_state=0)
    params.update(kw)
    return MLPClassifier(**params)


def timed_partial_fit(clf, X, y, classes, repeats):
    """First call builds the model (not timed); then ``repeats`` timed epochs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, y, classes=classes)
        times = []
        for _ in range(repeats):
            t = now()
            clf.partial_fit(X, y)
            times.append(now() - t)
    return times


def n_connections(clf):
    return int(sum(clf.n_connections_))


PROBE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "probes", "run.sh")


def run_probe(path=PROBE):
    """Run the machine's yardstick (``shared/probes/run.sh`` beside the repository).

    Returns ``{"layers": [{n_in, n_out, nnz, panel, forward_us, backward_us}], "floor_ms",
    "gemm": [GFLOP/s, ...]}`` or None when the probe is not there.
    """
    import re

    if not os.path.exists(path):
        return None
    out = subprocess.run(["bash", path, sys.executable], capture_output=True, text=True,
                         timeout=300).stdout
    layers = [dict(n_in=int(m[0]), n_out=int(m[1]), nnz=int(m[2]), panel=int(m[3]),
                   threads=int(m[4]), forward_us=float(m[5]), backward_us=float(m[6]))
              for m in re.findall(r"layer (\d+) x (\d+), (\d+) connections, batch \d+ \(panels of "
                                  r"(\d+)\), (\d+) threads: forward ([\d.]+) us .*?"
                                  r"backward\+gradient ([\d.]+) us", out)]
    floor = re.search(r"epoch floor \(10,000 samples\): ([\d.]+) ms", out)
    gemm = [float(g) for g in re.findall(r"GEMM 2048\^3: ([\d.]+) GFLOP/s", out)]
    return {"layers": layers, "floor_ms": float(floor.group(1)) if floor else None,
            "gemm": gemm, "output": out}


def time_layer_kernels(clf, X, threads, repeats):
    """Best time of our forward and backward (+ fused step) kernels per layer of the
    fitted benchmark network, one batch of 128 with the engine's own panel layout.

    ``hot``: each layer's forward and backward alternate on the same data, as in the
    probe; ``step``: the kernels run in the order of a training step (forward over all
    layers, then backward from the output), so each meets the caches as in an epoch.
    The forward includes the gather of the values into CSC order that training does.
    lr 0 leaves the weights unchanged.
    """
    import numba

    from sksparse_mlp import _fastpath as F
    from sksparse_mlp import _kernels as K
    from sksparse_mlp import _workspace as WS

    net = clf.network_.copy()
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        ws = WS.Workspace(net, BATCH)
        idx = np.arange(BATCH)
        L = len(net.layers)

        def fwd(l, A, acts, codes):  # as training: values gathered first at scale
            act, s = F._act_code(net, l + 1) if l < L - 1 else (K.ACT_NONE, 0.0)
            G = codes[l + 1] if l < L - 1 else ws._dummy_codes
            t = now()
            F.forward_layer(ws, l, net.layers[l], A, acts[l + 1], G, act, s, 0, 0, 1.0)
            return now() - t

        def bwd(l, A, D, codes):
            layer = net.layers[l]
            g = ws._nogbuf if ws.gbuf[l] is None else ws.gbuf[l]
            act, s = F._act_code(net, l) if l > 0 else (0, 0.0)
            G, bs = (codes[l], ws.bsum[l - 1]) if l > 0 else (ws._dummy_codes, ws.bsum[0])
            t = now()
            K.backward_tiled(layer.W.indptr, layer.W.indices, layer.W.data, A, D, G, g,
                             K.GRAD_STEP, l > 0, act, s, 1.0, bs, layer.velocity, 0.0, 0.0,
                             0.0, False, ws.n_threads, layer.velocity, 0.0, 0.0, ws.sched,
                             ws.block_sq, ws.rows)
            return now() - t

        def copy(a):  # on a cache line, as the workspace's buffers
            out = WS._aligned_empty(a.size, a.dtype).reshape(a.shape)
            out[...] = a
            return out

        hot_f, hot_b, step_f, step_b = ([np.inf] * L for _ in range(4))
        acts, codes, _ = F._forward(net, ws, X, idx, BATCH, ws.nt, ws.tb, None, 0.0)
        saved = [copy(a) for a in acts]
        D_out = copy(saved[-1] * 0.01)
        for l in range(L):  # hot: as the probe, one layer at a time
            A = copy(saved[l])
            D = D_out if l == L - 1 else copy(saved[l + 1] * 0.01)
            for _ in range(repeats):
                hot_f[l] = min(hot_f[l], fwd(l, saved[l], acts, codes))
                hot_b[l] = min(hot_b[l], bwd(l, A, D, codes))
        for _ in range(max(1, repeats // 3)):  # in the order of a training step
            acts, codes, _ = F._forward(net, ws, X, idx, BATCH, ws.nt, ws.tb, None, 0.0)
            for l in range(L):
                step_f[l] = min(step_f[l], fwd(l, copy(acts[l]) if l == 0 else acts[l],
                                               acts, codes))
            D = acts[-1]
            D *= 0.01
            for l in range(L - 1, -1, -1):
                step_b[l] = min(step_b[l], bwd(l, acts[l], D, codes))
                D = acts[l]
        return [dict(n_in=ly.n_in, n_out=ly.n_out, nnz=int(ly.W.nnz), panel=ws.tb, panels=ws.nt,
                     forward_us=hf * 1e6, backward_us=hb * 1e6,
                     step_forward_us=sf * 1e6, step_backward_us=sb * 1e6, delta=l > 0)
                for l, (ly, hf, hb, sf, sb) in enumerate(zip(net.layers, hot_f, hot_b, step_f,
                                                             step_b))]
    finally:
        numba.set_num_threads(old)


def epoch_anatomy(clf, X, y, repeats):
    """Where an epoch's time goes: median milliseconds per epoch of each part over
    ``repeats`` partial_fit epochs, each part timed around its calls (about 1 us
    of timing per call, some 1,000 calls per epoch).

    ``other step`` is the training steps' own Python (train_batch minus the kernels,
    gather, loss and bias steps inside it); ``rest`` is the epoch minus everything
    named (shuffling, workspace, thread choice, the estimator's bookkeeping).
    """
    from sksparse_mlp import _fastpath as F
    from sksparse_mlp import _kernels as K
    from sksparse_mlp import _loss
    from sksparse_mlp import _panels as P
    from sksparse_mlp import _steps as S
    from sksparse_mlp import _training as T

    parts = {"forward kernels": (K, "forward_tiled"), "backward kernels": (K, "backward_tiled"),
             "input gather": (P, "gather_input_tiled"), "loss": (_loss, "output_loss_delta"),
             "bias steps": (S, "bias_step"), "steps": (F, "train_batch"),
             "evolution": (T, "evolve_topology"),
             "end-of-epoch checks": (T.EpochLoop, "_end_epoch")}
    spent = dict.fromkeys(parts, 0.0)
    saved = {}

    def timed(name, f):
        def call(*a, **k):
            t = now()
            try:
                return f(*a, **k)
            finally:
                spent[name] += now() - t
        return call

    rows = []
    try:
        for name, (owner, attr) in parts.items():
            saved[name] = getattr(owner, attr)
            setattr(owner, attr, timed(name, saved[name]))
        for _ in range(repeats):
            for name in spent:
                spent[name] = 0.0
            t = now()
            clf.partial_fit(X, y)
            rows.append({"epoch": now() - t, **spent})
    finally:
        for name, (owner, attr) in parts.items():
            if name in saved:
                setattr(owner, attr, saved[name])
    inside = ("forward kernels", "backward kernels", "input gather", "loss", "bias steps")
    for r in rows:
        r["other step"] = r.pop("steps") - sum(r[k] for k in inside)
        r["rest"] = r["epoch"] - sum(v for k, v in r.items() if k != "epoch")
    return {k: float(np.median([r[k] for r in rows])) * 1e3 for k in rows[0]}


# ----------------------------------------------------------------------------- sections
def _busy_neighbour():
    """A process that keeps one core busy (another user's job on a shared machine)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def bench_throughput(args, gemm, res):
    """784-1000-1000-1000-10, epsilon 20: per-layer kernels and the epoch against the
    probe, one thread against two, a busy neighbour, dense MLPClassifier, evolution."""
    import numba

    from sksparse_mlp._network import evolve_topology

    X, _, y, _ = fashion_data(10000, 100)
    classes = np.unique(y)
    R = args.repeats
    clf, mlp = ours(), dense()
    threads = numba.get_num_threads()
    ours_t, one_t, busy_t, dense_t, evo_t, evo_imp_t = [], [], [], [], [], []
    probes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, y, classes=classes)
        probe = run_probe()
        if probe:
            probes.append(probe)
        gemm.sample()
        kernels = {threads: time_layer_kernels(clf, X, threads, args.kernel_repeats),
                   1: time_layer_kernels(clf, X, 1, args.kernel_repeats)}
        # our epochs (all threads, one thread) and the dense ones alternate, so that all
        # see the same state of a shared machine (its speed drifts over minutes)
        per_dense = -(-R // args.dense_repeats)
        for r in range(R):
            t = now()
            clf.partial_fit(X, y)
            ours_t.append(now() - t)
            numba.set_num_threads(1)
            t = now()
            clf.partial_fit(X, y)
            one_t.append(now() - t)
            numba.set_num_threads(threads)
            if r % per_dense == per_dense - 1 or r == R - 1:
                # the first call also draws the dense initial weights (~1 % of an epoch)
                t = now()
                if not dense_t:
                    mlp.partial_fit(X, y, classes=classes)
                    assert mlp.coefs_[0].dtype == np.float32
                else:
                    mlp.partial_fit(X, y)
                dense_t.append(now() - t)
                # OpenBLAS's threads spin for ~0.1 s after its last call: an epoch of
                # ours started at once was 1.2x slower (ours sleep after 0.2 ms)
                time.sleep(0.3)
        neighbour = _busy_neighbour()
        try:
            time.sleep(0.2)
            for _ in range(R):
                t = now()
                clf.partial_fit(X, y)
                busy_t.append(now() - t)
        finally:
            neighbour.kill()
            neighbour.wait()
        anatomy = epoch_anatomy(clf, X, y, R)
        gemm.sample()
        probe = run_probe()
        if probe:
            probes.append(probe)
        cfg = clf._training_config()
        for r in range(R):
            # evolution alone, on copies of the trained network
            net = clf.network_.copy()
            rng = np.random.default_rng(r)
            t = now()
            evolve_topology(net, 1, cfg, rng)
            evo_t.append(now() - t)
            net = clf.network_.copy()
            t = now()
            net.importance_prune(20.0)
            evolve_topology(net, 1, cfg, rng)
            evo_imp_t.append(now() - t)
    nnz = n_connections(clf)
    n = X.shape[0]
    best = min(ours_t)
    eff = 6.0 * nnz * n / best / 1e9
    out = {
        "architecture": [784, *ARCH, 10], "epsilon": 20, "batch_size": BATCH, "n_samples": n,
        "connections": nnz, "connections_per_layer": list(map(int, clf.n_connections_)),
        "threads": threads,
        "epoch_s_best": best, "epoch_s_median": float(np.median(ours_t)), "epoch_s_all": ours_t,
        "epoch_1thread_s_best": min(one_t), "epoch_1thread_s_median": float(np.median(one_t)),
        "epoch_1thread_s_all": one_t,
        "thread_speedup_median": float(np.median(np.array(one_t) / np.array(ours_t))),
        "epoch_busy_neighbour_s_best": min(busy_t),
        "epoch_busy_neighbour_s_median": float(np.median(busy_t)), "epoch_busy_s_all": busy_t,
        "busy_over_quiet_median": float(np.median(busy_t) / np.median(ours_t)),
        "effective_gflops": eff, "gemm_gflops": gemm.best, "ratio_to_gemm": eff / gemm.best,
        "dense_epoch_s_best": min(dense_t), "dense_epoch_s_all": dense_t,
        "dense_effective_gflops": 6.0 * sum(a * b for a, b in zip([784, *ARCH], [*ARCH, 10])) * n
        / min(dense_t) / 1e9,
        "speedup_vs_dense": min(dense_t) / best,
        "evolution_s_best": min(evo_t), "evolution_share": min(evo_t) / best,
        "evolution_with_importance_s_best": min(evo_imp_t),
        "evolution_with_importance_share": min(evo_imp_t) / best,
        "kernels": {str(k): v for k, v in kernels.items()},
        "anatomy_ms": anatomy,
    }
    if probes:
        floor = min(p["floor_ms"] for p in probes) / 1e3
        out["probe"] = [{k: v for k, v in p.items() if k != "output"} for p in probes]
        out["probe_floor_s"] = floor
        out["epoch_over_floor"] = best / floor
        out["probe_layers_best"] = [
            {**a, "forward_us": min(p["layers"][i]["forward_us"] for p in probes),
             "backward_us": min(p["layers"][i]["backward_us"] for p in probes)}
            for i, a in enumerate(probes[0]["layers"])]
    res["throughput"] = out
    print(f"  epoch {best:.3f} s (median {np.median(ours_t):.3f}; {eff:.1f} GFLOP/s effective, "
          f"GEMM {gemm.best:.1f} GFLOP/s, ratio {eff / gemm.best:.2f}); dense MLPClassifier "
          f"{min(dense_t):.2f} s -> {min(dense_t) / best:.1f}x; evolution "
          f"{min(evo_t) * 1e3:.1f} ms ({100 * min(evo_t) / best:.1f} %), with importance pruning "
          f"{min(evo_imp_t) * 1e3:.1f} ms ({100 * min(evo_imp_t) / best:.1f} %)")
    print(f"  1 thread {min(one_t):.3f} s (median {np.median(one_t):.3f}): {threads} threads are "
          f"{out['thread_speedup_median']:.2f}x faster (median of pairs); with a busy neighbour "
          f"{min(busy_t):.3f} s (median {np.median(busy_t):.3f}) = "
          f"{out['busy_over_quiet_median']:.2f}x the quiet median")
    print("  one epoch (median ms, each part timed around its calls): "
          + ", ".join(f"{k} {v:.1f}" for k, v in anatomy.items()))
    if probes:
        print(f"  probe epoch floor {floor * 1e3:.1f} ms (best of {len(probes)} runs): our epoch "
              f"is {best / floor:.2f}x the floor")
    for th, rows in kernels.items():
        for i, r in enumerate(rows):
            line = (f"  ours  layer {r['n_in']} x {r['n_out']}, {r['nnz']} connections, batch "
                    f"{BATCH} ({r['panels']} panels of {r['panel']}), {th} threads: forward "
                    f"{r['forward_us']:.1f} us, backward+gradient+step {r['backward_us']:.1f} us"
                    + ("" if r["delta"] else " (no input delta)")
                    + f" [in a training step: {r['step_forward_us']:.1f} / "
                    f"{r['step_backward_us']:.1f} us]")
            if probes and th == threads:
                pl = out["probe_layers_best"][i]
                line += (f"; probe {pl['forward_us']:.1f} / {pl['backward_us']:.1f} us -> "
                         f"{r['forward_us'] / pl['forward_us']:.2f}x / "
                         f"{r['backward_us'] / pl['backward_us']:.2f}x")
            print(line)
    return clf, mlp, X


def _epochs(clf, X, y, repeats, classes):
    """Best and median seconds of ``repeats`` partial_fit epochs (the first call builds)."""
    ts = timed_partial_fit(clf, X, y, classes, repeats)
    return min(ts), float(np.median(ts))


def bench_adam(X, y, classes, repeats):
    """solver="adam" beside the SGD default: epochs alternated (one of each per round,
    so a load change on the shared machine hits both), best and median of each."""
    models = {"sgd": ours(), "adam": ours(solver="adam", learning_rate_init=0.001)}
    times = {k: [] for k in models}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for clf in models.values():
            clf.partial_fit(X, y, classes=classes)
        for _ in range(repeats):
            for k, clf in models.items():
                t = now()
                clf.partial_fit(X, y)
                times[k].append(now() - t)
    rows = {}
    for k, ts in times.items():
        name = f"solver={k!r} (alternated)"
        rows[name] = {"epoch_s_best": min(ts), "epoch_s_median": float(np.median(ts))}
        print(f"  {name}: epoch {min(ts):.3f} s (median {np.median(ts):.3f})")
    adam, sgd = rows["solver='adam' (alternated)"], rows["solver='sgd' (alternated)"]
    adam["over_sgd"] = adam["epoch_s_best"] / sgd["epoch_s_best"]
    adam["over_sgd_median"] = adam["epoch_s_median"] / sgd["epoch_s_median"]
    print(f"  adam / sgd: best {adam['over_sgd']:.3f}x, median {adam['over_sgd_median']:.3f}x")
    return rows


def bench_variants(args, res):
    """What users run besides the benchmark network: float64, sparse X, importance
    pruning on, and a small network (digits) against dense MLPClassifier."""
    import scipy.sparse as sp
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, _, y, _ = fashion_data(args.sweep_samples, 10)
    classes = np.unique(y)
    R = args.repeats
    Xs = X.copy()
    Xs[Xs < 0.5] = 0  # about 70 % zeros
    Xs = sp.csr_matrix(Xs)
    rows = {}
    for name, clf, data in [
            ("float32", ours(), X), ("float64", ours(dtype="float64"), X.astype(np.float64)),
            ("sparse X (CSR, 70 % zeros)", ours(), Xs),
            ("importance pruning on (every epoch, 20th percentile)",
             ours(importance_pruning=True, pruning_start=1, pruning_interval=1), X)]:
        best, med = _epochs(clf, data, y, R, classes)
        rows[name] = {"epoch_s_best": best, "epoch_s_median": med}
        print(f"  {name}: epoch {best:.3f} s (median {med:.3f})")
    rows["float64"]["over_float32"] = (rows["float64"]["epoch_s_best"]
                                       / rows["float32"]["epoch_s_best"])
    rows.update(bench_adam(X, y, classes, 2 * R))
    Xd, yd = load_digits(return_X_y=True)
    Xd = StandardScaler().fit_transform(Xd).astype(np.float32)
    cd = np.unique(yd)
    small = dict(hidden_layer_sizes=(256, 256), batch_size=128)
    o_best, o_med = _epochs(ours(**small), Xd, yd, 3 * R, cd)
    d_best, d_med = _epochs(dense(**small), Xd, yd, 3 * R, cd)
    rows["digits 64-256-256-10"] = {"epoch_s_best": o_best, "epoch_s_median": o_med,
                                    "dense_epoch_s_best": d_best,
                                    "speedup_vs_dense": d_best / o_best}
    print(f"  digits 64-256-256-10 (1797 samples): epoch {o_best * 1e3:.1f} ms, dense "
          f"{d_best * 1e3:.1f} ms -> {d_best / o_best:.1f}x")
    res["variants"] = {"n_samples": int(X.shape[0]), "rows": rows}



def bench_sweep(args, gemm, res):
    """Epoch time vs dense for epsilon 1, 5, 20, 50 and density 1 %, 5 %, 20 %, 100 %."""
    n = args.sweep_samples
    X, _, y, _ = fashion_data(n, 100, seed=1)
    classes = np.unique(y)
    configs = [("epsilon", e) for e in (1, 5, 20, 50)] + [("density", d) for d in
                                                        (0.01, 0.05, 0.2, 1.0)]
    mlp = dense()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense_t = []
        for _ in range(args.dense_repeats):
            t = now()
            mlp.partial_fit(X, y, classes=classes)  # first call includes the (cheap) init
            dense_t.append(now() - t)
        for kind, value in configs:
            clf = ours(**{kind: value})
            reps = 1 if (kind == "density" and value >= 0.2) else args.repeats
            gemm.sample()
            t = timed_partial_fit(clf, X, y, classes, reps)
            nnz = n_connections(clf)
            rows.append({"kind": kind, "value": value, "connections": nnz,
                         "density": [round(d, 5) for d in clf.density_],
                         "epoch_s": min(t), "effective_gflops": 6.0 * nnz * n / min(t) / 1e9,
                         "speedup_vs_dense": min(dense_t) / min(t)})
            print(f"  {kind} {value}: {nnz} connections, epoch {min(t):.3f} s, "
                  f"{rows[-1]['effective_gflops']:.1f} GFLOP/s, "
                  f"{rows[-1]['speedup_vs_dense']:.1f}x dense")
    res["sweep"] = {"n_samples": n, "dense_epoch_s": min(dense_t), "rows": rows}


def bench_convergence(args, res):
    """Test accuracy per epoch, ours vs dense MLPClassifier on the same data."""
    X, Xt, y, yt = fashion_data(args.convergence_samples, 2000, seed=2)
    classes = np.unique(y)
    E = args.epochs
    curves = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, clf in (("sksparse_mlp", ours()), ("dense MLPClassifier", dense())):
            acc, wall = [], []
            t0 = now()
            for e in range(E):
                if e == 0:
                    clf.partial_fit(X, y, classes=classes)
                else:
                    clf.partial_fit(X, y)
                wall.append(now() - t0)
                acc.append(float(clf.score(Xt, yt)))
            curves[name] = {"test_accuracy": acc, "seconds": wall}
            print(f"  {name}: accuracy per epoch {[round(a, 3) for a in acc]}, "
                  f"{wall[-1]:.1f} s for {E} epochs")
    best_dense = max(curves["dense MLPClassifier"]["test_accuracy"])
    ours_acc = curves["sksparse_mlp"]["test_accuracy"]
    reach = next((i + 1 for i, a in enumerate(ours_acc) if a >= best_dense - 1e-12), None)
    dense_acc = curves["dense MLPClassifier"]["test_accuracy"]
    dense_reach = next((i + 1 for i, a in enumerate(dense_acc) if a >= best_dense - 1e-12), None)
    res["convergence"] = {"epochs": E, "n_train": int(X.shape[0]), "curves": curves,
                          "dense_best_accuracy": best_dense, "ours_epochs_to_dense_best": reach,
                          "dense_epochs_to_its_best": dense_reach}


def bench_prediction(args, res, clf, mlp, X):
    """Prediction throughput for batches of 1 and of 10,000 samples."""
    out = {}
    for name, model in (("sksparse_mlp", clf), ("dense MLPClassifier", mlp)):
        model.predict(X[:1])
        n1, t = 0, now()
        while now() - t < args.predict_seconds:
            model.predict(X[n1 % len(X):n1 % len(X) + 1])
            n1 += 1
        single = n1 / (now() - t)
        best = np.inf
        for _ in range(3):
            t = now()
            model.predict(X[:10000])
            best = min(best, now() - t)
        out[name] = {"batch1_samples_per_s": single, "batch1_latency_ms": 1e3 / single,
                     "batch10000_samples_per_s": 10000 / best}
        print(f"  {name}: batch 1 {single:.0f} samples/s ({1e3 / single:.2f} ms), "
              f"batch 10000 {10000 / best:.0f} samples/s")
    res["prediction"] = out


def scaling_child(hidden, epochs):
    """Run in a subprocess: one network size on the lung-shaped set; prints JSON."""
    from sklearn.preprocessing import StandardScaler

    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.datasets import make_lung_like

    X, y = make_lung_like(random_state=0)[:2]
    X = StandardScaler().fit_transform(X).astype(np.float32)
    classes = np.unique(y)
    # load and compile every code path on a tiny network first, so that the
    # baseline includes the runtime (numba, scipy, sklearn) and not the model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = TrulySparseMLPClassifier((16,) * 3, epsilon=20, max_iter=2, random_state=0)
        tiny.fit(X, y)
        tiny.predict(X)
    del tiny
    base = rss_bytes()
    reset_peak_rss()
    clf = TrulySparseMLPClassifier((hidden,) * 3, epsilon=20, batch_size=BATCH, max_iter=1,
                                   random_state=0, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = now()
        clf.partial_fit(X, y, classes=classes)
        first = now() - t
        times = []
        for _ in range(epochs):
            t = now()
            clf.partial_fit(X, y)
            times.append(now() - t)
    net = clf.network_
    wbytes = sum(l.W.data.nbytes + l.W.indices.nbytes + l.W.indptr.nbytes + l.velocity.nbytes
                 + l.bias.nbytes + l.bias_velocity.nbytes for l in net.layers)
    batch = min(BATCH, X.shape[0])
    abytes = batch * sum(net.n_neurons) * 4
    peak = peak_rss_bytes()
    return {"hidden": hidden, "neurons": int(sum(net.n_neurons[1:-1])),
            "connections": int(sum(net.n_connections)), "n_samples": int(X.shape[0]),
            "first_epoch_s": first, "epoch_s_all": times, "epoch_s_best": min(times),
            "weights_state_bytes": int(wbytes), "activation_bytes": int(abytes),
            "baseline_rss_bytes": int(base), "peak_rss_bytes": int(peak),
            "peak_over_model": (peak - base) / (wbytes + abytes)}


def bench_scaling(args, res):
    rows = []
    for hidden in args.scaling_sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child-scaling", str(hidden),
               "--epochs", str(2 if hidden < 10 ** 6 else 1)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr[-2000:])
            rows.append({"hidden": hidden, "error": p.stderr[-500:]})
            continue
        row = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(row)
        per_connection = row["epoch_s_best"] / row["connections"]
        print(f"  3 x {hidden}: {row['connections']} connections, epoch "
              f"{row['epoch_s_best']:.2f} s ({per_connection * 1e9:.1f} ns/connection), peak RSS "
              f"{row['peak_rss_bytes'] / 2 ** 20:.0f} MiB (baseline "
              f"{row['baseline_rss_bytes'] / 2 ** 20:.0f}), (peak - baseline) / "
              f"(weights + state + activations) = {row['peak_over_model']:.2f}")
    res["scaling"] = rows


# ----------------------------------------------------------------------------- report
def plots(res, out_dir, suffix):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots")
        return []
    files = []
    if "convergence" in res:
        c = res["convergence"]["curves"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for name, cur in c.items():
            ep = np.arange(1, len(cur["test_accuracy"]) + 1)
            ax[0].plot(ep, cur["test_accuracy"], marker="o", label=name)
            ax[1].plot(cur["seconds"], cur["test_accuracy"], marker="o", label=name)
        ax[0].set_xlabel("epoch")
        ax[1].set_xlabel("training time (s)")
        for a in ax:
            a.set_ylabel("test accuracy")
            a.grid(alpha=0.3)
            a.legend()
        fig.suptitle("784-1000-1000-1000-10 on a Fashion-MNIST-shaped set (standardised): "
                     "epsilon 20 vs dense")
        fig.tight_layout()
        f = os.path.join(out_dir, f"convergence{suffix}.png")
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    if "sweep" in res:
        rows = res["sweep"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        x = [r["connections"] for r in rows]
        ax.loglog(x, [r["epoch_s"] for r in rows], "o", label="sksparse_mlp")
        for r in rows:
            ax.annotate(f"{r['kind'][:3]} {r['value']:g}", (r["connections"], r["epoch_s"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(res["sweep"]["dense_epoch_s"], color="C1", label="dense MLPClassifier")
        ax.set_xlabel("connections")
        ax.set_ylabel("epoch time (s)")
        ax.set_title(f"Epoch time vs sparsity ({res['sweep']['n_samples']} samples)")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        f = os.path.join(out_dir, f"sparsity{suffix}.png")
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    rows = [r for r in res.get("scaling", []) if "error" not in r]
    if rows:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        x = np.array([r["connections"] for r in rows], float)
        t = np.array([r["epoch_s_best"] for r in rows])
        m = np.array([(r["peak_rss_bytes"] - r["baseline_rss_bytes"]) for r in rows]) / 2 ** 20
        mod = np.array([r["weights_state_bytes"] + r["activation_bytes"] for r in rows]) / 2 ** 20
        ax[0].loglog(x, t, "o-", label="epoch time")
        ax[0].loglog(x, t[-1] * x / x[-1], "k--", alpha=0.4, label="linear in connections")
        ax[0].set_ylabel("seconds")
        ax[1].loglog(x, m, "o-", label="peak RSS - baseline")
        ax[1].loglog(x, mod, "s--", label="weights + state + activations")
        ax[1].loglog(x, 2 * mod, ":", color="gray", label="2 x that")
        ax[1].set_ylabel("MiB")
        for a in ax:
            a.set_xlabel("connections (3 hidden layers of 1k ... 1M, epsilon 20)")
            a.grid(alpha=0.3, which="both")
            a.legend(fontsize=8)
        fig.suptitle("Scaling on a 203 x 3312 lung-shaped set")
        fig.tight_layout()
        f = os.path.join(out_dir, f"scaling{suffix}.png")
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    return files


def table(res):
    m = res["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores_usable']} cores, {m['memory_gib']} GiB, "
             f"SIMD {'/'.join(m['simd'])}; BLAS "
             + ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                         f"{b['num_threads']} threads)" for b in m["blas"])
             + f"; numpy {m['numpy']}, scipy {m['scipy']}, numba {m['numba']}, "
             f"scikit-learn {m['scikit_learn']}, Python {m['python']}",
             "", "| measure | value | target |", "|---|---|---|"]
    t = res.get("throughput")
    if t:
        gs = res.get("gemm_samples_gflops") or [t["gemm_gflops"]]
        lines += [
            f"| numpy float32 GEMM (best sample; all samples {min(gs):.0f}-{max(gs):.0f}: a wide "
            f"range means a busy shared host) | {t['gemm_gflops']:.1f} GFLOP/s | |",
            f"| epoch, 784-1000-1000-1000-10, eps 20, {t['connections']} connections, "
            f"10,000 samples (evolution included) | {t['epoch_s_best']:.3f} s | |",
            f"| effective throughput 6 nnz n / t | {t['effective_gflops']:.1f} GFLOP/s | |",
            f"| ratio to GEMM | {t['ratio_to_gemm']:.2f} | |",
            f"| epoch, 1 thread (median) / {t['threads']} threads (median) | "
            f"{t['epoch_1thread_s_median']:.3f} s / {t['epoch_s_median']:.3f} s: "
            f"{t['thread_speedup_median']:.2f}x | >= 1.8x |",
            f"| epoch with one busy process beside it (median) | "
            f"{t['epoch_busy_neighbour_s_median']:.3f} s = {t['busy_over_quiet_median']:.2f}x the "
            f"quiet median | <= 2.5x |",
            f"| dense MLPClassifier(sgd) epoch, same layers, float32 | "
            f"{t['dense_epoch_s_best']:.2f} s ({t['dense_effective_gflops']:.0f} GFLOP/s) | |",
            f"| speed-up vs dense | {t['speedup_vs_dense']:.1f}x | >= 15x |",
            f"| SET evolution per epoch | {t['evolution_s_best'] * 1e3:.1f} ms = "
            f"{100 * t['evolution_share']:.1f} % of the epoch | <= 10 % |",
            f"| SET + importance pruning | {t['evolution_with_importance_s_best'] * 1e3:.1f} ms = "
            f"{100 * t['evolution_with_importance_share']:.1f} % | <= 10 % |"]
    if t and "probe_floor_s" in t:
        lines.append(f"| probe's epoch floor (kernels only, best of {len(t['probe'])} runs) | "
                     f"{t['probe_floor_s'] * 1e3:.1f} ms; our epoch = "
                     f"{t['epoch_over_floor']:.2f}x | <= 1.25x |")
        for r, p in zip(t["kernels"][str(t["threads"])], t["probe_layers_best"]):
            lines.append(
                f"| layer {r['n_in']} x {r['n_out']} ({r['nnz']} connections): forward / backward"
                f"{'' if r['delta'] else ' (no input delta)'} + step, ours ({r['panels']} x "
                f"{r['panel']}) vs probe (panels of {p['panel']}) | {r['forward_us']:.0f} / "
                f"{r['backward_us']:.0f} us vs {p['forward_us']:.0f} / {p['backward_us']:.0f} us = "
                f"{r['forward_us'] / p['forward_us']:.2f}x / "
                f"{r['backward_us'] / p['backward_us']:.2f}x (in a training step "
                f"{r['step_forward_us']:.0f} / {r['step_backward_us']:.0f} us) | <= 1.25x |")
    if t and "anatomy_ms" in t:
        lines.append("| one epoch, median ms per part | " + ", ".join(
            f"{k} {v:.1f}" for k, v in t["anatomy_ms"].items()) + " | |")
    v = res.get("variants")
    if v:
        for name, r in v["rows"].items():
            extra = ""
            if "over_float32" in r:
                extra = f", {r['over_float32']:.2f}x float32"
            if "over_sgd" in r:
                extra = (f", {r['over_sgd']:.2f}x SGD (median {r['over_sgd_median']:.2f}x)")
            if "speedup_vs_dense" in r:
                extra = (f", dense {r['dense_epoch_s_best'] * 1e3:.1f} ms: "
                         f"{r['speedup_vs_dense']:.1f}x")
            lines.append(f"| {name} | epoch {r['epoch_s_best']:.3f} s (median "
                         f"{r['epoch_s_median']:.3f}){extra} | |")
    s = res.get("sweep")
    if s:
        for r in s["rows"]:
            lines.append(f"| {r['kind']} {r['value']:g} ({r['connections']} connections, "
                         f"{s['n_samples']} samples) | epoch {r['epoch_s']:.3f} s, "
                         f"{r['effective_gflops']:.1f} GFLOP/s, "
                         f"{r['speedup_vs_dense']:.1f}x dense | |")
    c = res.get("convergence")
    if c:
        o = c["curves"]["sksparse_mlp"]["test_accuracy"]
        d = c["curves"]["dense MLPClassifier"]["test_accuracy"]
        lines.append(f"| test accuracy after {c['epochs']} epochs, {c['n_train']} training "
                     f"samples (ours / dense) | "
                     f"{o[-1]:.3f} / {d[-1]:.3f} (best {max(o):.3f} / {max(d):.3f}); ours reaches "
                     f"the dense best at epoch {c['ours_epochs_to_dense_best']}, dense at epoch "
                     f"{c['dense_epochs_to_its_best']} | no more epochs than dense |")
    p = res.get("prediction")
    if p:
        for name, v in p.items():
            lines.append(f"| predict, {name} | batch 1: {v['batch1_samples_per_s']:.0f} samples/s "
                         f"({v['batch1_latency_ms']:.2f} ms); batch 10,000: "
                         f"{v['batch10000_samples_per_s']:.0f} samples/s | |")
    for r in res.get("scaling", []):
        if "error" in r:
            lines.append(f"| scaling 3 x {r['hidden']} | failed | |")
            continue
        lines.append(
            f"| scaling 3 x {r['hidden']:,} ({r['connections']:,} connections) | epoch "
            f"{r['epoch_s_best']:.2f} s ({r['epoch_s_best'] / r['connections'] * 1e9:.1f} ns per "
            f"connection), peak RSS {r['peak_rss_bytes'] / 2 ** 20:.0f} MiB, "
            f"(peak - baseline) / model = {r['peak_over_model']:.2f} | linear; <= 2 |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="quick run (under 2 minutes)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--sections",
                    default="throughput,variants,sweep,convergence,prediction,scaling")
    ap.add_argument("--child-scaling", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    if args.child_scaling:
        print(json.dumps(scaling_child(args.child_scaling, args.epochs or 2)))
        return 0
    fast = args.fast
    args.repeats = 3 if fast else 6
    args.kernel_repeats = 100 if fast else 300
    args.dense_repeats = 1 if fast else 3
    args.sweep_samples = 2000 if fast else 10000
    args.epochs = args.epochs or (3 if fast else 15)
    args.convergence_samples = 2000 if fast else 10000
    args.predict_seconds = 1.0 if fast else 3.0
    args.scaling_sizes = [1000, 10000, 100000] if fast else [1000, 10000, 100000, 1000000]
    sections = set(args.sections.split(","))
    os.makedirs(args.out, exist_ok=True)
    t_start = now()
    res = {"mode": "fast" if fast else "full", "machine": machine_info()}
    gemm = Gemm(1536 if fast else 2048)
    blas = res["machine"]["blas"]
    print(f"GEMM float32: {gemm.sample():.1f} GFLOP/s "
          f"({blas[0]['architecture'] if blas else '?'} kernel)")
    clf = mlp = X = None
    if "throughput" in sections or "prediction" in sections:
        print("throughput (784-1000-1000-1000-10, epsilon 20, batch 128, 10,000 samples):")
        clf, mlp, X = bench_throughput(args, gemm, res)
    if "variants" in sections:
        print(f"variants (784-1000-1000-1000-10, {args.sweep_samples} samples; digits):")
        bench_variants(args, res)
    if "sweep" in sections:
        print("epsilon / density sweep:")
        bench_sweep(args, gemm, res)
    if "convergence" in sections:
        print("convergence:")
        bench_convergence(args, res)
    if "prediction" in sections:
        print("prediction:")
        bench_prediction(args, res, clf, mlp, X)
    if "scaling" in sections:
        print("scaling (lung-shaped 203 x 3312, 3 hidden layers, epsilon 20, one process each):")
        bench_scaling(args, res)
    gemm.sample()
    if "throughput" in res:  # the best GEMM of the whole run is the baseline
        t = res["throughput"]
        t["gemm_gflops"] = gemm.best
        t["ratio_to_gemm"] = t["effective_gflops"] / gemm.best
    res["gemm_samples_gflops"] = gemm.samples
    res["seconds"] = now() - t_start
    suffix = "-fast" if fast else ""
    res["plots"] = [os.path.basename(f) for f in plots(res, args.out, suffix)]
    with open(os.path.join(args.out, f"results{suffix}.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    txt = table(res)
    with open(os.path.join(args.out, f"table{suffix}.md"), "w") as fh:
        fh.write(txt + "\n")
    print()
    print(txt)
    print(f"\n{res['seconds']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

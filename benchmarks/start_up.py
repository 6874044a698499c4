"""Start-up time of an ``n_workers=2`` fit, measured from the call to ``fit``.

Three cases, each in a fresh Python process (as a user's first fit, and as the test
suite's scenarios run), all timed from the call to ``fit`` in that process:

* ``hang``: the workers never reach ``MPI_Init`` (test hook ``--hang-before-init``);
  ``fit`` must raise ``WorkerTimeout`` about ``worker_timeout`` (3 s) after the call;
* ``die``: the workers die before ``MPI_Init`` (``--die-before-init``): ``WorkerDied``
  as soon as that is seen;
* ``fit``: a normal fit (200 x 6 samples, batch 100, so one epoch is 2 batches):
  the time to the end of the first epoch (the ``callback`` after 2 batches, the first
  moment the caller learns that training runs) and to the end of ``fit`` (2 epochs).

``--tree DIR`` runs a case with ``DIR`` first on ``sys.path`` (an extracted older commit,
the baseline); the trees are alternated run by run, so both see the same machine load.
Each tree gets one unmeasured warm-up fit first (numba's on-disk kernel cache).

Usage::

    python benchmarks/start_up.py --runs 5 [--tree /tmp/base] [--out results/start_up.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# one case in this process; prints one JSON line
_CASE = r"""
import json, sys, time
import numpy as np
from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.parallel import _testing
case = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 6))
y = (X[:, 0] > 0).astype(int)
if case in ("hang", "die"):
    _testing.hooks["worker_flags"] = ["--%s-before-init" % case]
seen = {}
def callback(est):
    seen.setdefault("first_epoch_s", time.monotonic() - t0)
clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=2, batch_size=100,
                               random_state=0, n_workers=2, worker_timeout=3.0,
                               callback=callback)
t0 = time.monotonic()
try:
    clf.fit(X, y)
    seen["exc"] = None
except Exception as e:
    seen["exc"] = type(e).__name__
seen["end_s"] = time.monotonic() - t0
seen["file"] = __import__("sksparse_mlp").__file__
print("CASE " + json.dumps(seen), flush=True)
"""


def run_case(case, tree):
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _CASE, case], capture_output=True, text=True,
                       timeout=300, cwd="/", env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("CASE ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError("case %s failed (%d):\n%s" % (case, r.returncode, r.stderr[-3000:]))
    return json.loads(lines[-1][5:])


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[],
                    help="an older source tree to compare with (repeatable)")
    ap.add_argument("--cases", default="hang,die,fit")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    trees = [("this", None)] + [(t, os.path.abspath(t)) for t in args.tree]
    cases = args.cases.split(",")
    for name, tree in trees:                      # warm-up: numba's kernel cache of the tree
        print("warm-up", name, run_case("fit", tree)["file"], flush=True)
    res = {name: {c: [] for c in cases} for name, _ in trees}
    loads = []
    for i in range(args.runs):
        for c in cases:
            for name, tree in (trees if i % 2 == 0 else trees[::-1]):
                loads.append(_load())
                r = run_case(c, tree)
                res[name][c].append(r)
                print("run %d %-6s %-5s exc=%s end=%.2f first_epoch=%s" % (
                    i, name[-12:], c, r["exc"], r["end_s"], r.get("first_epoch_s")),
                    flush=True)
    summary = {}
    for name, _ in trees:
        summary[name] = {}
        for c in cases:
            for key in ("end_s", "first_epoch_s"):
                v = [r[key] for r in res[name][c] if r.get(key) is not None]
                if v:
                    summary[name]["%s.%s" % (c, key)] = {
                        "best": round(min(v), 2), "median": round(statistics.median(v), 2),
                        "worst": round(max(v), 2), "runs": len(v)}
            summary[name]["%s.exc" % c] = sorted({str(r["exc"]) for r in res[name][c]})
    load = [x for x in loads if x is not None]
    out = {"runs": args.runs, "load_1min": [round(min(load), 1), round(max(load), 1)] if load
           else None, "summary": summary, "raw": res}
    print(json.dumps(summary, indent=1))
    print("load average (1 min) during the runs: %s" % out["load_1min"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

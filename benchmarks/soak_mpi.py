"""Randomised fault soak of the MPI backend (issue 10).

Every run is a fresh Python process (``tests/mpi_scenarios.py SCENARIO``) in its own
session, and every fault is a real signal sent to a real spawned process at a random
moment: SIGKILL or SIGSTOP to a worker, SIGINT (Ctrl-C) to the caller, SIGKILL to the
caller. For each run the soak records

* caller death: the caller ended by a signal or without its RESULT line (a fault that
  should have become a Python exception killed or aborted it instead);
* hang: the run did not end within ``--timeout`` seconds (then its group is SIGKILLed);
* orphans: worker, launcher or proxy processes of that caller still alive 5 s after it
  ended (or, for Ctrl-C runs, while the caller was still alive);
* the exception and the fault-to-exception time;
* the next fit: ``ok`` (a new n_workers=2 estimator fit in the same process worked),
  ``refused`` (a clean MPIUnusableError "restart Python"), or anything else (a failure).
  Pool-level scenarios run the pool in the scenario process itself (as the fit's helper
  process does), so MPI there may be unusable after a hard death; the next fit goes
  through a fresh helper process and must work all the same;
* left-over launcher directories (``sksparse-mpi-<pid>-*`` in the temporary folder);
* left-over topology files: a ``/tmp/hydra_hwloc_xmlfile_*`` that a launcher proxy of the
  run held open (so it was this run's) and that still exists 5 s after the run ended.

Usage::

    python benchmarks/soak_mpi.py --faults 120 --seed 1 [--out benchmarks/results/soak.md]

It takes about 5 s per fault on 2 cores.
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = os.path.join(ROOT, "tests", "mpi_scenarios.py")
sys.path.insert(0, os.path.join(ROOT, "tests"))
import procs  # noqa: E402  (the /proc helpers of the MPI tests)

# scenario -> (weight, description)
MIX = {
    "kill_in_transfer": (3, "worker SIGKILL during 32 MB transfers"),
    "sigkill": (1, "worker SIGKILL during pool work"),
    "kill_in_close": (2, "worker SIGKILL during close()"),
    "start_killed": (1, "worker SIGKILL while starting"),
    "interrupt_spawn": (2, "Ctrl-C during Spawn"),
    "interrupt_send": (2, "Ctrl-C during 32 MB transfers"),
    "interrupt_close": (2, "Ctrl-C during close()"),
    "fit_kill_random": (3, "worker SIGKILL during a fit"),
    "fit_stop_random": (2, "worker SIGSTOP during a fit (worker_timeout=2)"),
    "fit_interrupt_random": (2, "Ctrl-C during a fit"),
    "parent_kill": (2, "caller SIGKILL during a fit"),
}


_alive = procs.alive


def _ours(ppid):
    """Live processes that belong to caller ``ppid``: its fits' helper processes and their
    workers (``--ppid``, transitively), and hydra launchers/proxies started for the caller
    or a helper (``--singleton-pid`` of its launcher, or its child)."""
    out = procs.workers_of(ppid)
    owners = {ppid} | set(out)
    for pid, cmd in procs.command_lines():
        try:
            with open("/proc/%d/stat" % pid) as f:
                ppid_n = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid_n in owners and cmd[0].endswith(b"mpiexec.hydra") and _alive(pid):
            out.append(pid)                       # its launcher
            out.extend(_proxies(pid))
    return out


def _proxies(hydra):
    key = [b"--singleton-pid", b"%d" % hydra]
    return [pid for pid, argv in procs.command_lines()
            if any(argv[i:i + 2] == key for i in range(len(argv) - 1)) and _alive(pid)]


def _launcher_dirs(pids):
    """Launcher folders of the processes ``pids`` (callers, helpers)."""
    prefixes = tuple("sksparse-mpi-%d-" % p for p in pids)
    return [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefixes)]


def run_one(name, timeout, python):
    env = dict(os.environ)
    env["SKSPARSE_SCENARIO_DUMP_AFTER"] = str(max(1, timeout - 10))
    env["SKSPARSE_NEXT_FIT"] = "1"           # every scenario tries the next fit
    real = "fit_interrupt_random" if name == "parent_kill" else name
    t0 = time.monotonic()
    proc = subprocess.Popen([python, SCENARIOS, real], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    rec = {"scenario": name, "pid": proc.pid}
    seen = set()
    topology = procs.TopologyWatch(proc.pid)
    if name == "parent_kill":
        # SIGKILL the caller at a random moment of its fit
        delay = random.uniform(1.0, 4.0)
        end = time.monotonic() + delay
        while time.monotonic() < end and proc.poll() is None:
            seen.update(_ours(proc.pid))
            time.sleep(0.05)
        rec["t_fault"] = time.monotonic()
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        out, err = proc.communicate(timeout=timeout)
        rec["hang"] = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rec["hang"] = True
    rec["wall_s"] = time.monotonic() - t0
    rec["rc"] = proc.returncode
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    res = json.loads(lines[-1][7:]) if lines else {}
    if name == "parent_kill":
        rec["caller_death"] = False              # the fault itself
        res = {"exc": "(caller killed)", "again": "n/a"}
    else:
        rec["caller_death"] = not rec["hang"] and (proc.returncode != 0 or not lines)
    if rec["caller_death"]:
        rec["stderr_tail"] = err[-1500:]
    # orphans: anything of this caller still alive 5 s after it ended
    end = time.monotonic() + 5.0
    left = _ours(proc.pid) + [p for p in seen if _alive(p)]
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = _ours(proc.pid) + [p for p in seen if _alive(p)]
    left += [p for p in res.get("pids", []) if _alive(p)]
    rec["orphans"] = sorted(set(left)) + list(res.get("left_while_alive") or [])
    rec["orphan_info"] = []
    for p in rec["orphans"]:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()[:160]
            rec["orphan_info"].append("%d %s %s" % (p, st, cmd))
        except OSError:
            pass
    for p in set(left):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    time.sleep(0.3)
    rec["owners"] = sorted({proc.pid} | seen | set(res.get("pids", [])))
    rec["dirs_left"] = _launcher_dirs(rec["owners"])
    rec["topology_left"] = topology.left(wait=5.0)
    rec["exc"] = res.get("exc")
    rec["detect_s"] = res.get("detect_s", res.get("stop_s"))
    again = res.get("next_fit", res.get("again"))
    if again is None:
        rec["next"] = "n/a" if name == "parent_kill" else "missing"
    elif again == "ok":
        rec["next"] = "ok"
    elif again == "n/a":
        rec["next"] = "n/a"
    elif "MPIUnusableError" in again or "restart Python" in again:
        rec["next"] = "refused"
    else:
        rec["next"] = "FAILED: " + again[:200]
    rec["warnings"] = res.get("warnings")
    return rec


def versions(python):
    """``mpich X, mpi4py Y`` of the interpreter the scenarios run with."""
    out = subprocess.run([python, "-c", "from importlib.metadata import version as v; "
                          "print('mpich %s, mpi4py %s' % (v('mpich'), v('mpi4py')))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "versions unknown"


def table(recs):
    rows = ["| scenario | runs | caller deaths | hangs | orphans | dirs left | topology files "
            "left | outcomes | fault-to-exception s (median / max) | "
            "next fit ok / refused / failed |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    names = [n for n in MIX if any(r["scenario"] == n for r in recs)]
    tot = {"runs": 0, "deaths": 0, "hangs": 0, "orphans": 0, "dirs": 0, "topo": 0}
    for n in names:
        rs = [r for r in recs if r["scenario"] == n]
        outc = {}
        for r in rs:
            k = r["exc"] or "(no exception)"
            if r["warnings"]:
                k += "+warning"
            outc[k] = outc.get(k, 0) + 1
        ds = [r["detect_s"] for r in rs if isinstance(r["detect_s"], (int, float))]
        det = "%.3f / %.3f" % (statistics.median(ds), max(ds)) if ds else "-"
        ok = sum(r["next"] == "ok" for r in rs)
        ref = sum(r["next"] == "refused" for r in rs)
        na = sum(r["next"] == "n/a" for r in rs)
        bad = len(rs) - ok - ref - na
        d = sum(r["caller_death"] for r in rs)
        h = sum(r["hang"] for r in rs)
        o = sum(bool(r["orphans"]) for r in rs)
        dl = sum(bool(r["dirs_left"]) for r in rs)
        # "-": a run of a soak from before this column
        tl = sum(len(r["topology_left"]) for r in rs if "topology_left" in r)
        tl = "%d" % tl if any("topology_left" in r for r in rs) else "-"
        for key, k in (("runs", len(rs)), ("deaths", d), ("hangs", h), ("orphans", o),
                       ("dirs", dl), ("topo", 0 if tl == "-" else int(tl))):
            tot[key] += k
        rows.append("| %s (%s) | %d | %d | %d | %d | %d | %s | %s | %s | %s |" % (
            n, MIX[n][1], len(rs), d, h, o, dl, tl,
            ", ".join("%s %d" % kv for kv in sorted(outc.items())), det,
            ("%d / %d / %d" % (ok, ref, bad)) if na < len(rs) else "n/a"))
    rows.append("| **total** | %(runs)d | %(deaths)d | %(hangs)d | %(orphans)d | %(dirs)d | "
                "%(topo)d | | | |" % tot)
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--only", default=None, help="comma-separated scenarios")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", default=None, help="write the markdown table (and a .json, "
                    "updated after every run)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="only write the table of the runs in these .json files to --out")
    a = ap.parse_args()
    if a.merge:
        recs = [r for path in a.merge for r in json.load(open(path))]
        md = table(recs)
        print(md)
        if a.out:
            with open(a.out, "w") as f:
                f.write("Soak: %d faults (%s)\n\n%s\n" % (len(recs), ", ".join(
                    os.path.basename(p) for p in a.merge), md))
        return 0
    random.seed(a.seed)
    names = a.only.split(",") if a.only else list(MIX)
    # every scenario at least once, then weighted random picks
    plan = list(names) + random.choices(names, weights=[MIX[n][0] for n in names],
                                        k=max(0, a.faults - len(names)))
    random.shuffle(plan)
    recs = []
    t0 = time.monotonic()
    for i, name in enumerate(plan):
        rec = run_one(name, a.timeout, a.python)
        recs.append(rec)
        flag = ("DEATH " if rec["caller_death"] else "") + ("HANG " if rec["hang"] else "") + \
               ("ORPHANS %s " % rec["orphans"] if rec["orphans"] else "") + \
               ("DIRS " if rec["dirs_left"] else "") + \
               ("TOPOLOGY-FILES " if rec["topology_left"] else "") + \
               ("NEXT-FAILED " if rec["next"].startswith("FAILED") else "")
        print("[%3d/%d %6.0fs] %-22s %-18s detect=%-8s next=%-8s %.1fs %s" % (
            i + 1, len(plan), time.monotonic() - t0, name, rec["exc"],
            ("%.3f" % rec["detect_s"]) if isinstance(rec["detect_s"], (int, float)) else "-",
            rec["next"][:8], rec["wall_s"], flag), flush=True)
        if rec["orphans"]:
            print("   orphans:", rec["orphan_info"], rec.get("exc"), flush=True)
        if rec.get("stderr_tail"):
            print(rec["stderr_tail"], flush=True)
        if a.out:                        # a stopped soak keeps what it measured
            with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
                json.dump(recs, f, indent=1)
    md = table(recs)
    # a caller SIGKILLed before its first Spawn has no launcher to remove its folder: the
    # next caller's first spawn does. After one more (healthy) run, what is left?
    run_one("healthy", a.timeout, a.python)
    left = [d for r in recs for d in _launcher_dirs(r["owners"])]
    md += ("\n\nLauncher folders left after a final healthy run: %d (of %d runs that left one "
           "right after they ended)." % (len(left), sum(bool(r["dirs_left"]) for r in recs)))
    print()
    print(md)
    if a.out:
        with open(a.out, "w") as f:
            f.write("Soak: %d faults, seed %d, %s, %s, %.0f s\n\n%s\n"
                    % (len(recs), a.seed, versions(a.python),
                       time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       time.monotonic() - t0, md))
        with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
            json.dump(recs, f, indent=1)
    bad = sum(r["caller_death"] or r["hang"] or bool(r["orphans"]) or bool(r["topology_left"]) or
              r["next"].startswith("FAILED") or r["next"] == "missing" for r in recs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""MPI failure scenarios, each run in its own subprocess by tests/test_parallel.py.

Usage: python tests/mpi_scenarios.py SCENARIO
Prints one line ``RESULT {json}`` at the end. A worker that dies hard poisons MPICH for
the whole process (and hydra acts on process groups), hence one process per scenario.
"""
import json
import os
import signal
import sys
import time

import procs


def _bare_package():
    """Register ``sksparse_mlp`` as a bare namespace, as the helper process hosting a fit's
    pool does (``parallel/_boot.py``): its ``__init__`` imports scikit-learn (2-4 s)."""
    import types
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pkg = types.ModuleType("sksparse_mlp")
    pkg.__path__ = [os.path.join(here, "sksparse_mlp")]
    sys.modules["sksparse_mlp"] = pkg


def _pool_module(bare):
    if bare:
        _bare_package()
    try:
        from sksparse_mlp.parallel import _pool
    except ImportError:          # package __init__ not importable: load the subpackage alone
        _bare_package()
        from sksparse_mlp.parallel import _pool
    return _pool


def _related_pids(pool):
    """Workers, our hydra launcher(s) and their children (proxies)."""
    from sksparse_mlp.parallel._procs import own_launchers, proc_state
    pids = set(pool.pids.values())
    launchers = own_launchers()
    pids.update(launchers)
    for n in os.listdir("/proc"):
        if n.isdigit():
            st = proc_state(int(n))
            if st is not None and (st[1] in launchers or st[2] in launchers):
                pids.add(int(n))
    return sorted(pids)


def _cpu_s(pid, tick):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def _setup(pool, fault=None):
    for r in range(pool.n):
        pool.send(("setup", {"fault": fault}), r)
    for r in range(pool.n):
        pool.recv(r)


def _run_work(pool, n_steps, step_s):
    from sksparse_mlp.parallel._protocol import TAG_HB, TAG_RES
    for r in range(pool.n):
        pool.send(("work", n_steps, step_s), r)
    done = 0
    while done < pool.n:
        src, tag, m = pool.wait_any([TAG_HB, TAG_RES])
        m.recv()
        if tag == TAG_RES:
            done += 1


def _try_again(_pool):
    """After a failure: does a new pool work (ok), or refuse cleanly (poisoned)?"""
    try:
        with _pool.Pool(2, timeout=10) as p:
            _setup(p)
            _run_work(p, 2, 0.01)
        return "ok"
    except Exception as e:
        return "%s: %s" % (type(e).__name__, str(e)[:200])


# pool-level scenarios after which the next estimator fit is always tried (the others
# when SKSPARSE_NEXT_FIT is set): hard deaths leave MPI unusable in this process, the
# next fit must work anyway (its MPI world is a fresh helper process)
NEXT_FIT = ("kill", "abort", "sigkill", "start_die", "bad_host", "die_after_bye")


def _next_fit():
    """After a fault: does the next n_workers=2 fit in this process work? (It runs in a
    fresh helper process whatever MPI state this process is in.)"""
    try:
        import numpy as np
        from sksparse_mlp._estimators import TrulySparseMLPClassifier   # bare package too
        rng = np.random.default_rng(0)
        X = rng.standard_normal((200, 6))
        y = (X[:, 0] > 0).astype(int)
        clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                                       n_workers=2, worker_timeout=30.0).fit(X, y)
        return "ok" if clf.n_iter_ == 2 else "n_iter_=%d" % clf.n_iter_
    except Exception as e:
        return "%s: %s" % (type(e).__name__, str(e)[:200])


def _kill_first_worker(out, find, within):
    """SIGKILL the first process ``find(our pid)`` lists, as soon as it appears (a worker
    while starting), from a thread; the moment goes to ``out["t_kill"]``."""
    import threading

    def killer():
        end = time.monotonic() + within
        while time.monotonic() < end:
            for pid in find(os.getpid()):
                out["t_kill"] = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.002)
    threading.Thread(target=killer, daemon=True).start()


def _fault_thread(action, delay, seen, timeout=60.0):
    """Once this process's fit has spawned its workers (through its helper), wait
    ``delay`` s and call ``action(workers)`` unless the fit ended first."""
    import threading

    def run():
        end = time.monotonic() + timeout
        while time.monotonic() < end and seen.get("running", True):
            w = procs.local_workers_of_caller(os.getpid())
            if len(w) >= 2:
                helper = procs.helper_of(os.getpid()) or 0
                seen["pids"] = sorted(set(w + [helper] + procs.children_of(helper)))
                time.sleep(delay)
                if seen.get("running", True):
                    seen["t"] = time.monotonic()
                    action(w)
                return
            time.sleep(0.005)
    threading.Thread(target=run, daemon=True).start()


def _healthy(_pool, out, info=None):
    """Spawn a pool, run work, measure idle workers' CPU, close, try a second pool."""
    with _pool.Pool(2, timeout=10, mpi_info=info) as pool:
        out["spawn_s"] = pool.stats["spawn_s"]
        pids = _related_pids(pool)
        _setup(pool)
        _run_work(pool, 3, 0.01)
        # idle workers must not busy-poll: CPU time used over 1 s of idleness
        tick = os.sysconf("SC_CLK_TCK")
        cpu0 = [_cpu_s(p, tick) for p in pool.pids.values()]
        time.sleep(1.0)
        cpu1 = [_cpu_s(p, tick) for p in pool.pids.values()]
        out["idle_cpu_s"] = [b - a for a, b in zip(cpu0, cpu1)]
    out["again"] = _try_again(_pool)
    out["launched_by_mpiexec"] = __import__("sksparse_mlp.parallel._mpi",
                                            fromlist=["x"]).launched_by_mpiexec()
    return pids


# scenarios that fit in this process (the caller's view): the whole package, as a user has it
FITS_HERE = ("tiny_fit_then_healthy", "no_mpi", "no_mpi_fit")


def main(name):
    _pool = _pool_module(bare=not (name.startswith("fit_") or name in FITS_HERE))
    out = {"scenario": name}
    pids = []
    t_fail = None
    t0 = time.monotonic()
    try:
        if name in ("healthy", "mpi_info_host"):
            info = {"host": __import__("socket").gethostname()} if name == "mpi_info_host" else None
            pids = _healthy(_pool, out, info)
        elif name == "fit_interrupt":                      # Ctrl-C during an n_workers=2 fit
            import threading
            import numpy as np
            from sklearn.datasets import make_classification
            from sksparse_mlp import TrulySparseMLPClassifier
            from sklearn.utils.validation import check_is_fitted
            X, y = make_classification(n_samples=3000, n_features=20, random_state=0)
            clf = TrulySparseMLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0,
                                           n_workers=2, worker_timeout=60, tol=0.0,
                                           n_iter_no_change=10 ** 6)
            seen = {}
            _fault_thread(lambda w: os.kill(os.getpid(), signal.SIGINT), 2.0, seen)
            try:
                clf.fit(X, y)
            except KeyboardInterrupt:
                out["exc"] = "KeyboardInterrupt"
                out["stop_s"] = time.monotonic() - seen["t"]
                out["where"] = __import__("traceback").format_exc()[-3000:]
            seen["running"] = False
            time.sleep(0.5)
            out["left_while_alive"] = procs.workers_of(os.getpid())
            try:
                check_is_fitted(clf)
                out["fitted"] = True
            except Exception:
                out["fitted"] = False
            pids = seen.get("pids", [])
            out["again"] = _next_fit()
        elif name in ("raise", "exit", "kill", "abort"):
            with _pool.Pool(2, timeout=30) as pool:
                pids = _related_pids(pool)
                _setup(pool, {"rank": 1, "kind": name, "where": "step", "after": 3})
                t_fail = time.monotonic() + 3 * 0.05      # the fault fires after 3 steps
                _run_work(pool, 100, 0.05)
        elif name == "raise_in_Recv":
            # the parent is inside Recv (an Irecv posted) when another worker reports an error:
            # the orderly close must retire that receive, or Disconnect waits for it forever
            import numpy as np
            with _pool.Pool(2, timeout=30) as pool:
                pids = _related_pids(pool)
                _setup(pool, {"rank": 1, "kind": "raise", "where": "step", "after": 2})
                for r in range(pool.n):
                    pool.send(("work", 100, 0.02), r)
                t_fail = time.monotonic() + 2 * 0.02
                pool.Recv(np.empty(4), 0)                  # worker 0 never sends a buffer
        elif name == "interrupted_receives":
            # Ctrl-C can land between a probe that matched a message and its receive, or
            # while an Irecv is posted: close() must retire both, then Disconnect normally
            import warnings
            import numpy as np
            from sksparse_mlp.parallel._protocol import TAG_HB
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                with _pool.Pool(2, timeout=30, close_timeout=5.0) as pool:
                    pids = _related_pids(pool)
                    _setup(pool)
                    for r in range(pool.n):
                        pool.send(("work", 1000, 0.01), r)
                    pool.wait_any([TAG_HB])                    # matched, never received
                    buf = np.empty(4)                          # what Recv registers first
                    pool._recvs.append((pool.comm.Irecv(buf, source=1, tag=98), buf))
                    t1 = time.monotonic()
            out["close_s"] = time.monotonic() - t1
            out["warnings"] = [str(x.message) for x in w]
        elif name == "disconnect_hangs":
            # a request the pool does not know about keeps MPICH's Disconnect waiting forever:
            # close() must give up after close_timeout, kill the workers and warn
            import warnings
            import numpy as np
            pool = _pool.Pool(2, timeout=30, close_timeout=2.0)
            pids = _related_pids(pool)
            _setup(pool)
            stray = pool.comm.Irecv(np.empty(4), source=0, tag=99)   # never matched
            t1 = time.monotonic()
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                pool.close()
            out["close_s"] = time.monotonic() - t1
            out["warnings"] = [str(x.message) for x in w]
        elif name == "sigkill":                            # SIGKILL from outside, mid-run
            with _pool.Pool(2, timeout=30) as pool:
                pids = _related_pids(pool)
                _setup(pool)
                victim = pool.pids[1]
                import threading

                def killer():
                    time.sleep(0.5)
                    out["t_kill"] = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                threading.Thread(target=killer, daemon=True).start()
                _run_work(pool, 1000, 0.02)
        elif name in ("start_die", "start_killed", "bad_host", "unreachable_host"):
            # start-up failures: a worker that dies before MPI_Init (by itself, or SIGKILLed
            # from outside as soon as it appears), a host name that does not resolve, a host
            # without sshd. Reported within the timeout (5 s), or at once when the launcher
            # exits, quoting the launcher's message
            flags, info = [], None
            if name == "start_die":
                flags = ["--die-before-init"]
            elif name == "bad_host":
                info = {"host": "nonexistent-host-xyz.invalid"}
            elif name == "unreachable_host":
                info = {"host": "127.0.0.2"}
            elif name == "start_killed":
                _kill_first_worker(out, procs.workers_of, within=10)
            t_fail = time.monotonic()
            pool = _pool.Pool(2, timeout=5, spawn_timeout=5.0, mpi_info=info, worker_flags=flags)
            pids = _related_pids(pool)
            pool.close()
        elif name in ("die_after_bye", "kill_in_close"):
            # a worker that dies during close() or while exiting after its goodbye: close()
            # warns, and the next pool raises MPIUnusableError (never a segfault or a hang)
            import random
            import threading
            import warnings
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                pool = _pool.Pool(2, timeout=30)
                pids = _related_pids(pool)
                fault = ({"rank": 1, "kind": "kill", "where": "disconnected"}
                         if name == "die_after_bye" else None)
                _setup(pool, fault)
                _run_work(pool, 2, 0.01)
                if name == "kill_in_close":
                    victim = pool.pids[1]
                    delay = random.uniform(0.0, 0.12)
                    out["kill_after"] = delay

                    def killer():
                        time.sleep(delay)
                        os.kill(victim, signal.SIGKILL)
                    threading.Thread(target=killer, daemon=True).start()
                t1 = time.monotonic()
                pool.close()
                out["close_s"] = time.monotonic() - t1
                time.sleep(0.2)
            out["warnings"] = [str(x.message) for x in w]
            out["again"] = _try_again(_pool)
        elif name in ("interrupt_spawn", "interrupt_send", "interrupt_close",
                      "interrupt_after_spawn"):
            # Ctrl-C (a real SIGINT) at a random moment of Spawn, of a large transfer, or of
            # close(): KeyboardInterrupt at once (close: once it finished), no process left
            # while the caller lives on, and MPI still usable
            import random
            import threading
            import numpy as np
            lo, hi = {"interrupt_spawn": (0.0, 0.5), "interrupt_send": (0.05, 0.5),
                      "interrupt_close": (0.0, 0.12), "interrupt_after_spawn": (0, 0)}[name]
            delay = random.uniform(lo, hi)
            out["delay"] = delay

            def interrupter():
                time.sleep(delay)
                out["t_int"] = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
            pool = None
            try:
                if name == "interrupt_spawn":
                    threading.Thread(target=interrupter, daemon=True).start()
                    # held as the engine holds it (_start.start): a Ctrl-C that comes
                    # after the spawn, which a fast host finishes within the 0.5 s, closes
                    # it on the way out
                    with _pool.Pool(2, timeout=30) as pool:
                        out["phase"] = "after spawn"
                        pids = _related_pids(pool)
                        _setup(pool)
                        time.sleep(2.0)
                elif name == "interrupt_after_spawn":
                    # a real SIGINT the moment Spawn has returned, before the workers'
                    # hellos: the window a random delay rarely hits
                    spawn = _pool.Pool._spawn

                    def spawn_then_interrupt(self, *args):
                        comm = spawn(self, *args)
                        out["t_int"] = time.monotonic()
                        os.kill(os.getpid(), signal.SIGINT)
                        time.sleep(1.0)  # the handler raises here
                        return comm
                    _pool.Pool._spawn = spawn_then_interrupt
                    try:
                        pool = _pool.Pool(2, timeout=30)
                    finally:
                        _pool.Pool._spawn = spawn
                    out["phase"] = "after start"
                    pool.close()
                elif name == "interrupt_send":
                    n = 4 * 1024 * 1024
                    with _pool.Pool(2, timeout=30) as pool:
                        pids = _related_pids(pool)
                        _setup(pool)
                        buf = np.ones(n)
                        for r in range(2):
                            pool.send(("echo", n, 10 ** 6), r)
                        threading.Thread(target=interrupter, daemon=True).start()
                        while True:
                            for r in range(2):
                                pool.Send(buf, r)
                            for r in range(2):
                                pool.Recv(buf, r)
                else:
                    pool = _pool.Pool(2, timeout=30)
                    pids = _related_pids(pool)
                    _setup(pool)
                    _run_work(pool, 2, 0.01)
                    threading.Thread(target=interrupter, daemon=True).start()
                    t1 = time.monotonic()
                    pool.close()
                    out["close_s"] = time.monotonic() - t1
                    time.sleep(0.5)
            except KeyboardInterrupt:
                out["exc"] = "KeyboardInterrupt"
                out["stop_s"] = time.monotonic() - out["t_int"]
                out["where"] = __import__("traceback").format_exc()[-1500:]
            time.sleep(1.0)          # the caller lives on: nothing of ours may be running
            out["left_while_alive"] = procs.workers_of(os.getpid())
            if os.environ.get("SKSPARSE_DEBUG_LAUNCHER"):
                st = {}
                for p in _pool.launcher_exits():
                    try:
                        st[p] = os.waitpid(p, os.WNOHANG)
                    except ChildProcessError as e:
                        st[p] = str(e)
                out["launcher_status"] = str(st)
                out["start_interrupt"] = dict(_pool.last_start_interrupt)
            if not pids and pool is not None:
                pids = sorted(pool.pids.values())
            out["again"] = _try_again(_pool)
        elif name in ("fit_start_die", "fit_start_hang", "fit_start_killed"):
            # estimator level: start-up failures are reported within worker_timeout (3 s),
            # not after a fixed 180 s
            from sklearn.datasets import make_classification
            from sksparse_mlp import TrulySparseMLPClassifier
            from sksparse_mlp.parallel import _testing
            # fit_start_hang: a plan (2.4 MB) larger than the socket's buffers, so the
            # caller is still sending it when the helper reports the failure
            X, y = make_classification(n_samples=300, n_features=1000 if name == "fit_start_hang"
                                       else 10, random_state=0)
            flag = {"fit_start_die": "--die-before-init",
                    "fit_start_hang": "--hang-before-init"}.get(name)
            _testing.hooks["worker_flags"] = [flag] if flag else None
            if name == "fit_start_killed":
                # a worker SIGKILLed from outside as soon as it appears (MPICH's Spawn in
                # the process hosting MPI may then crash it: here that is the fit's
                # throw-away helper, never the caller)
                _kill_first_worker(out, procs.local_workers_of_caller, within=20)
            clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                                           n_workers=2, worker_timeout=3.0)
            t_fail = time.monotonic()
            try:
                clf.fit(X, y)
            except Exception:
                out["t_exc"] = time.monotonic()     # not counting the next fit below
                raise
            finally:
                _testing.hooks["worker_flags"] = None
                out["left_while_alive"] = procs.workers_of(os.getpid())
                out["again"] = _next_fit()
        elif name in ("fit_kill_random", "fit_stop_random", "fit_interrupt_random"):
            # a real WASAP-SGD fit; at a random moment (set-up, data sending, phase 1,
            # phase 2) a worker gets SIGKILL or SIGSTOP, or the caller gets SIGINT. Then: is
            # the estimator unchanged, and does the next n_workers=2 fit work?
            import random
            import threading
            import numpy as np
            from sklearn.datasets import make_classification
            from sksparse_mlp import TrulySparseMLPClassifier
            X, y = make_classification(n_samples=2000, n_features=40, random_state=0)
            epochs = int(os.environ.get("SKSPARSE_FIT_EPOCHS", "300"))
            clf = TrulySparseMLPClassifier(hidden_layer_sizes=(64, 64), max_iter=epochs,
                                           random_state=0, n_workers=2, worker_timeout=2.0,
                                           tol=0.0, n_iter_no_change=10 ** 6)
            delay = random.uniform(0.0, float(os.environ.get("SKSPARSE_FAULT_WINDOW", "3.0")))
            out["delay"] = delay
            seen = {"running": True}

            def fault(workers):
                if name == "fit_interrupt_random":
                    os.kill(os.getpid(), signal.SIGINT)
                else:
                    os.kill(random.choice(sorted(workers)),
                            signal.SIGKILL if name == "fit_kill_random" else signal.SIGSTOP)
            _fault_thread(fault, delay, seen)
            try:
                clf.fit(X, y)
                seen["running"] = False
                out["exc"] = None
            except BaseException as e:        # KeyboardInterrupt too
                seen["running"] = False
                out["exc"] = type(e).__name__
                out["msg"] = str(e)[:500]
                if "t" in seen:
                    out["detect_s"] = time.monotonic() - seen["t"]
            out["fault_fired"] = "t" in seen
            out["fitted"] = hasattr(clf, "coefs_")
            pids = seen.get("pids", [])
            time.sleep(0.5)
            out["left_while_alive"] = procs.workers_of(os.getpid())
            out["again"] = _next_fit()
            print("RESULT " + json.dumps(dict(out, pids=pids)), flush=True)
            return
        elif name == "env_check":
            # the transport settings the package applies, in the caller and the workers
            with _pool.Pool(2, timeout=30) as pool:
                pids = _related_pids(pool)
                out["parent_env"] = os.environ.get("UCX_TLS")
                pool.send(("getenv", ["UCX_TLS"]), 0)
                out["worker_env"] = pool.recv(0)["UCX_TLS"]
                out["args"] = open("/proc/%d/cmdline" % pool.pids[0]).read().split("\0")
        elif name == "kill_in_transfer":
            # worker 1 echoes 32 MB buffers (large rendezvous transfers both ways) and is
            # SIGKILLed from outside at a random moment: the caller must get WorkerDied,
            # never be aborted by the transport (UCX cma: process_vm_readv on a dead pid)
            import random
            import threading
            import numpy as np
            n = 4 * 1024 * 1024
            with _pool.Pool(2, timeout=30) as pool:
                pids = _related_pids(pool)
                _setup(pool)
                victim = pool.pids[1]
                buf = np.ones(n)
                out["ucx_tls"] = os.environ.get("UCX_TLS")
                delay = random.uniform(0.05, 0.6)
                out["kill_after"] = delay

                def killer():
                    time.sleep(delay)
                    out["t_kill"] = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                pool.send(("echo", n, 10 ** 6), 1)
                threading.Thread(target=killer, daemon=True).start()
                rounds = 0
                while True:
                    pool.Send(buf, 1)
                    pool.Recv(buf, 1)
                    rounds += 1
                    out["rounds"] = rounds
        elif name == "stall":
            with _pool.Pool(2, timeout=1.5) as pool:
                pids = _related_pids(pool)
                _setup(pool, {"rank": 0, "kind": "stall", "where": "step", "after": 2})
                t_fail = time.monotonic() + 2 * 0.02 + 1.5
                _run_work(pool, 1000, 0.02)
        elif name == "import_error":
            pool = _pool.Pool(2, timeout=10, worker_flags=["--fail-import"])
            pool.close()
        elif name == "interrupt":                          # Ctrl-C (SIGINT) during work
            import threading
            with_pids = {}
            try:
                with _pool.Pool(2, timeout=30) as pool:
                    with_pids["p"] = _related_pids(pool)
                    _setup(pool)

                    def interrupter():
                        time.sleep(0.5)
                        os.kill(os.getpid(), signal.SIGINT)
                    threading.Thread(target=interrupter, daemon=True).start()
                    _run_work(pool, 1000, 0.02)
            except KeyboardInterrupt:
                out["exc"] = "KeyboardInterrupt"
                out["stop_s"] = time.monotonic() - t0 - 0.5
            pids = with_pids.get("p", [])
            out["again"] = _try_again(_pool)
        elif name == "interrupt_bye_unread":
            # Ctrl-C during work, and during the close the server looks at a worker's pid
            # only once that worker exited: after its bye, before the server received it
            # (what a drain of a large message or a descheduled server leads to). The
            # worker did not die: the close must stay orderly and MPI usable.
            import threading
            import warnings
            from sksparse_mlp.parallel import _procs
            real_alive, waited = _procs.pid_alive, set()

            def late_alive(pid):
                if pid in workers and pid not in waited:
                    waited.add(pid)
                    end = time.monotonic() + 3.0
                    while real_alive(pid) and time.monotonic() < end:
                        time.sleep(0.005)
                return real_alive(pid)
            workers = set()
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    with _pool.Pool(2, timeout=30) as pool:
                        pids = _related_pids(pool)
                        _setup(pool)
                        close = pool.close

                        def close_late(*a, **k):         # the hook covers the close only
                            workers.update(pool.pids.values())
                            _procs.pid_alive = late_alive
                            try:
                                return close(*a, **k)
                            finally:
                                _procs.pid_alive = real_alive
                        pool.close = close_late

                        def interrupter():
                            time.sleep(0.3)
                            out["t_int"] = time.monotonic()
                            os.kill(os.getpid(), signal.SIGINT)
                        threading.Thread(target=interrupter, daemon=True).start()
                        _run_work(pool, 1000, 0.01)
                except KeyboardInterrupt:
                    out["exc"] = "KeyboardInterrupt"
                    out["stop_s"] = time.monotonic() - out["t_int"]
            out["waited"] = len(waited)
            out["warnings"] = [str(x.message) for x in w]
            time.sleep(1.0)
            out["left_while_alive"] = procs.workers_of(os.getpid())
            out["again"] = _try_again(_pool)
        elif name in ("interrupt_in_Irecv", "interrupt_in_improbe"):
            # Ctrl-C (a real SIGINT) while the call that posts a receive or matches a
            # message returns: Python raises it as the call returns, before the pool
            # recorded the new handle; close() must still retire it (else MPICH's
            # Disconnect never returns: 3 s, workers killed, MPI unusable)
            import warnings
            import numpy as np
            call = name.rsplit("_", 1)[1]

            class SignalOnReturn:
                """The pool's communicator, with a SIGINT sent from inside ``call``."""

                def __init__(self, comm):
                    self._comm = comm

                def __getattr__(self, attr):
                    return getattr(self._comm, attr)

                def _hit(self, result):
                    if result is not None and "t_int" not in out:
                        out["t_int"] = time.monotonic()
                        os.kill(os.getpid(), signal.SIGINT)
                    return result

                def Irecv(self, *a, **k):
                    return self._hit(self._comm.Irecv(*a, **k))

                def improbe(self, *a, **k):
                    return self._hit(self._comm.improbe(*a, **k))
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    with _pool.Pool(2, timeout=30) as pool:
                        pids = _related_pids(pool)
                        _setup(pool)
                        if call == "improbe":
                            pool.send(("ping", 1), 0)
                        pool.comm = SignalOnReturn(pool.comm)
                        if call == "Irecv":
                            pool.Recv(np.empty(4), 0)          # a buffer that never comes
                        else:
                            pool.recv(0)                       # the pong
                except KeyboardInterrupt:
                    out["exc"] = "KeyboardInterrupt"
                    out["stop_s"] = time.monotonic() - out["t_int"]
            out["warnings"] = [str(x.message) for x in w]
            time.sleep(1.0)
            out["left_while_alive"] = procs.workers_of(os.getpid())
            out["again"] = _try_again(_pool)
        elif name == "parent_dies":
            # the test kills this process (SIGKILL) once it printed the pids
            pool = _pool.Pool(2, timeout=30)
            _setup(pool)
            print("PIDS " + json.dumps(_related_pids(pool)), flush=True)
            time.sleep(600)
        elif name == "fit_die_after_bye":
            # a worker dies after its goodbye: the fit completes, its warning reaches this
            # process (from the helper), and the next fit works
            import warnings
            import numpy as np
            from sksparse_mlp import TrulySparseMLPClassifier
            from sksparse_mlp.parallel import _testing
            X = np.random.default_rng(0).random((200, 6))
            _testing.hooks["fault"] = {"rank": 1, "kind": "kill", "where": "disconnected"}
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=2,
                                                   n_workers=2).fit(X, X[:, 0] > 0.5)
                finally:
                    _testing.hooks["fault"] = None
            out["n_iter_"] = clf.n_iter_
            out["warnings"] = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
            out["again"] = _next_fit()
        elif name == "tiny_fit_then_healthy":
            # under mpiexec: the server of a fit runs in this process (no helper), then the
            # pool checks of "healthy" (one mpiexec run for both)
            out["mpi_before"] = "mpi4py.MPI" in sys.modules
            out["fit"] = _next_fit()
            out["mpi_in_caller"] = "mpi4py.MPI" in sys.modules
            out["fit_launched_by_mpiexec"] = __import__("sksparse_mlp.parallel._protocol",
                                                        fromlist=["x"]).launched_by_mpiexec()
            pids = _healthy(_pool, out)
        elif name == "fit_parent_dies":
            # the test kills this process (SIGKILL) during a fit, once the workers run
            import numpy as np
            from sksparse_mlp import TrulySparseMLPClassifier
            X = np.random.default_rng(0).random((400, 8))
            seen = {}
            _fault_thread(lambda w: print("PIDS " + json.dumps(seen["pids"]), flush=True),
                          0.2, seen)
            TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=10 ** 6, tol=0.0,
                                     n_iter_no_change=10 ** 9, n_workers=2).fit(X, X[:, 0] > 0.5)
        elif name == "fit_failures":
            # estimator level: a fitted model, then a failing n_workers=2 fit of each kind
            # (worker raises, worker killed, worker stalls), each followed by the next
            # n_workers=2 fit. One process for the three: each fit has its own helper
            # process, so a fault cannot reach the next fit through this one
            import tempfile
            import numpy as np
            from sklearn.datasets import make_classification
            from sksparse_mlp import TrulySparseMLPClassifier
            from sksparse_mlp.parallel import _testing
            X, y = make_classification(n_samples=600, n_features=10, random_state=0)
            clf = TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                                           n_workers=2, worker_timeout=60.0)
            clf.fit(X, y)
            out["kinds"] = {}
            for kind in ("raise", "kill", "stall"):
                r = out["kinds"][kind] = {}
                before = [W.toarray() for W in clf.coefs_]
                r["n_iter_before"] = clf.n_iter_
                stamp = os.path.join(tempfile.mkdtemp(), "stamp")
                _testing.hooks["fault"] = {"rank": 1, "kind": kind, "where": "step", "after": 5,
                                           "stamp": stamp}
                clf.set_params(max_iter=50, worker_timeout=2.0 if kind == "stall" else 60.0)
                try:
                    clf.fit(X, y)
                except Exception as e:
                    r["fit_exc"] = type(e).__name__
                    r["fit_msg"] = str(e)[:2000]
                    if os.path.exists(stamp):          # else it failed before the fault
                        with open(stamp) as f:
                            r["detect_s"] = time.time() - float(f.read())
                finally:
                    _testing.hooks["fault"] = None
                r["kept_state"] = all(np.array_equal(a, W.toarray())
                                      for a, W in zip(before, clf.coefs_))
                r["n_iter_"] = clf.n_iter_
                try:
                    # as many epochs as the first fit: the next kind starts from n_iter_=3
                    clf.set_params(max_iter=3, worker_timeout=60.0).fit(X, y)
                    r["refit2"] = "ok"
                except Exception as e:
                    r["refit2"] = "%s: %s" % (type(e).__name__, str(e)[:300])
            # the caller of all these n_workers=2 fits (failed ones too) never loaded MPI
            out["caller_imported_mpi4py"] = "mpi4py" in sys.modules
            clf.set_params(n_workers=1).fit(X, y)
            out["refit1"] = "ok"
        elif name in ("no_mpi", "no_mpi_fit"):
            sys.modules["mpi4py"] = None                   # as if mpi4py were not installed
            if name == "no_mpi":
                from sksparse_mlp.parallel import _mpi
                _mpi.get_mpi()
            import numpy as np
            from sksparse_mlp import TrulySparseMLPClassifier
            X = np.random.default_rng(0).random((40, 3))
            TrulySparseMLPClassifier(max_iter=1, n_workers=2).fit(X, X[:, 0] > 0.5)
        else:
            raise SystemExit("unknown scenario " + name)
        out["exc"] = out.get("exc")
    except Exception as e:
        t = out.pop("t_exc", None) or time.monotonic()
        out["exc"] = type(e).__name__
        out["bases"] = [c.__name__ for c in type(e).__mro__]
        out["msg"] = str(e)[:3000]
        out["elapsed"] = t - t0
        if "t_kill" in out:
            out["detect_s"] = t - out["t_kill"]
        elif t_fail is not None:
            out["detect_s"] = t - t_fail
        if name in ("raise", "raise_in_Recv", "exit", "kill", "abort", "sigkill", "stall",
                    "import_error", "kill_in_transfer", "start_die", "start_killed",
                    "bad_host", "unreachable_host"):
            out["again"] = _try_again(_pool)
    if name in NEXT_FIT or os.environ.get("SKSPARSE_NEXT_FIT"):
        out["next_fit"] = _next_fit()
    out["pids"] = pids
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    # started from a background job (nohup, some CI shells) SIGINT arrives ignored and
    # Python then installs no KeyboardInterrupt handler; the Ctrl-C scenarios need the
    # handler a terminal session has
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # if the parent test is about to kill us for hanging, leave every thread's stack on stderr
    _dump = float(os.environ.get("SKSPARSE_SCENARIO_DUMP_AFTER", "0"))
    if _dump > 0:
        import faulthandler
        faulthandler.dump_traceback_later(_dump, exit=False)
    main(sys.argv[1])

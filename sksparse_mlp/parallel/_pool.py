"""A pool of MPI worker processes spawned with ``MPI.COMM_SELF.Spawn``, with failure handling.

Every wait is a poll loop (``improbe`` / ``Request.Test`` with short sleeps) which, at
most 20 times a second, checks

* an error report (``TAG_ERR``) from any worker -> :class:`WorkerError` (with the
  remote traceback), followed by an orderly close, after which MPI stays usable;
* the worker pids in ``/proc`` (gone or zombie) -> :class:`WorkerDied`;
* for every worker that owes us a message, the time since we last heard from it
  (or last sent it something) -> :class:`WorkerTimeout` once it exceeds ``timeout``.

A worker that died or stalled is handled the hard way: all workers (and, for an MPICH
singleton, the hydra launcher's process group) are SIGKILLed, the communicator is dropped
without ``Disconnect`` (which is collective and would block on the dead peer), and with
MPICH the process is marked "poisoned": MPICH cannot spawn or finalize after a hard
worker death, so later pools raise a clear "restart Python" error instead of crashing.

The orderly close sends ``stop`` to every worker, cancels a receive left posted by a
failed wait, then drains (receives and discards) whatever the workers still had in flight
until each has said ``bye`` and every request of ours has completed, and only then calls
``Disconnect``: MPICH's ``Disconnect`` waits for every request that refers to the
communicator, so a single forgotten request hangs it forever (hence a Ctrl-C is held
back while a request or a matched message is created and recorded: ``_Registered``).
"""
import os
import signal
import socket
import sys
import threading
import time
import warnings

from . import _mpi, _procs
from ._protocol import (
    CMD_STOP,
    TAG_ALIVE,
    TAG_BUF,
    TAG_BYE,
    TAG_CMD,
    TAG_END,
    TAG_ERR,
    TAG_HELLO,
    TAG_RES,
    WorkerDied,
    WorkerError,
    WorkerFailure,
    WorkerTimeout,
)

__all__ = ["Pool"]

# Workers start through ``_boot.py`` (see there): MPI first, no scikit-learn import.
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")


_FT_ERRORS = None


def _ft_errors(MPI):
    global _FT_ERRORS
    if _FT_ERRORS is None:
        _FT_ERRORS = tuple(getattr(MPI, n) for n in
                           ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")
                           if hasattr(MPI, n))
    return _FT_ERRORS


_launchers_seen = set()     # hydra launchers started by this process (MPICH singleton)
_pool_ids = iter(range(1, 1 << 62))
last_start_interrupt = {}   # what the last Ctrl-C during Spawn found (tests, soak)


def launcher_exits():
    """Launchers of ours that exited since they were first seen. MPICH's singleton keeps
    one hydra for the life of the process; when it is gone (it kills its process group
    after an abnormal worker exit, or gives up on a bad host) MPI cannot spawn again."""
    for p in _procs.own_launchers():
        _launchers_seen.add(p)
    return sorted(p for p in _launchers_seen if not _procs.pid_alive(p))


def _settle_log(log0, limit=1.5):
    """Wait until the launcher's log grew and then stayed the same for 0.15 s (at most
    ``limit`` s): the tee copies hydra's last words after hydra exited."""
    end = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        n = _mpi.launcher_log_size()
        if n != last:
            last, since = n, time.monotonic()
        elif n > log0 and time.monotonic() - since > 0.15:
            return
        time.sleep(0.02)


def _block_sigint():
    """In a helper thread that runs a long MPI call: let the kernel deliver Ctrl-C to the
    main thread only. A SIGINT taken by the Spawn thread interrupted MPICH's PMI exchange
    (the Spawn failed, its workers were killed, hydra went down: MPI unusable in 3 of 6
    Ctrl-Cs during Spawn)."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, ValueError, OSError):
        pass


def _cap(nbytes):
    """Longest sleep between two polls of a wait. Without UCX's cma transport a large
    message moves in fragments through shared memory, and each fragment needs a progress
    call on both sides: polling every 0.5 ms made 32 MB transfers 4x slower than cma's
    single copy. Waits for large buffers therefore poll every ~20 us (they last only as
    long as the transfer: the server posts them when the data is due)."""
    return 2e-5 if nbytes >= (64 << 10) else 5e-4


class _DeferSigint:
    """In the main thread, while the default handler is installed: the first Ctrl-C is
    only recorded (``self.hit``) so that an orderly shutdown can finish; a second one
    raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.hit = 0
        self.old = None

    def _handler(self, signum, frame):
        self.hit += 1
        if self.hit > 1:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self.old = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, TypeError):
                self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            self.old = None
        return False


class _Registered(_DeferSigint):
    """Around an MPI call that creates a request or matches a message, and the line that
    records it for close(): Python raises a Ctrl-C that came during the call when the
    call returns, dropping the new handle; a receive or matched message close() cannot
    retire keeps MPICH's Disconnect waiting forever. The Ctrl-C is raised once recorded."""

    def _handler(self, signum, frame):
        self.hit += 1

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.hit and exc[0] is None:
            raise KeyboardInterrupt
        return False


def _make_info(MPI, mpi_info):
    if not mpi_info:
        return MPI.INFO_NULL
    info = MPI.Info.Create()
    for k, v in dict(mpi_info).items():
        info.Set(str(k), str(v))
    return info


class Pool:
    """``n`` spawned workers running ``sksparse_mlp.parallel._worker``.

    Parameters
    ----------
    n : int
        Number of workers.
    timeout : float or None
        Seconds of silence from a worker that owes a message before it is declared stalled.
    spawn_timeout : float
        Seconds to wait for Spawn plus every worker's hello.
    close_timeout : float
        Seconds the orderly close may take before falling back to the hard path.
    mpi_info : dict or None
        MPI Info keys for Spawn (``{"hosts": "a,b"}``, ``{"hostfile": path}``, ...).
    worker_flags : list of str
        Extra command-line flags for the workers (test hooks only).
    """

    def __init__(self, n, timeout=None, spawn_timeout=60.0, close_timeout=10.0,
                 mpi_info=None, worker_flags=()):
        MPI = _mpi.get_mpi()
        if not _mpi.launched_by_mpiexec():
            dead = launcher_exits()
            if dead:
                _mpi.poison("the MPI launcher (hydra, pid %s) exited, e.g. after a worker died "
                            "during an earlier shutdown" % dead[0])
        _mpi.check_usable()
        _mpi.prepare_spawn_env()
        self.MPI = MPI
        self.n = int(n)
        self.timeout = timeout
        self.close_timeout = close_timeout
        self.pids = {}
        self.hosts = {}
        self.broken = False
        self.comm = None
        self._pending = []           # our outstanding send requests (kept alive with their buffers)
        self._recvs = []             # our outstanding receive requests (only after a failed wait)
        self._matched = None         # (message, bytes) of the last message matched by a probe
        self._matched_n = 1
        self._unranked = set()       # local worker pids known before their hello
        self._proxies = set()        # hydra proxies that started our local workers
        self.last_seen = [time.monotonic()] * self.n
        self.done = set()            # ranks that said bye
        self._last_check = 0.0
        self.stats = {"spawn_s": 0.0, "wait_s": 0.0, "send_s": 0.0, "bytes_out": 0, "bytes_in": 0}
        self.token = "%d.%d" % (os.getpid(), next(_pool_ids))
        pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        args = ([_BOOT, pkg_dir] + _mpi.worker_env_args() + list(worker_flags)
                + ["--pool", self.token, "--ppid", str(os.getpid()),
                   "--phost", socket.gethostname()])
        t0 = time.perf_counter()
        self._t_start = time.monotonic()
        self._spawn_timeout = spawn_timeout
        self._transport_hint = ""
        if _mpi.places_on_other_hosts(mpi_info):
            self._transport_hint = (
                "; workers on other hosts that hang in MPI_Init often need another transport "
                "(in effect: UCX_TLS=%s; try UCX_TLS=tcp,self or MPIR_CVAR_CH4_NETMOD=ofi "
                "FI_PROVIDER=tcp)" % os.environ.get("UCX_TLS", "(UCX's default)"))
        info = _make_info(MPI, mpi_info)
        try:  # from Spawn to the end: a Ctrl-C in between must not drop a started pool
            try:
                self._spawn(args, info)
            finally:
                if info != MPI.INFO_NULL:
                    info.Free()
            self.last_seen = [time.monotonic()] * self.n
            self._unranked = set(_procs.started_with("--pool", self.token))
            hellos = [self.recv(r, TAG_HELLO, timeout=self._start_left()) for r in range(self.n)]
            self.stats["spawn_s"] = time.perf_counter() - t0
            me = socket.gethostname()
            for r, h in enumerate(hellos):
                self.hosts[r] = h["host"]
                if h["host"] == me:
                    self.pids[r] = h["pid"]
                    st = _procs.proc_state(h["pid"])
                    if st is not None:
                        self._proxies.add(st[1])
            self._unranked = set()
            bad = [(r, h["import_error"]) for r, h in enumerate(hellos) if h.get("import_error")]
        except KeyboardInterrupt:
            # Ctrl-C after Spawn (during it: _spawn): an orderly close keeps MPI usable
            if self.comm is not None and not self.broken:
                self.close(timeout=min(self.close_timeout, 3.0))
            raise
        except BaseException:
            if self.comm is not None and not self.broken:
                self._kill("pool start failed")
            raise
        if bad:
            self.close()
            raise WorkerError("worker %d failed to start:\n%s" % bad[0])

    def _start_left(self):
        if self._spawn_timeout is None:
            return None
        return max(0.5, self._spawn_timeout - (time.monotonic() - self._t_start))

    def _start_failed(self, exc_type, msg, log0, seen):
        """A start-up failure: kill what was started, mark MPI unusable (MPICH cannot
        recover from a Spawn that never returns), quote the launcher's message."""
        _procs.kill_pids(set(seen) | set(_procs.started_with("--pool", self.token)))
        _mpi.poison("MPI Spawn failed")
        log = _mpi.launcher_log_since(log0).strip()
        if log:
            msg += "\nThe MPI launcher said:\n" + log
        self.broken = True
        return exc_type(msg)

    def _spawn(self, args, info):
        """MPI_Comm_spawn blocks forever if a worker dies before MPI_Init or the launcher
        gives up (bad host, unreachable node): run it in a helper thread
        (MPI_THREAD_MULTIPLE) and watch, every 30 ms, the launcher, the workers started so
        far and the deadline (``spawn_timeout``). Sets ``self.comm``."""
        MPI, n = self.MPI, self.n
        box = {}
        # completion is signalled with an Event: Thread.join/is_alive must not be used here,
        # a Ctrl-C that interrupts join() can leave is_alive() False while the thread still
        # runs (CPython < 3.13), and the spawn then completed behind our back
        done = threading.Event()

        def target():
            _block_sigint()
            try:
                box["comm"] = MPI.COMM_SELF.Spawn(sys.executable, args=args, maxprocs=n,
                                                  info=info)
            except BaseException as e:          # pragma: no cover - reported below
                box["err"] = e
            finally:
                done.set()

        singleton = not _mpi.launched_by_mpiexec()
        log0 = _mpi.launcher_log_size()
        th = threading.Thread(target=target, name="sksparse-mpi-spawn", daemon=True)
        seen = set()
        timeout = self._spawn_timeout
        th.start()
        try:
            while not done.wait(0.03):
                seen.update(_procs.started_with("--pool", self.token))
                dead = [p for p in seen if not _procs.pid_alive(p)]
                if dead:
                    raise self._start_failed(
                        WorkerDied, "worker process(es) %s died while starting (before "
                        "MPI_Init completed)" % sorted(dead), log0, seen)
                if singleton and launcher_exits():
                    _settle_log(log0)           # let the tee write the last lines
                    raise self._start_failed(
                        WorkerDied, "the MPI launcher (mpiexec/hydra) exited while starting "
                        "%d worker(s)" % n, log0, seen)
                if timeout is not None and time.monotonic() - self._t_start > timeout:
                    raise self._start_failed(
                        WorkerTimeout, "MPI Spawn of %d worker(s) did not finish within %.1f s "
                        "(worker_timeout); a worker may have failed before MPI_Init, or the "
                        "launcher cannot reach a host%s" % (n, timeout, self._transport_hint),
                        log0, seen)
        except KeyboardInterrupt:
            # Ctrl-C during Spawn: let the spawn finish (it normally takes well under a
            # second), then close the new pool in order; if it does not finish soon, kill
            # what it started. Nothing is left running either way.
            with _DeferSigint() as d:
                finished = done.wait(3.0)
            last_start_interrupt.clear()
            last_start_interrupt.update(finished=finished, comm="comm" in box,
                                        err=repr(box.get("err")), hit=d.hit)
            if not finished or "comm" not in box or d.hit > 1:
                _procs.kill_pids(seen | set(_procs.started_with("--pool", self.token)))
                if not finished or "comm" in box:
                    _mpi.poison("MPI Spawn interrupted")
                self.broken = True
                raise
            self.comm = box["comm"]
            self.close(timeout=min(self.close_timeout, 3.0))
            raise
        if "err" in box:
            raise box["err"]
        self.comm = box["comm"]  # set here: a Ctrl-C right after this finds it to close

    # ------------------------------------------------------------------ checks
    def _check(self, what, expect):
        MPI = self.MPI
        st = MPI.Status()
        for _ in range(64):                   # heartbeats (set-up commands): proof of life
            m = self._improbe(MPI.ANY_SOURCE, TAG_ALIVE, st)
            if m is None:
                break
            m.recv()
            self.last_seen[st.Get_source()] = time.monotonic()
        m = self._improbe(MPI.ANY_SOURCE, TAG_ERR, st)
        if m is not None:
            err = m.recv()
            self.last_seen[st.Get_source()] = time.monotonic()
            self.close()                       # orderly if possible, hard otherwise
            raise WorkerError("worker %d raised an exception while the server waited for %s:\n%s"
                              % (err["rank"], what, err["tb"]))
        dead = [r for r, p in self.pids.items() if r not in self.done and not _procs.pid_alive(p)]
        dead += ["pid %d" % p for p in self._unranked if not _procs.pid_alive(p)]
        if dead:
            self._kill("worker(s) %s died" % dead)
            raise WorkerDied("worker process(es) %s died while the server waited for %s "
                             "(killed, crashed or exited)" % (dead, what))
        if self.timeout is not None:
            now = time.monotonic()
            for r in expect:
                if now - self.last_seen[r] > self.timeout:
                    # last chance: something from r may be queued while we were busy elsewhere
                    if self.comm.iprobe(r, MPI.ANY_TAG):
                        self.last_seen[r] = now
                        continue
                    self._kill("worker %d stalled" % r)
                    raise WorkerTimeout("worker %d sent nothing for %.1f s (worker_timeout) while "
                                        "the server waited for %s" % (r, self.timeout, what))

    def _wait(self, test, what, expect, cap=5e-4):
        if self.comm is None:
            raise WorkerFailure("the worker pool is closed")
        MPI = self.MPI
        s = 1e-5
        t0 = time.perf_counter()
        try:
            while True:
                now = time.monotonic()
                if now - self._last_check > 0.05:     # across waits: a stream of waits that
                    self._last_check = now            # succeed at once must not starve the checks
                    self._check(what, expect)
                try:
                    r = test()
                except MPI.Exception as e:   # Open MPI with ULFM: MPI_ERR_PROC_FAILED
                    if e.Get_error_class() in _ft_errors(MPI):
                        self._kill("worker died (%s)" % e.Get_error_string(), poison=False)
                        raise WorkerDied("a worker died while the server waited for %s: %s"
                                         % (what, e)) from e
                    raise
                if r is not None and r is not False:
                    return r
                time.sleep(s)
                s = min(2 * s, cap)
        finally:
            self.stats["wait_s"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ receive
    def _improbe(self, src, tag, st):
        """``improbe`` that remembers the matched message: if an exception (Ctrl-C) comes
        before the caller received it, close() must receive it, or Disconnect never returns.
        A non-matching ``iprobe`` first: the common miss costs no signal handling."""
        if not self.comm.iprobe(src, tag):
            return None
        with _Registered():
            m = self.comm.improbe(src, tag, status=st)
            if m is not None:
                self._matched = (m, st.Get_count(self.MPI.BYTE))
                self._matched_n = self._matched[1]
        return m

    def wait_any(self, tags, ranks=None):
        """Wait for a message with one of ``tags`` from any worker in ``ranks`` (default: all
        not yet done). Returns ``(source, tag, message)``; receive it with ``message.recv()``
        or ``message.Recv(buf)`` (or :meth:`recv_message`)."""
        MPI = self.MPI
        expect = [r for r in (range(self.n) if ranks is None else ranks) if r not in self.done]
        st = MPI.Status()
        tags = tuple(tags)

        def test():
            for t in tags:
                m = self._improbe(MPI.ANY_SOURCE, t, st)
                if m is not None:
                    return m
            return None
        m = self._wait(test, "a message with tag %s" % (tags,), expect)
        src = st.Get_source()
        self.last_seen[src] = time.monotonic()
        self.stats["bytes_in"] += st.Get_count(MPI.BYTE)
        return src, st.Get_tag(), m

    def recv(self, src, tag=TAG_RES, timeout=-1):
        """Receive a pickled object from worker ``src``."""
        saved = self.timeout
        if timeout != -1:
            self.timeout = timeout
        try:
            st = self.MPI.Status()
            m = self._wait(lambda: self._improbe(src, tag, st),
                           "tag %d from worker %d" % (tag, src), [src])
        finally:
            self.timeout = saved
        self.last_seen[src] = time.monotonic()
        self.stats["bytes_in"] += st.Get_count(self.MPI.BYTE)
        return m.recv()

    def Recv(self, buf, src, tag=TAG_BUF):
        """Receive into the numpy array ``buf`` from worker ``src``."""
        # kept until it completed: if the wait fails, close() must retire it before
        # Disconnect (MPICH's Disconnect waits for every request that still refers to comm)
        with _Registered():
            req = self.comm.Irecv(buf, source=src, tag=tag)
            self._recvs.append((req, buf))
        self._wait(req.Test, "a buffer from worker %d" % src, [src], _cap(buf.nbytes))
        self._recvs.pop()
        self.last_seen[src] = time.monotonic()
        self.stats["bytes_in"] += buf.nbytes

    # ------------------------------------------------------------------ send
    def _isend(self, post, keep, dst):
        """Post a send (``post()``) and record it for close() (which waits for it)."""
        with _Registered():
            req = post()
            self._pending.append((req, keep))
        self.last_seen[dst] = time.monotonic()
        return req

    def _send_wait(self, req, dst, what, nbytes=0):
        t0 = time.perf_counter()
        self._wait(req.Test, what, [dst], _cap(nbytes))
        self._pending.pop()
        self.last_seen[dst] = time.monotonic()
        self.stats["send_s"] += time.perf_counter() - t0

    def send(self, obj, dst, tag=TAG_CMD):
        """Send a pickled object to worker ``dst`` (waits for completion by polling)."""
        req = self._isend(lambda: self.comm.isend(obj, dest=dst, tag=tag), None, dst)
        # the pickle mpi4py sent (commands are small: pickling twice costs nothing)
        self.stats["bytes_out"] += len(self.MPI.pickle.dumps(obj))
        self._send_wait(req, dst, "sending to worker %d" % dst)

    def Send(self, buf, dst, tag=TAG_BUF):
        """Send the numpy array ``buf`` to worker ``dst`` (waits for completion by polling)."""
        req = self._isend(lambda: self.comm.Isend(buf, dest=dst, tag=tag), buf, dst)
        self.stats["bytes_out"] += buf.nbytes
        self._send_wait(req, dst, "sending a buffer to worker %d" % dst, buf.nbytes)

    def isend_async(self, buf, dst, tag=TAG_BUF):
        """Start sending ``buf``; it must not be modified until :meth:`flush` returned."""
        req = self._isend(lambda: self.comm.Isend(buf, dest=dst, tag=tag), buf, dst)
        self.stats["bytes_out"] += buf.nbytes
        return req

    def trim(self):
        """Forget sends started with :meth:`isend_async` that completed."""
        if self._pending:
            self._pending = [(q, b) for q, b in self._pending if not q.Test()]

    def flush(self):
        """Wait for every send started with :meth:`isend_async`."""
        t0 = time.perf_counter()
        while self._pending:
            req, _ = self._pending[-1]
            self._wait(req.Test, "outstanding sends", [], 2e-5)
            self._pending.pop()
        self.stats["send_s"] += time.perf_counter() - t0

    def bcast_obj(self, obj, tag=TAG_CMD):
        for r in range(self.n):
            self.send(obj, r, tag)

    def touch(self, ranks=None):
        """Reset the silence clock of ``ranks`` (e.g. before waiting for a long computation)."""
        now = time.monotonic()
        for r in (range(self.n) if ranks is None else ranks):
            self.last_seen[r] = now

    # ------------------------------------------------------------------ shutdown
    def _kill(self, why, poison=True):
        """Hard path: SIGKILL every worker (and our hydra launcher), drop the communicator."""
        self.broken = True
        if poison and _mpi.vendor() != "Open MPI":
            _mpi.poison(why)
        _procs.kill_pids(list(self.pids.values()) + list(self._unranked))
        if poison and _mpi.poisoned() is not None and not _mpi.launched_by_mpiexec():
            # MPICH singleton: hydra (started through our shim, its own process group) is
            # of no further use; take its whole group down so no launcher/proxy lingers.
            launchers = _procs.own_launchers()
            for p in launchers:
                try:
                    os.killpg(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            _procs.reap(launchers)
        self.comm = None             # never Disconnect(): collective, blocks on dead peers
        self._pending = []
        self._recvs = []
        self._matched = None

    def close(self, timeout=None):
        """Orderly close (stop, drain, bye, Disconnect); hard path if that fails.

        A first Ctrl-C during the close is held back until the close finished (then
        re-raised): interrupting it half-way would leave MPI unusable. A second Ctrl-C
        takes the hard path at once."""
        if self.comm is None or self.broken:
            return
        with _DeferSigint() as d:
            self._close(timeout)
        if d.hit:
            raise KeyboardInterrupt

    def _close(self, timeout):
        MPI = self.MPI
        comm = self.comm
        saved = self.timeout
        self.timeout = self.close_timeout if timeout is None else timeout
        self.touch()
        try:
            stops = []
            for r in range(self.n):
                if r not in self.done:
                    # "stop", then "end": a worker receives (and discards) everything we
                    # sent before "end", so every send of ours completes, even those the
                    # worker never posted a receive for (it was interrupted mid-exchange)
                    stops.append((comm.isend((CMD_STOP,), dest=r, tag=TAG_CMD), None))
                    stops.append((comm.isend(("end",), dest=r, tag=TAG_END), None))
            self._pending.extend(stops)
            m = self._matched[0] if self._matched else None
            if m:                            # matched by a probe, not received (interrupted)
                self._matched = None
                m.Recv(bytearray(max(1, self._matched_n)))
            for req, _ in self._recvs:       # a receive abandoned by a failed wait
                try:
                    req.Cancel()             # unmatched: completes as cancelled; matched: the
                except MPI.Exception:        # worker flushes its sends before bye
                    pass
            st = MPI.Status()

            def drain():
                # receive (and discard) everything the workers sent so far, noting the byes
                while True:
                    m = comm.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status=st)
                    if m is None:
                        break
                    src, tag = st.Get_source(), st.Get_tag()
                    m.Recv(bytearray(max(1, st.Get_count(MPI.BYTE))))
                    self.last_seen[src] = time.monotonic()
                    if tag == TAG_BYE:
                        self.done.add(src)
                self._pending = [(q, b) for q, b in self._pending if not q.Test()]
                self._recvs = [(q, b) for q, b in self._recvs if not q.Test()]
                return len(self.done) == self.n and not self._pending and not self._recvs
            deadline = time.monotonic() + self.timeout
            exited = None            # (since, drains): a worker that owes its bye is gone
            while True:
                # deadline and pids before a drain: what came before them is received first
                late = time.monotonic() > deadline
                gone = [r for r, p in self.pids.items()
                        if r not in self.done and not _procs.pid_alive(p)]
                seen = time.monotonic()
                if drain():                  # _check would raise on TAG_ERR: drained here
                    break
                # a bye can reach us after the worker's exit (a long drain, or we were not
                # scheduled): dead if it is still missing after 0.1 s and 20 more drains,
                # or at once when the launcher went down (a hard death)
                if not [r for r in gone if r not in self.done]:
                    exited = None
                elif not _mpi.launched_by_mpiexec() and launcher_exits():
                    raise WorkerDied("a worker died during shutdown")
                elif exited is None:
                    exited = (seen, 0)
                elif time.monotonic() - exited[0] > 0.1 and exited[1] >= 20:
                    raise WorkerDied("a worker died during shutdown")
                else:
                    exited = (exited[0], exited[1] + 1)
                if late:
                    raise WorkerTimeout("workers did not stop within %.1f s" % self.timeout)
                time.sleep(2e-4)
        except BaseException as e:
            # includes a second Ctrl-C during close: never leave workers behind
            self._kill("shutdown failed: %s" % (e.__class__.__name__,))
            if not isinstance(e, (WorkerFailure, TimeoutError)):
                raise
            warnings.warn("an MPI worker failed during shutdown (%s); the workers were killed%s"
                          % (e, "" if _mpi.poisoned() is None else
                             " and MPI cannot be used again in this process"),
                          RuntimeWarning, stacklevel=3)
            return
        finally:
            self.timeout = saved
        limit = self.close_timeout if timeout is None else timeout
        self.comm = None
        # Disconnect is collective and blocks on anything MPI still counts as pending; the
        # drain above should leave nothing, but a hang here must not hang the caller.
        def disconnect():
            _block_sigint()
            comm.Disconnect()
        th = threading.Thread(target=disconnect, name="sksparse-mpi-disconnect", daemon=True)
        th.start()
        th.join(limit)
        if th.is_alive():
            self.comm = comm
            self._kill("Disconnect hung")
            warnings.warn("MPI Disconnect did not complete within %.0f s; the workers were "
                          "killed and MPI cannot be used again in this process"
                          % limit, RuntimeWarning, stacklevel=3)
            return
        self._confirm_exit(limit)

    def _confirm_exit(self, limit):
        """After Disconnect: wait until our local workers and their launcher proxy have
        exited, then check that the launcher is still alive. A worker that died after its
        bye (SIGKILL, OOM) makes MPICH's hydra kill its process group and exit, after which
        the next Spawn in this process would segfault or hang: mark MPI unusable and warn
        (the training itself completed)."""
        if _mpi.launched_by_mpiexec() or not self.pids:
            return
        pids = list(self.pids.values())
        end = time.monotonic() + min(limit, 5.0)
        while time.monotonic() < end and any(_procs.pid_alive(p) for p in pids):
            time.sleep(0.005)
        if any(_procs.pid_alive(p) for p in pids):
            return                      # slow exit: the next Pool() checks the launcher
        end = time.monotonic() + 0.06          # hydra reacts within a few ms
        while not launcher_exits() and time.monotonic() < end:
            time.sleep(0.01)
        if launcher_exits():
            _mpi.poison("a worker died while exiting after it said goodbye")
            warnings.warn("an MPI worker died while exiting after the training completed; "
                          "MPI's launcher went down with it, so MPI cannot be used again in "
                          "this process (n_workers > 1 fits raise MPIUnusableError)",
                          RuntimeWarning, stacklevel=4)

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if etype is not None and issubclass(etype, KeyboardInterrupt):
            self.close(timeout=min(self.close_timeout, 3.0))
        else:
            self.close()
        return False

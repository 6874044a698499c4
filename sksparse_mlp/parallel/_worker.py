"""The generic worker loop of the MPI backend (commands, faults, heartbeats, shutdown).

Started by :class:`sksparse_mlp.parallel._pool.Pool` with ``MPI.COMM_SELF.Spawn`` through
``_boot.py``. The loop knows the generic commands (``setup``, ``ping``, ``work``, ``echo``,
``getenv``, ``stop``); the training commands are handlers that ``_boot.py`` hands in
(``_wasap_worker.HANDLERS``, loaded on the first such command), so the loop and the
WASAP-SGD side do not import each other.
It imports no scikit-learn. ``from mpi4py import MPI`` runs first; every later import
that may fail is reported to the parent in the hello message instead of killing the
process before the parent can notice.

* Idle waiting is ``improbe`` + ``sleep`` (no busy-polling of a core).
* Every command runs inside ``try/except BaseException``: an exception (or
  ``sys.exit``) is sent to the parent as a traceback (``TAG_ERR``), then the worker
  goes on waiting for commands (the parent stops it in an orderly way).
* A daemon thread watches the parent pid and ends the process when the parent is gone.
* While it waits for a reply the worker also watches for ``stop``: it then completes its
  own pending sends (the parent drains them), says ``bye`` and disconnects.
"""
import os
import socket
import sys
import threading
import time
import traceback

from ._protocol import (CMD_INIT, CMD_SETUP, CMD_SHARD, CMD_STOP, TAG_ALIVE, TAG_BUF,
                        TAG_BYE, TAG_CMD, TAG_END, TAG_ERR, TAG_HB, TAG_HELLO, TAG_RES)


MPI = None     # mpi4py.MPI, imported in main() (importing this module must not initialise MPI)


class Stop(Exception):
    """The parent asked us to stop while we were busy."""


def _watch_parent(ppid):
    while True:
        time.sleep(0.25)
        try:
            with open("/proc/%d/stat" % ppid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    os._exit(70)
        except FileNotFoundError:
            os._exit(70)
        except OSError:
            pass


class Channel:
    """Poll-based messaging with the parent (rank 0 of the remote group)."""

    def __init__(self, parent):
        self.comm = parent
        self.rank = parent.Get_rank()
        self.size = parent.Get_size()
        self.pending = []
        self.stash = []           # commands received while busy (other than stop)
        self.comm_s = 0.0         # time spent waiting on the parent / in sends

    # -- waiting
    def _poll(self, test, watch_stop=True, idle=False, fast=False):
        """Wait until ``test()`` returns something; time counts as communication unless
        ``idle`` (waiting for the next command)."""
        s = 1e-5
        t0 = time.perf_counter()
        start = time.monotonic()
        st = MPI.Status()
        try:
            while True:
                r = test()
                if r is not None and r is not False:
                    return r
                if watch_stop:
                    m = self.comm.improbe(0, TAG_CMD, status=st)
                    if m is not None:
                        cmd = m.recv()
                        if cmd[0] == CMD_STOP:
                            raise Stop()
                        self.stash.append(cmd)
                time.sleep(s)
                cap = (5e-3 if idle and time.monotonic() - start > 2.0 else
                       (1e-3 if idle else (2e-5 if fast else 2e-4)))
                s = min(2 * s, cap)
        finally:
            if not idle:
                self.comm_s += time.perf_counter() - t0

    def check_stop(self):
        """Between units of work: raise :class:`Stop` if the parent asked us to stop."""
        if self.comm.iprobe(0, TAG_CMD):
            cmd = self.comm.recv(source=0, tag=TAG_CMD)
            if cmd[0] == CMD_STOP:
                raise Stop()
            self.stash.append(cmd)

    def next_cmd(self):
        """Next command; stale non-command messages (from an aborted exchange) are dropped."""
        if self.stash:
            return self.stash.pop(0)
        st = MPI.Status()

        def test():
            m = self.comm.improbe(0, MPI.ANY_TAG, status=st)
            if m is None:
                return None
            if st.Get_tag() == TAG_CMD:
                return (m.recv(),)
            m.Recv(bytearray(max(1, st.Get_count(MPI.BYTE))))
            return None
        return self._poll(test, watch_stop=False, idle=True)[0]

    def recv(self, tag):
        st = MPI.Status()
        m = self._poll(lambda: self.comm.improbe(0, tag, status=st))
        return m.recv()

    def Recv(self, buf, tag=TAG_BUF):
        req = self.comm.Irecv(buf, source=0, tag=tag)
        try:
            # large buffers move in fragments (no cma): poll often while they arrive
            self._poll(req.Test, fast=buf.nbytes >= (64 << 10))
        except BaseException:
            try:
                req.Cancel()
                req.Wait()
            except Exception:
                pass
            raise

    # -- collectives among the workers (their own COMM_WORLD: the parent is not in it)
    def Allreduce(self, buf):
        """Sum ``buf`` over all workers, in place; polled, so a stop is still seen."""
        self._poll(MPI.COMM_WORLD.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM).Test, fast=True)

    def Bcast(self, buf, root=0):
        """``buf`` of worker ``root`` to every worker; polled like :meth:`Allreduce`."""
        self._poll(MPI.COMM_WORLD.Ibcast(buf, root=root).Test, fast=True)

    # -- sending
    def isend(self, obj, tag):
        self.pending.append((self.comm.isend(obj, dest=0, tag=tag), None))

    def Isend(self, buf, tag=TAG_BUF):
        self.pending.append((self.comm.Isend(buf, dest=0, tag=tag), buf))

    def flush(self, watch_stop=True):
        """Wait until every send of ours completed."""
        def test():
            self.pending = [(q, b) for q, b in self.pending if not q.Test()]
            return not self.pending
        if self.pending:
            self._poll(test, watch_stop=watch_stop,
                       fast=any(b is not None and b.nbytes >= (64 << 10) for _, b in self.pending))

    def send(self, obj, tag):
        self.isend(obj, tag)
        self.flush()

    def Send(self, buf, tag=TAG_BUF):
        self.Isend(buf, tag)
        self.flush()

    def drain_to_end(self):
        """After "stop": receive and discard everything the parent sent before its "end"
        marker (a receive with ANY_TAG matches the parent's messages in the order they were
        sent), so that every send of the parent completes, also those we never posted a
        receive for because the stop interrupted an exchange."""
        st = MPI.Status()

        def test():
            m = self.comm.improbe(0, MPI.ANY_TAG, status=st)
            if m is None:
                return None
            tag = st.Get_tag()
            m.Recv(bytearray(max(1, st.Get_count(MPI.BYTE))))
            return tag == TAG_END or None
        self._poll(test, watch_stop=False, idle=True)

    def trim(self):
        """Forget completed sends (keeps the list short while streaming)."""
        self.pending = [(q, b) for q, b in self.pending if not q.Test()]


class Faults:
    """Test-only fault injection, configured by the parent's setup message."""

    def __init__(self, spec, rank):
        spec = dict(spec or {})
        ranks = spec.get("rank", None)
        if ranks is None:
            ranks = []
        elif isinstance(ranks, int):
            ranks = [ranks]
        self.active = rank in ranks
        self.kind = spec.get("kind")
        self.where = spec.get("where", "step")
        self.after = int(spec.get("after", 0))
        self.stamp = spec.get("stamp")      # file to write the time of the fault into
        self.count = 0

    def check(self, where):
        if not self.active or where != self.where:
            return
        self.count += 1
        if self.count <= self.after:
            return
        k = self.kind
        if self.stamp:
            with open(self.stamp, "w") as f:
                f.write(repr(time.time()))
        if k == "raise":
            raise RuntimeError("injected failure in a worker (test hook)")
        if k == "exit":
            sys.exit(3)
        if k == "abort":
            os._exit(3)
        if k == "kill":
            os.kill(os.getpid(), 9)
            time.sleep(10)
        if k == "stall":
            while True:
                time.sleep(3600)


class Heartbeat:
    """While a set-up command runs (numba kernels loaded or compiled, shards received), a
    thread sends the parent a small message every 0.25 s: set-up can take longer than
    ``worker_timeout`` without looking like a stall, while a worker that is stopped
    (SIGSTOP) or gone still falls silent. Needs MPI_THREAD_MULTIPLE (else: no heartbeats)."""

    def __init__(self, ch, every=0.25):
        self.ch, self.every = ch, every
        self.stop = threading.Event()
        self.reqs = []
        self.th = None

    def _run(self):
        while not self.stop.wait(self.every):
            self.reqs = [q for q in self.reqs if not q.Test()]
            self.reqs.append(self.ch.comm.isend(("alive",), dest=0, tag=TAG_ALIVE))

    def __enter__(self):
        if MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self.th = threading.Thread(target=self._run, daemon=True, name="sksparse-alive")
            self.th.start()
        return self

    def __exit__(self, *exc):
        if self.th is not None:
            self.stop.set()
            self.th.join()
            # completed by the parent, which drains heartbeats at every check and in close
            self.ch.pending.extend((q, None) for q in self.reqs)
        return False


class Worker:
    """Runs commands until ``stop``; ``load_handlers()`` returns the table of the commands
    that are not generic (called once, on the first such command)."""

    def __init__(self, ch, load_handlers=None):
        self.ch = ch
        self._load_handlers = load_handlers
        self.handlers = None
        self.cfg = {}
        self.faults = Faults(None, ch.rank)
        self.state = None

    def run(self):
        ch = self.ch
        while True:
            cmd = ch.next_cmd()
            if cmd[0] == CMD_STOP:
                break
            try:
                self.dispatch(cmd)
            except Stop:
                break
            except BaseException:
                ch.pending = [(q, b) for q, b in ch.pending if not q.Test()]
                ch.isend({"rank": ch.rank, "tb": traceback.format_exc()}, TAG_ERR)
        # complete our sends (the parent drains them), receive whatever the parent still had
        # in flight, then bye, then Disconnect
        ch.flush(watch_stop=False)
        ch.drain_to_end()
        self.faults.check("bye")
        ch.isend("bye", TAG_BYE)
        ch.flush(watch_stop=False)
        self.faults.check("after_bye")
        ch.comm.Disconnect()
        self.faults.check("disconnected")

    def dispatch(self, cmd):
        name = cmd[0]
        if name in (CMD_SETUP, CMD_INIT, CMD_SHARD):
            with Heartbeat(self.ch):
                return self._dispatch(cmd)
        return self._dispatch(cmd)

    def _dispatch(self, cmd):
        name = cmd[0]
        if name == CMD_SETUP:
            self.setup(cmd[1])
        elif name == "ping":
            self.ch.send(("pong", self.ch.rank, cmd[1]), TAG_RES)
        elif name == "work":
            self.work(*cmd[1:])
        elif name == "echo":
            self.echo(*cmd[1:])
        elif name == "getenv":
            self.ch.send({k: os.environ.get(k) for k in cmd[1]}, TAG_RES)
        else:
            if self.handlers is None:
                self.handlers = self._load_handlers() if self._load_handlers else {}
            if name not in self.handlers:
                raise ValueError("unknown command %r" % (name,))
            self.handlers[name](self, *cmd[1:])

    def setup(self, cfg):
        self.cfg = dict(cfg)
        self.faults = Faults(self.cfg.get("fault"), self.ch.rank)
        nt = self.cfg.get("numba_threads")
        if nt:
            try:
                import numba
                numba.set_num_threads(max(1, min(int(nt), numba.config.NUMBA_NUM_THREADS)))
            except ImportError:
                pass
        if self.cfg.get("preload") and self.handlers is None and self._load_handlers:
            # the training modules (numpy, scipy, numba) now, while the server reads its
            # plan, rather than at the first training command
            self.handlers = self._load_handlers()
        self.faults.check("setup")
        self.ch.send(("ready", self.ch.rank), TAG_RES)

    def echo(self, n, rounds):
        """Test/benchmark command: ``rounds`` times receive ``n`` float64 and send them back
        (large transfers in both directions)."""
        import numpy as np
        buf = np.empty(int(n))
        for i in range(int(rounds)):
            self.ch.Recv(buf)
            self.faults.check("echo")
            self.ch.Send(buf)

    def work(self, n_steps, step_s):
        """Test/benchmark command: n_steps of sleeping, a heartbeat after each."""
        for i in range(int(n_steps)):
            self.ch.check_stop()
            self.faults.check("step")
            time.sleep(step_s)
            self.ch.isend(("hb", self.ch.rank, i), TAG_HB)
            self.ch.trim()
        self.ch.send(("done", self.ch.rank, int(n_steps)), TAG_RES)


def _parse(argv):
    opts = {"ppid": None, "phost": None, "fail_import": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--ppid":
            opts["ppid"] = int(argv[i + 1]); i += 2
        elif a == "--phost":
            opts["phost"] = argv[i + 1]; i += 2
        elif a == "--fail-import":
            opts["fail_import"] = True; i += 1
        else:
            i += 1
    return opts


def main(argv=None, load_handlers=None):
    """Entry point of a spawned worker; ``load_handlers`` as for :class:`Worker`."""
    global MPI
    from mpi4py import MPI      # first: MPI_Init, so that Spawn returns and errors can be reported
    opts = _parse(sys.argv[1:] if argv is None else argv)
    if opts["ppid"] and (opts["phost"] in (None, socket.gethostname())):
        threading.Thread(target=_watch_parent, args=(opts["ppid"],), daemon=True,
                         name="sksparse-watch-parent").start()
    parent = MPI.Comm.Get_parent()
    if parent == MPI.COMM_NULL:
        sys.stderr.write("sksparse_mlp.parallel._worker: not started by MPI Spawn\n")
        return 2
    ch = Channel(parent)
    try:                        # heavy or fallible imports: after MPI_Init, errors reported
        import numpy            # noqa: F401
        if opts["fail_import"]:
            import sksparse_mlp_nonexistent_module_for_tests  # noqa: F401
        import_error = None
    except BaseException:
        import_error = traceback.format_exc()
    ch.send({"pid": os.getpid(), "host": socket.gethostname(), "import_error": import_error},
            TAG_HELLO)
    if import_error:
        while ch.next_cmd()[0] != CMD_STOP:
            pass
        ch.drain_to_end()
        ch.send("bye", TAG_BYE)
        parent.Disconnect()
        return 1
    Worker(ch, load_handlers).run()
    return 0


"""The caller's side of a WASAP-SGD fit: it never loads MPI itself.

:func:`fit_wasap` starts a helper process (``_helper``) that holds the whole MPI world of
this fit (parameter server and spawned workers), sends it the training plan, the model,
the optimizer and the random generator once, and then relays the epochs: after every
epoch the helper sends the current model, the caller adopts it in place, runs
``on_epoch_end`` and answers whether to stop. At the end the model, optimizer and
generator come back, so the estimator sees exactly what an in-process server would have
left (a fixed ``random_state`` gives the same model).

A failure is the helper's exception, raised here (``WorkerDied`` ...); whatever happened
to MPI in the helper is thrown away with it, so the next fit starts a fresh world. A
caller that was itself started by ``mpiexec`` (a cluster job: ``mpiexec -n 1 python
script.py``, workers placed by that launcher) runs the server in-process instead, as
only it holds the launcher's connection; there a hard worker death still leaves MPI
unusable for the rest of the process (:class:`MPIUnusableError`).
"""
import builtins
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

from .. import _jit
from . import _procs, _testing
from . import _protocol as P

_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")
HELPER_STOP_S = 6.0      # an orderly stop of the helper (close: 3 s) before it is killed


def fit_wasap(plan, network, optimizer, rng, on_epoch_end=None):
    """Train ``network`` in place with WASAP-SGD over ``plan.n_workers`` MPI workers.

    Parameters
    ----------
    plan : TrainingPlan
    network : SparseMLP
        Updated in place after every epoch, so ``on_epoch_end`` sees the current model.
    optimizer : MomentumSGD
        Updated in place (the server owns the momentum; schedules run in ``on_epoch_end``).
    rng : numpy.random.Generator
        Drives the shards, the workers' seeds and the topology changes; its state
        advances exactly as with an in-process server.
    on_epoch_end : callable(loss) -> bool or None
        Called after every epoch with its mean training loss; returning True stops.

    Returns
    -------
    network : SparseMLP
        The same object, trained.

    Raises
    ------
    ImportError
        mpi4py or an MPI library is missing (the message says how to install them).
    WorkerError, WorkerDied, WorkerTimeout
        A worker raised, died or stalled; no process of the fit is left behind.
    """
    plan.check()
    if importlib.util.find_spec("mpi4py") is None:     # say so before starting a helper
        from ._mpi import MPI_INSTALL_HELP
        raise ImportError("mpi4py is not installed.\n" + MPI_INSTALL_HELP)
    hooks = dict(_testing.hooks)
    if P.launched_by_mpiexec():
        from ._server import train
        stats = train(plan, network, optimizer, rng, on_epoch_end, hooks)
    else:
        stats = _Helper().run(plan, network, optimizer, rng, on_epoch_end, hooks)
        for category, message in stats.pop("warnings", ()):
            cat = getattr(builtins, category, None)
            warnings.warn(message, cat if isinstance(cat, type) and issubclass(cat, Warning)
                          else RuntimeWarning, stacklevel=2)
    _testing.last_stats.clear()
    _testing.last_stats.update(stats)
    return network


def _adopt(network, optimizer, rng, net, opt, gen):
    network.__dict__.clear()
    network.__dict__.update(net.__dict__)
    optimizer.__dict__.update(opt.__dict__)
    rng.bit_generator.state = gen.bit_generator.state


def helper_env():
    """The helper process's environment: its own MPI singleton, whatever this process
    inherited; and, unless the user chose, OpenMP threads that sleep at once, since the
    parameter server shares the cores with the workers (a spinning server thread takes
    a worker's time)."""
    env = {k: v for k, v in os.environ.items() if k not in P.LAUNCH_VARS}
    if _jit.SPIN_SET_HERE:
        env.pop("GOMP_SPINCOUNT", None)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


class _Helper:
    """One helper process and its socket."""

    def __init__(self):
        self.proc = None
        self.ch = None

    def _start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = helper_env()
        pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, _BOOT, pkg_dir, "--helper", str(theirs.fileno()),
                 "--ppid", str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)        # a terminal's Ctrl-C reaches the caller only
        finally:
            theirs.close()
        self.ch = P.Channel(ours)

    def run(self, plan, network, optimizer, rng, on_epoch_end, hooks):
        finished = False
        self._start()
        try:
            ch = self.ch
            # two messages: the helper spawns the workers as soon as it has the first
            # (small, plain values) and only then reads and unpickles the plan
            ch.send((P.CALLER_START, P.start_spec(plan, hooks)))
            try:
                ch.send((P.CALLER_PLAN, plan, network, optimizer, rng))
            except P.ChannelClosed:
                pass        # the helper failed to start the workers: its error is read below
            while True:
                msg = ch.recv()
                if msg[0] == P.HELPER_EPOCH:
                    _adopt(network, optimizer, rng, *msg[2:5])
                    stop = bool(on_epoch_end(msg[1])) if on_epoch_end is not None else False
                    ch.send((P.CALLER_CONTINUE, stop, optimizer, rng))
                elif msg[0] == P.HELPER_DONE:
                    _adopt(network, optimizer, rng, *msg[1:4])
                    finished = True
                    return msg[4]
                else:
                    finished = True         # the helper cleaned up before it reported
                    raise msg[1]
        except P.ChannelClosed:
            code = self._wait(2.0)
            finished = True
            raise P.WorkerDied("the MPI helper process of this fit ended unexpectedly (%s)"
                               % ("still running" if code is None else
                                  "signal %d" % -code if code < 0 else "exit status %d" % code)
                               ) from None
        finally:
            self._end(interrupted=not finished)

    def _wait(self, limit):
        try:
            return self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            return None

    def _end(self, interrupted):
        """Close the socket and see the helper gone. After an interruption (Ctrl-C, an
        exception in ``on_epoch_end``) it gets SIGINT first, which stops its workers in
        order; a second Ctrl-C while we wait, or no exit within HELPER_STOP_S, kills it."""
        proc = self.proc
        self.ch.close()
        try:
            if interrupted and proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except OSError:
                    pass
            if self._wait(HELPER_STOP_S if interrupted else 10.0) is not None:
                return
        except KeyboardInterrupt:
            self._kill()
            raise
        self._kill()

    def _kill(self):
        """SIGKILL the helper and its local workers; its launcher (hydra) ends by the
        shim's tee, which watches the helper."""
        proc = self.proc
        workers = _procs.started_with("--ppid", proc.pid)
        try:
            proc.kill()
        except OSError:
            pass
        _procs.kill_pids(workers)
        self._wait(5.0)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and any(_procs.pid_alive(p) for p in workers):
            time.sleep(0.01)

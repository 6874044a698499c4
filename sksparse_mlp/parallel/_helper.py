"""The helper process: the MPI world of one ``n_workers > 1`` fit lives here.

The caller (``_caller``) starts ``python .../parallel/_boot.py PKG --helper FD --ppid PID``
for every fit and talks to it over a Unix socket (``_protocol.Channel``). The helper
loads MPI, spawns the workers and runs the parameter server (``_server.train``); after
every epoch it sends the model to the caller, which runs the estimator's epoch bookkeeping
(loss curve, early stopping, callback) and answers whether to stop. When the fit ends,
well or not, the helper exits and the MPI world goes with it: a worker that died hard
leaves MPICH unusable in *this* process only, and the caller's next fit starts a fresh one.

The helper imports no scikit-learn. It runs in its own session, so a Ctrl-C typed in the
terminal reaches the caller only, which forwards it (SIGINT) when it wants the world to
stop in an orderly way; a watchdog process and ``PR_SET_PDEATHSIG`` end the helper when
the caller dies.
"""
import os
import pickle
import signal
import sys
import warnings

from . import _protocol as P


def _portable(exc):
    """``exc`` if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError("%s: %s" % (type(exc).__name__, exc))


def _exit(code):
    """Finalize MPI (not after a hard worker death: MPICH segfaults or aborts in it then),
    remove the launcher folder and leave at once: the caller waits for this exit, and the
    interpreter's own teardown (numba, scipy) took up to a second on a busy machine.

    After a clean ``MPI_Finalize`` the C library's ``exit`` ends the process, not
    ``os._exit``: MPICH sends a singleton's PMI "finalize" to its launcher from a C
    ``atexit`` handler, and without it hydra's proxy takes the exit for a crash,
    SIGKILLs the process group of the launcher and leaves its
    ``/tmp/hydra_hwloc_xmlfile_*`` behind (one per fit)."""
    from . import _mpi
    sys.stdout.flush()
    sys.stderr.flush()
    if _mpi._finalize():                # also removes the launcher folder
        import ctypes
        ctypes.PyDLL(None).exit(code)   # PyDLL: holds the GIL, no Python thread runs on
    os._exit(code)


def main(argv):
    """Serve one training plan received on the socket ``argv[argv.index("--helper") + 1]``."""
    # the caller forwards Ctrl-C as SIGINT; a background caller may have left it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    fd = int(argv[argv.index("--helper") + 1])
    ch = P.Channel.from_fd(fd)
    try:
        kind, spec = ch.recv()
    except (P.ChannelClosed, KeyboardInterrupt):
        os._exit(1)
    assert kind == P.CALLER_START, kind
    from . import _mpi
    _mpi.use_multi_host_defaults(spec["mpi_info"])      # before MPI is loaded
    code = 0
    try:
        # warnings (a worker that died after the training completed, ...) go to the caller,
        # where the user's warning filters apply
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # the workers first, then the plan: unpickling it imports numpy, scipy and
            # numba, which must neither delay a start-up failure nor the workers' set-up
            from ._start import start
            with start(spec) as pool:
                kind, plan, network, optimizer, rng = ch.recv()
                assert kind == P.CALLER_PLAN, kind

                def on_epoch_end(loss):
                    ch.send((P.HELPER_EPOCH, loss, network, optimizer, rng))
                    kind, stop, opt, gen = ch.recv()
                    # the caller's schedules may have changed the learning rate; keep both
                    # in step
                    optimizer.__dict__.update(opt.__dict__)
                    rng.bit_generator.state = gen.bit_generator.state
                    return stop

                from ._server import train
                stats = train(plan, network, optimizer, rng, on_epoch_end, spec["hooks"],
                              pool=pool)
        stats["warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
        stats["helper_imports_sklearn"] = "sklearn" in sys.modules
        ch.send((P.HELPER_DONE, network, optimizer, rng, stats))
    except BaseException as e:          # KeyboardInterrupt (forwarded Ctrl-C) too
        code = 1
        try:
            ch.send((P.HELPER_ERROR, _portable(e)))
        except (P.ChannelClosed, KeyboardInterrupt):
            pass                        # the caller gave up on us: nobody to tell
    _exit(code)

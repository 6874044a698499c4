"""Bootstrap of the helper process and of a spawned worker:
``python .../sksparse_mlp/parallel/_boot.py PKG_DIR [--helper FD] ARGS``.

In a worker ``from mpi4py import MPI`` runs first (MPI_Init: Spawn returns as early as
possible and later import errors can be reported to the parent); the helper (``--helper``)
loads MPI later, through ``_mpi``. The top-level ``sksparse_mlp/__init__``
(which imports scikit-learn, ~1.4 s) is not executed: the package is registered as a bare
namespace so that only the modules the worker needs are loaded. ``--env K=V`` arguments
are applied to the environment before MPI_Init (unless K is already set). (The script is passed as a
path rather than with ``-c``: MPICH's PMI cannot carry newlines in Spawn arguments.)
"""
import sys


# A watchdog *process* per local worker: SIGKILLs the worker when the caller is gone. The
# worker's own watchdog thread cannot do that when the worker is stopped (SIGSTOP) or its
# main thread blocks inside MPI/PMI while holding the GIL (seen after a SIGKILLed caller:
# a worker blocked in a PMI socket read for minutes). Started before MPI_Init, with no
# inherited descriptors, and without this pool's token in its command line.
_WATCHDOG = """
import os, sys, time
caller, worker = int(sys.argv[1]), int(sys.argv[2])
def stat(p):
    try:
        with open('/proc/%d/stat' % p) as f:
            r = f.read().rsplit(')', 1)[1].split()
        return r[0], r[19]
    except (OSError, IndexError):
        return None
start = stat(caller)
while True:
    w = stat(worker)
    if w is None or w[0] in ('Z', 'X'):
        break
    c = stat(caller)
    if c is None or c[0] in ('Z', 'X') or start is None or c[1] != start[1]:
        try:
            os.kill(worker, 9)
        except OSError:
            pass
        break
    time.sleep(0.25)
"""


def _start_watchdog(argv):
    import os
    import socket
    import subprocess
    try:
        ppid = int(argv[argv.index("--ppid") + 1])
        phost = argv[argv.index("--phost") + 1] if "--phost" in argv else None
    except (ValueError, IndexError):
        return
    if phost not in (None, socket.gethostname()):
        return
    try:
        subprocess.Popen([sys.executable, "-S", "-c", _WATCHDOG, str(ppid), str(os.getpid())],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        pass


def _parent_death_signal(ppid):
    """Linux: SIGKILL this process as soon as the caller dies (the watchdog process above
    is the fallback elsewhere); exit at once when the caller is already gone."""
    import os
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)      # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if os.getppid() != ppid:
        os._exit(70)


def _bare_package():
    """Register ``sksparse_mlp`` as a bare namespace (its ``__init__`` imports scikit-learn)."""
    import os
    import types
    del sys.path[0]                  # this directory: its modules are not top-level modules
    if "sksparse_mlp" not in sys.modules:
        pkg = types.ModuleType("sksparse_mlp")
        pkg.__path__ = [sys.argv[1]]
        sys.modules["sksparse_mlp"] = pkg
    sys.path.insert(0, os.path.dirname(sys.argv[1]))


def _boot():
    import os
    argv = sys.argv
    _start_watchdog(argv)
    if "--helper" in argv:
        _parent_death_signal(int(argv[argv.index("--ppid") + 1]))
        _bare_package()
        from sksparse_mlp.parallel._helper import main as helper_main
        return helper_main(argv[2:])
    for i, a in enumerate(argv):
        if a == "--env" and i + 1 < len(argv) and "=" in argv[i + 1]:
            # transport settings of the caller (UCX_TLS, ...): before MPI_Init; a value set
            # in this process's own environment (the cluster's, the user's) wins
            k, v = argv[i + 1].split("=", 1)
            os.environ.setdefault(k, v)
        elif a == "--die-before-init":          # test hook: a worker that dies while starting
            os._exit(3)
        elif a == "--hang-before-init":         # test hook: a worker that never starts
            import time
            time.sleep(3600)
    from mpi4py import MPI  # noqa: F401  (first: MPI_Init)
    _bare_package()
    from sksparse_mlp.parallel._worker import main

    def handlers():
        from sksparse_mlp.parallel._wasap_worker import HANDLERS
        return HANDLERS
    return main(sys.argv[2:], handlers)


if __name__ == "__main__":
    sys.exit(_boot())

"""Loading mpi4py safely and preparing the environment for ``MPI.COMM_SELF.Spawn``.

Everything MPI-related in the package goes through :func:`get_mpi`, which

* sets ``mpi4py.rc.finalize = False`` *before* ``mpi4py.MPI`` is imported, so that
  we can skip ``MPI_Finalize`` after a worker died hard (MPICH segfaults or aborts
  inside it then) and register our own ``atexit`` finalizer instead;
* turns a missing mpi4py / MPI library into an ``ImportError`` that says how to
  install them;
* for Open MPI, sets the environment its singleton spawn needs.

:func:`prepare_spawn_env` must run before the first Spawn. For MPICH started as a
plain ``python`` process (a "singleton"), MPI runs ``execvp("mpiexec")`` from
``PATH`` at the first Spawn and hangs forever when it is not found (e.g. when the
virtual environment is not activated). We put a tiny ``mpiexec`` shim first on
``PATH``: it moves hydra into its own process group and execs the real
``mpiexec.hydra`` (from the interpreter's scripts directory or ``PATH``). The
process-group move matters: when a worker dies hard, hydra kills its own process
group, which would otherwise be the caller's (pytest, the CI shell, ...).
"""
import atexit
import os
import shutil
import sys
import sysconfig
import tempfile

__all__ = ["get_mpi", "prepare_spawn_env", "poison", "poisoned", "check_usable",
           "launched_by_mpiexec", "MPI_INSTALL_HELP"]

MPI_INSTALL_HELP = (
    "n_workers > 1 needs mpi4py and an MPI library. Install both from PyPI with\n"
    "    pip install 'sksparse_mlp[mpi]'      (or, from a source tree: pip install \".[mpi]\")\n"
    "which brings mpi4py and the 'mpich' wheel; or, to use a system MPI (e.g. Debian's\n"
    "'apt-get install mpich libmpich-dev'), install just mpi4py: pip install mpi4py.")

_MPI = None
_OWN_FINALIZE = False
_poisoned = None        # reason (str) once MPI became unusable in this process
_env_ready = False
_shim_dir = None


class MPIUnusableError(RuntimeError):
    """MPI cannot be used again in this process (a worker died hard before)."""


def _load():
    global _MPI, _OWN_FINALIZE
    try:
        import mpi4py
    except ImportError as e:
        raise ImportError("mpi4py is not installed.\n" + MPI_INSTALL_HELP) from e
    if "mpi4py.MPI" not in sys.modules:
        # Open MPI only (MPICH ignores these): ULFM lets the parent survive a hard worker
        # death, and keep parent<->child traffic on the loopback interface.
        os.environ.setdefault("OMPI_MCA_mpi_ft_enable", "1")
        os.environ.setdefault("OMPI_MCA_btl_tcp_if_include", "lo")
        os.environ.setdefault("OPAL_PREFIX", sys.prefix)
        mpi4py.rc.finalize = False          # read at import of mpi4py.MPI
        _OWN_FINALIZE = True
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as e:
        raise ImportError("mpi4py is installed but could not load an MPI library (%s).\n%s"
                          % (e, MPI_INSTALL_HELP)) from e
    _MPI = MPI
    atexit.register(_finalize)
    return MPI


def get_mpi():
    """Return the ``mpi4py.MPI`` module, importing it the safe way on first use."""
    if _MPI is None:
        return _load()
    return _MPI


def _finalize():
    MPI = _MPI
    if _shim_dir is not None:
        shutil.rmtree(_shim_dir, ignore_errors=True)
    if (_OWN_FINALIZE and MPI is not None and _poisoned is None
            and MPI.Is_initialized() and not MPI.Is_finalized()):
        MPI.Finalize()


def poison(reason):
    """Mark MPI unusable in this process (MPICH after a hard worker death)."""
    global _poisoned
    if _poisoned is None:
        _poisoned = str(reason)


def poisoned():
    return _poisoned


def check_usable():
    if _poisoned is not None:
        raise MPIUnusableError(
            "MPI cannot be used again in this Python process since an earlier worker failure "
            "(%s); restart Python to train with n_workers > 1 again." % _poisoned)


def launched_by_mpiexec():
    """True when this process was itself started by mpiexec (not a singleton)."""
    return any(k in os.environ for k in ("PMI_FD", "PMI_PORT", "PMI_RANK", "PMIX_RANK",
                                         "OMPI_COMM_WORLD_SIZE", "HYDI_CONTROL_FD"))


def vendor():
    return get_mpi().get_vendor()[0]


def _scripts_dirs():
    dirs = []
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable),
              os.path.join(sys.prefix, "bin")):
        if d and d not in dirs and os.path.isdir(d):
            dirs.append(d)
    return dirs


def prepare_spawn_env():
    """Set up PATH (and Open MPI's variables) for Spawn. Idempotent."""
    global _env_ready, _shim_dir
    if _env_ready:
        return
    MPI = get_mpi()
    name = MPI.get_vendor()[0]
    path = os.environ.get("PATH", "")
    search = os.pathsep.join(_scripts_dirs() + [path])
    if name == "Open MPI":
        os.environ["PATH"] = search                       # singleton spawn starts 'prte' from PATH
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            for k in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
                      "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM"):
                os.environ.setdefault(k, "1")
    elif name == "MPICH" and not launched_by_mpiexec():
        real = shutil.which("mpiexec.hydra", path=search) or shutil.which("mpiexec", path=search)
        if real is None:
            raise ImportError("MPICH's 'mpiexec' (hydra) was not found next to the Python "
                              "interpreter nor on PATH; MPI cannot spawn workers without it.\n"
                              + MPI_INSTALL_HELP)
        real = os.path.realpath(real)
        d = tempfile.mkdtemp(prefix="sksparse-mpi-")
        shim = os.path.join(d, "mpiexec")
        with open(shim, "w") as f:
            f.write("#!%s -S\n"
                    "import os, sys\n"
                    "try:\n    os.setpgid(0, 0)\nexcept OSError:\n    pass\n"
                    "os.execv(%r, [%r] + sys.argv[1:])\n" % (sys.executable, real, real))
        os.chmod(shim, 0o755)
        _shim_dir = d
        os.environ["PATH"] = d + os.pathsep + search
    _env_ready = True

"""Loading mpi4py safely and preparing the environment for ``MPI.COMM_SELF.Spawn``.

Everything MPI-related in the package goes through :func:`get_mpi`, which

* sets ``mpi4py.rc.finalize = False`` *before* ``mpi4py.MPI`` is imported, so that
  we can skip ``MPI_Finalize`` after a worker died hard (MPICH segfaults or aborts
  inside it then) and register our own ``atexit`` finalizer instead;
* turns a missing mpi4py / MPI library into an ``ImportError`` that says how to
  install them;
* for Open MPI, sets the environment its singleton spawn needs;
* applies the package's transport defaults (:data:`TRANSPORT_DEFAULTS`) to the
  environment before ``MPI_Init``, unless the user set the variable: the workers get
  the same values through their command line (:func:`worker_env_args`).

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
import socket
import sys
import sysconfig
import tempfile

from ._protocol import MPIUnusableError, launched_by_mpiexec

__all__ = ["get_mpi", "prepare_spawn_env", "poison", "poisoned", "check_usable",
           "launched_by_mpiexec", "MPI_INSTALL_HELP"]

MPI_INSTALL_HELP = (
    "n_workers > 1 needs mpi4py and an MPI library. Install both from PyPI with\n"
    "    pip install 'sksparse_mlp[mpi]'      (or, from a source tree: pip install \".[mpi]\")\n"
    "which brings mpi4py and the 'mpich' wheel; or, to use a system MPI (e.g. Debian's\n"
    "'apt-get install mpich libmpich-dev'), install just mpi4py: pip install mpi4py.")

# Transport settings applied before MPI_Init in the caller and in every worker, unless the
# variable is already set (a user's own setting wins, also an empty one; UCX_TLS=all gives
# UCX's own default back). UCX's "cma" transport (cross-memory attach,
# process_vm_readv) treats a peer that vanished during a large (rendezvous) transfer as a
# fatal error and aborts the *surviving* process: a worker SIGKILLed while it sends its
# gradients or model could abort the caller ("cma_ep.c:85 process_vm_readv ... No such
# process"). Without cma, UCX moves large messages through its shared-memory (posix/sysv)
# and tcp transports, where a dead peer is an ordinary error the pool turns into WorkerDied.
# MPICH builds that use another network module (ofi) ignore UCX_* variables.
TRANSPORT_DEFAULTS = {"UCX_TLS": "^cma"}
# With workers placed on other hosts (``mpi_info`` names a host other than this one, or a
# hostfile), UCX's TCP transport instead: workers on a second host (a network namespace
# with its own sshd and hostname, scripts/multinode_netns.sh) failed in MPI_Init
# ("leader_exchange ... Operation timed out") under the defaults and under ^cma, and
# worked with tcp,self, one worker per host as well as all workers remote.
MULTI_HOST_DEFAULTS = {"UCX_TLS": "tcp,self"}
# transport choices of the user that workers started by another launcher should see too
PASS_ON = ("UCX_TLS", "UCX_NET_DEVICES", "MPIR_CVAR_CH4_NETMOD", "FI_PROVIDER")
_applied_env = {}       # the defaults that were applied in this process (not set by the user)

_MPI = None
_OWN_FINALIZE = False
_poisoned = None        # reason (str) once MPI became unusable in this process
_env_ready = False
_shim_dir = None


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
        apply_transport_defaults()
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


def places_on_other_hosts(mpi_info):
    """True when Spawn Info keys ``mpi_info`` may place workers on another host."""
    info = dict(mpi_info or {})
    if info.get("hostfile"):
        return True
    me = socket.gethostname()
    local = {"localhost", "127.0.0.1", me, me.split(".")[0]}
    names = ",".join(str(info.get(k, "")) for k in ("host", "hosts")).split(",")
    return any(n.split(":")[0].strip() not in local for n in names if n.strip())


def use_multi_host_defaults(mpi_info):
    """Before MPI is loaded: take :data:`MULTI_HOST_DEFAULTS` as the transport defaults
    when ``mpi_info`` places workers on other hosts (the helper process of a fit does
    this; a user's own setting still wins)."""
    if _MPI is None and places_on_other_hosts(mpi_info):
        TRANSPORT_DEFAULTS.update(MULTI_HOST_DEFAULTS)


def apply_transport_defaults(environ=None):
    """Set the variables of :data:`TRANSPORT_DEFAULTS` that are not set in ``environ``
    (default ``os.environ``); returns what was applied."""
    env = os.environ if environ is None else environ
    done = {}
    for k, v in TRANSPORT_DEFAULTS.items():
        if k not in env:
            env[k] = v
            done[k] = v
    if environ is None:
        _applied_env.update(done)
    return done


def worker_env_args():
    """``--env K=V`` arguments for the workers: the transport settings in effect in this
    process (the package's defaults, or the user's values), so that workers started by a
    launcher with another environment (``mpiexec -n 1``, remote nodes) use the same. The
    worker applies them before MPI_Init unless its own environment sets them."""
    out = []
    for k in list(TRANSPORT_DEFAULTS) + [k for k in PASS_ON if k not in TRANSPORT_DEFAULTS]:
        if k in os.environ and os.environ[k] and " " not in os.environ[k]:
            out += ["--env", "%s=%s" % (k, os.environ[k])]
    return out


def get_mpi():
    """Return the ``mpi4py.MPI`` module, importing it the safe way on first use."""
    if _MPI is None:
        return _load()
    return _MPI


def _finalize():
    """Our ``MPI_Finalize`` (skipped once MPI is unusable) and the launcher folder's
    removal; True when this call finalized MPI."""
    MPI = _MPI
    if _shim_dir is not None:
        shutil.rmtree(_shim_dir, ignore_errors=True)
    if (_OWN_FINALIZE and MPI is not None and _poisoned is None
            and MPI.Is_initialized() and not MPI.Is_finalized()):
        MPI.Finalize()
        return True
    return False


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


def vendor():
    return get_mpi().get_vendor()[0]


def _scripts_dirs():
    dirs = []
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable),
              os.path.join(sys.prefix, "bin")):
        if d and d not in dirs and os.path.isdir(d):
            dirs.append(d)
    return dirs


# The mpiexec shim. MPICH's singleton forks and execs "mpiexec" from PATH at the first
# Spawn; this script (1) moves hydra into its own process group (on an abnormal worker exit
# hydra kills its process group, which would otherwise be the caller's: pytest, the shell);
# (2) forks a small tee that copies hydra's stderr to the caller's stderr *and* to
# launcher.log, so that the pool can quote the launcher's own message ("Could not resolve
# hostname", "Connection refused", ...) when hydra exits during a Spawn; the tee also
# removes this directory once hydra and the caller are gone (a SIGKILLed caller cannot),
# and the topology files of hydra's proxies that died with it; (3) execs the real
# mpiexec.hydra in its own pid (MPICH passes that pid to hydra).
_SHIM = """#!%(python)s -S
import os, sys, time
STARTED = time.time()


def _caller_alive():
    # dead: a zombie, gone, or exiting (PF_EXITING, 0x4 in the flags): a SIGKILLed caller
    # closes its launcher connection inside exit(), so hydra can exit and this tee see
    # EOF while the caller, on a busy machine, is not yet a zombie (the folder was left)
    try:
        with open("/proc/%(ppid)d/stat") as f:
            r = f.read().rsplit(")", 1)[1].split()
        return r[0] not in ("Z", "X") and not int(r[6]) & 4 and r[19] == %(start)r
    except (OSError, IndexError, ValueError):
        return False


def _kill_proxies(hydra):
    key = b"\\0--singleton-pid\\0%%d\\0" %% hydra
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%%s/cmdline" %% n, "rb") as f:
                    if key in f.read():
                        os.kill(int(n), 9)
            except OSError:
                pass


def _remove_topology_files(hydra):
    # hydra's proxies write the node's topology to /tmp/hydra_hwloc_xmlfile_* (a path fixed
    # in the binary) and remove it only when they exit normally, not when they are killed
    # with hydra (hard worker death, stall, dead caller). A proxy holds its file open for
    # its whole life, so a file of ours made since this launcher started that no process
    # holds is a dead proxy's. Our proxies may outlive hydra briefly: wait for them (3 s).
    key = b"\\0--singleton-pid\\0%%d\\0" %% hydra
    end = time.monotonic() + 3.0
    while True:
        files = set()
        try:
            names = os.listdir("/tmp")
        except OSError:
            return
        for n in names:
            if n.startswith("hydra_hwloc_xmlfile_"):
                try:
                    st = os.stat("/tmp/" + n)
                except OSError:
                    continue
                if st.st_uid == os.getuid() and st.st_ctime >= STARTED:
                    files.add("/tmp/" + n)
        held, ours = set(), False
        for pid in (os.listdir("/proc") if files else ()):
            if not pid.isdigit():
                continue
            d = "/proc/%%s/fd/" %% pid
            try:
                fds = os.listdir(d)
            except OSError:
                continue
            for fd in fds:
                try:
                    t = os.readlink(d + fd)
                except OSError:
                    continue
                if t in files:
                    held.add(t)
                    try:
                        with open("/proc/%%s/cmdline" %% pid, "rb") as f:
                            ours = ours or key in f.read()
                    except OSError:
                        pass
        for p in files - held:
            try:
                os.unlink(p)
            except OSError:
                pass
        if not ours or time.monotonic() > end:
            return
        time.sleep(0.05)


try:
    os.setpgid(0, 0)
except OSError:
    pass
r, w = os.pipe()
if os.fork() == 0:                       # tee: hydra's stderr -> our stderr + launcher.log
    try:
        os.setpgid(0, 0)                 # not in hydra's group: hydra kills that group when
    except OSError:                      # it gives up, and the tee must outlive it
        pass
    os.close(w)
    os.closerange(3, r)
    os.closerange(r + 1, 4096)
    try:
        log = os.open(%(log)r, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        log = -1
    size = 0
    hydra = os.getppid()                 # the shim's pid: it becomes hydra after the fork
    import select
    gone_since = None
    while True:
        try:
            ready = select.select([r], [], [], 0.5)[0]
        except InterruptedError:
            continue
        # the caller gone (SIGKILL) while hydra lingers: its workers end by their
        # watchdogs; if hydra has not exited 1.5 s later, end its process group.  Checked
        # on every pass, also while hydra keeps writing (its error lines kept the pipe
        # readable and this check from ever running: the folder outlived the caller)
        if gone_since is None and not _caller_alive():
            gone_since = time.monotonic()
        if gone_since is not None and time.monotonic() - gone_since > 1.5:
            try:
                os.killpg(hydra, 9)
            except OSError:
                pass
            _kill_proxies(hydra)         # in their own sessions: not in hydra's group
            if time.monotonic() - gone_since > 2.5:
                break
        if not ready:
            continue
        try:
            b = os.read(r, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not b:
            break
        try:
            os.write(2, b)
        except OSError:
            pass
        if log >= 0 and size < (1 << 20):
            size += len(b)
            try:
                os.write(log, b)
            except OSError:
                pass
    if not _caller_alive():              # nobody else cleans up after a SIGKILLed caller
        import shutil
        shutil.rmtree(%(dir)r, ignore_errors=True)
    _remove_topology_files(hydra)
    os._exit(0)
os.close(r)
os.dup2(w, 2)
os.close(w)
os.execv(%(real)r, [%(real)r] + sys.argv[1:])
"""


def _own_start_time():
    try:
        with open("/proc/self/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _remove_stale_dirs():
    """Launcher directories of callers that died without their atexit (SIGKILL)."""
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for n in names:
        parts = n.split("-")
        if not n.startswith("sksparse-mpi-") or len(parts) < 4 or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid == os.getpid():
            continue
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    continue             # owner alive (or a reused pid): leave it
        except FileNotFoundError:
            pass
        except (OSError, IndexError):
            continue
        p = os.path.join(tmp, n)
        try:
            if os.stat(p).st_uid == os.getuid():
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def launcher_log(max_chars=4000):
    """What the launcher (hydra) wrote to stderr in this process so far (tail)."""
    if _shim_dir is None:
        return ""
    try:
        with open(os.path.join(_shim_dir, "launcher.log"), "rb") as f:
            f.seek(0, 2)
            n = f.tell()
            f.seek(max(0, n - max_chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def launcher_log_size():
    if _shim_dir is None:
        return 0
    try:
        return os.path.getsize(os.path.join(_shim_dir, "launcher.log"))
    except OSError:
        return 0


def launcher_log_since(offset, max_chars=4000):
    text = ""
    if _shim_dir is not None:
        try:
            with open(os.path.join(_shim_dir, "launcher.log"), "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            pass
    return text[-max_chars:]


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
        _remove_stale_dirs()
        d = tempfile.mkdtemp(prefix="sksparse-mpi-%d-" % os.getpid())
        shim = os.path.join(d, "mpiexec")
        with open(shim, "w") as f:
            f.write(_SHIM % {"python": sys.executable, "real": real,
                             "log": os.path.join(d, "launcher.log"), "dir": d,
                             "ppid": os.getpid(), "start": _own_start_time()})
        os.chmod(shim, 0o755)
        _shim_dir = d
        os.environ["PATH"] = d + os.pathsep + search
    _env_ready = True

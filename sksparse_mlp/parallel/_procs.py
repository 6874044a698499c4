"""What ``/proc`` says about the processes of an MPI world (Linux; no MPI imports): worker
and launcher pids, their state, killing and reaping them."""
import os
import signal
import time


def _pids():
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
            return "R"
        except ProcessLookupError:
            return None
    r = s.rsplit(")", 1)[1].split()
    return r[0], int(r[1]), int(r[2])        # state, ppid, pgrp


def pid_alive(pid):
    st = proc_state(pid)
    return st is not None and st[0] not in ("Z", "X")


def own_launchers():
    """Children of this process that lead their own process group: the hydra launcher(s)
    started through our mpiexec shim (MPICH singleton). Exited ones (zombies) too."""
    me, out = os.getpid(), []
    for pid in _pids():
        try:
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
        except OSError:
            continue
        head, _, tail = s.rpartition(")")
        r = tail.split()
        if len(r) < 3 or int(r[1]) != me or int(r[2]) != pid:
            continue
        comm = head.partition("(")[2]
        if "mpiexec" in comm or "hydra" in comm:
            out.append(pid)
    return out


def reap(pids, timeout=1.0):
    end = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < end:
        for p in list(pending):
            try:
                if os.waitpid(p, os.WNOHANG)[0] == p:
                    pending.discard(p)
            except ChildProcessError:
                pending.discard(p)
        if pending:
            time.sleep(0.01)


def started_with(flag, value):
    """Live local processes whose command line holds ``flag value`` (``--pool TOKEN``:
    a pool's workers; ``--ppid PID``: the helper's workers, the caller's helper)."""
    key = b"\0%s\0%s\0" % (flag.encode(), str(value).encode())
    out = []
    for pid in _pids():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if key in cmd and pid_alive(pid):
            out.append(pid)
    return out


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

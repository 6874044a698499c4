"""What ``/proc`` says about the processes of an MPI world (Linux; no MPI imports): worker
and launcher pids, their state, killing and reaping them."""
import os
import signal
import time


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
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit():
            continue
        pid = int(n)
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


def token_pids(token):
    """Live local processes started with ``--pool TOKEN`` (this pool's workers)."""
    key = b"\0--pool\0" + token.encode() + b"\0"
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % n, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if key in cmd and pid_alive(int(n)):
            out.append(int(n))
    return out


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def started_for(pid):
    """Live processes started with ``--ppid PID`` (a helper's workers and their kin)."""
    key = b"\0--ppid\0%d\0" % pid
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%s/cmdline" % n, "rb") as f:
                    if key in f.read() and pid_alive(int(n)):
                        out.append(int(n))
            except OSError:
                pass
    return out

"""What ``/proc`` says about processes (Linux): shared by the MPI tests, their scenario
scripts and ``benchmarks/soak_mpi.py``, which look for workers left behind."""
import os


def alive(pid):
    """The process exists and is neither a zombie nor dead."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def command_lines():
    """``(pid, argv)`` of every process that can be read, argv as a list of bytes."""
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % n, "rb") as f:
                yield int(n), f.read().split(b"\0")
        except OSError:
            continue


def workers_of(ppid):
    """Live processes started as workers of ``ppid`` (``--ppid PPID`` in their argv)."""
    me = str(ppid).encode()
    return [pid for pid, argv in command_lines()
            if b"--ppid" in argv and argv[argv.index(b"--ppid") + 1:][:1] == [me]
            and alive(pid)]

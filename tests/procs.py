"""What ``/proc`` says about processes (Linux): shared by the MPI tests, their scenario
scripts and ``benchmarks/soak_mpi.py``, which look for workers left behind."""
import os
import threading
import time


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
    """Live processes started for ``ppid`` with ``--ppid PPID`` in their argv, and for
    those, and so on: the helper process of a fit (``--helper``), its workers and their
    watchdogs."""
    found, todo = [], [str(ppid).encode()]
    table = [(pid, argv) for pid, argv in command_lines() if b"--ppid" in argv]
    while todo:
        me = todo.pop()
        for pid, argv in table:
            if argv[argv.index(b"--ppid") + 1:][:1] == [me] and pid not in found:
                found.append(pid)
                todo.append(str(pid).encode())
    return [pid for pid in found if alive(pid)]


def helper_of(ppid):
    """Pid of the live helper process of caller ``ppid`` (None when there is none)."""
    me = str(ppid).encode()
    for pid, argv in command_lines():
        if (b"--helper" in argv and b"--ppid" in argv
                and argv[argv.index(b"--ppid") + 1:][:1] == [me] and alive(pid)):
            return pid
    return None


def local_workers_of_caller(ppid):
    """Pids of the spawned workers of caller ``ppid``'s helper (not the watchdogs)."""
    h = helper_of(ppid)
    if h is None:
        return []
    me = str(h).encode()
    return [pid for pid, argv in command_lines()
            if b"--pool" in argv and b"--ppid" in argv
            and argv[argv.index(b"--ppid") + 1:][:1] == [me] and alive(pid)]


def children_of(ppid):
    """Live direct children of ``ppid`` (a helper's launcher, hydra)."""
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%s/stat" % n) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(n))
            except (OSError, ValueError, IndexError):
                continue
    return [p for p in out if alive(p)]


TOPOLOGY_PREFIX = "/tmp/hydra_hwloc_xmlfile_"


def topology_files_of(root):
    """The ``/tmp/hydra_hwloc_xmlfile_*`` held open right now by descendants of ``root``:
    hydra's proxy writes the node's topology there (a path fixed in its binary) and holds
    the file open for its whole life, so this attributes a file to the run that made it
    (files of other programs on the machine are not counted)."""
    parents = {}
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%s/stat" % n) as f:
                    parents[int(n)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found = set()
    for pid in parents:
        p = parents[pid]
        while p not in (root, 0, 1) and p in parents:
            p = parents[p]
        if p != root:
            continue
        d = "/proc/%d/fd/" % pid
        try:
            fds = os.listdir(d)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(d + fd)
            except OSError:
                continue
            if target.startswith(TOPOLOGY_PREFIX):
                found.add(target)
    return found


class TopologyWatch:
    """Collects :func:`topology_files_of` ``root`` every 20 ms in a thread until
    :meth:`left`, which returns those that still exist ``wait`` s later (launcher clean-up
    is asynchronous)."""

    def __init__(self, root):
        self.root, self.files, self._stop = root, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.files.update(topology_files_of(self.root))
            time.sleep(0.02)

    def left(self, wait):
        self._stop.set()
        self._thread.join()
        end = time.monotonic() + wait
        while time.monotonic() < end and any(os.path.exists(f) for f in self.files):
            time.sleep(0.05)
        return sorted(f for f in self.files if os.path.exists(f))

"""The MPI installation the package runs on, and what its fits leave in /tmp.

* The installed ``mpich`` wheel is in the range ``setup.cfg`` declares (the lines that
  ``benchmarks/mpi_versions.sh`` tests), and mpi4py loads that very library.
* A fit leaves no ``/tmp/hydra_hwloc_xmlfile_*`` behind: hydra's proxy writes the node's
  topology there (the path is fixed in its binary) and removes it only when it exits
  normally. The test attributes files to the fit by the process that holds them: a proxy
  keeps its file open for its whole life, so every file held by a descendant of the fit's
  process is one of this fit's; files of other programs on the machine are never counted.
"""
import configparser
import os
import signal
import subprocess
import sys

import procs
import pytest

pytest.importorskip("mpi4py")
pytestmark = [pytest.mark.mpi, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _declared(extra="mpi", name="mpich"):
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    for line in cfg["options.extras_require"][extra].splitlines():
        if line.strip().startswith(name):
            return line.strip()[len(name):]
    raise AssertionError("setup.cfg declares no %s in the %r extra" % (name, extra))


def test_installed_mpich_is_a_declared_one():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet
    spec, installed = SpecifierSet(_declared()), version("mpich")
    assert installed in spec, "mpich %s is installed; setup.cfg declares mpich%s" % (
        installed, spec)
    # in a subprocess: importing mpi4py.MPI initialises MPI, which the test process must not
    out = subprocess.run([sys.executable, "-c", "from mpi4py import MPI; "
                          "print(MPI.Get_library_version().split()[2])"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == installed.split(".post")[0], out.stdout


# A fit in a fresh process; "killed": a worker SIGKILLed after the first epoch (the
# epoch callback runs in the caller while the workers wait), which must end the fit with
# WorkerDied.
FIT = """
import os, signal, sys
sys.path.insert(0, %(tests)r)
import numpy as np, procs
from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.parallel import WorkerDied
rng = np.random.default_rng(0)
X = rng.standard_normal((300, 10))
y = (X[:, 0] > 0).astype(int)

killed = []

def kill_a_worker(est):
    if %(kill)r and not killed:          # once: after the first epoch
        workers = procs.local_workers_of_caller(os.getpid())
        print("WORKERS", workers)
        os.kill(workers[0], signal.SIGKILL)
        killed.append(workers[0])

clf = TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0,
                               n_workers=2, worker_timeout=60.0, callback=kill_a_worker)
try:
    clf.fit(X, y)
    print("OUTCOME fitted")
except WorkerDied:
    print("OUTCOME WorkerDied")
"""


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kill", [False, True], ids=["normal", "worker_killed"])
def test_fit_leaves_no_topology_file(kill):
    proc = subprocess.Popen([sys.executable, "-c", FIT % {"tests": HERE, "kill": kill}],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True)
    watch = procs.TopologyWatch(proc.pid)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("the fit hung:\n" + err[-3000:])
    # killed proxies' files are removed by the launcher's tee once they are gone (< 3 s)
    left = watch.left(wait=10.0)
    expected = "OUTCOME WorkerDied" if kill else "OUTCOME fitted"
    assert proc.returncode == 0 and expected in out, (proc.returncode, out, err[-3000:])
    # the fit's launcher held one while its workers ran (else this test would check nothing)
    assert watch.files, "no hydra proxy of the fit held a topology file"
    assert not left

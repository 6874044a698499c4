"""Tests of the MPI backend (sksparse_mlp.parallel), with real spawned workers.

Every test has a hard timeout (pytest-timeout marker, and subprocess timeouts). Scenarios in
which a worker dies hard run in a subprocess (tests/mpi_scenarios.py): MPICH is unusable in a
process after that, and the subprocess runs in its own session so nothing can hit pytest.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("mpi4py")

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "mpi_scenarios.py")
ROOT = os.path.dirname(HERE)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(pids, timeout=5.0):
    end = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def _stray_workers(ppid):
    """Processes whose command line says they are workers of process ``ppid``."""
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % n, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"--ppid" in cmd and cmd[cmd.index(b"--ppid") + 1:][:1] == [str(ppid).encode()]:
            if _alive(int(n)):
                out.append(int(n))
    return out


def run_scenario(name, timeout=60, env=None):
    proc = subprocess.Popen([sys.executable, SCENARIOS, name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("scenario %s hung (killed after %d s)" % (name, timeout))
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.returncode, out[-2000:], err[-3000:])
    res = json.loads(lines[-1][len("RESULT "):])
    res["stderr"] = err
    left = _wait_gone(res.get("pids", []), 5.0) + _stray_workers(proc.pid)
    assert not left, "processes left behind: %s" % left
    return res


@pytest.mark.timeout(90)
def test_healthy_pool_spawn_and_shutdown():
    res = run_scenario("healthy")
    assert res["exc"] is None
    assert res["again"] == "ok"
    assert len(res["pids"]) >= 3          # 2 workers + launcher (+ proxy)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["raise", "exit"])
def test_worker_raises_gives_worker_error_and_pool_reusable(kind):
    res = run_scenario(kind)
    assert res["exc"] == "WorkerError"
    assert "worker 1 raised" in res["msg"]
    assert ("injected failure" in res["msg"]) if kind == "raise" else ("SystemExit" in res["msg"])
    assert res["detect_s"] < 2.0
    assert res["again"] == "ok"                   # a Python exception leaves MPI usable


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["kill", "abort", "sigkill"])
def test_worker_dies_hard_gives_worker_died(kind):
    res = run_scenario(kind)
    assert res["exc"] == "WorkerDied", res
    assert "died" in res["msg"]
    assert res["detect_s"] < 2.0
    # MPICH cannot spawn again after a hard death: a clear error instead of a crash
    assert res["again"] == "ok" or ("restart Python" in res["again"]), res["again"]


@pytest.mark.timeout(90)
def test_worker_stall_gives_timeout():
    res = run_scenario("stall")
    assert res["exc"] == "WorkerTimeout"
    assert "TimeoutError" in res["bases"]
    assert "worker 0 sent nothing for 1.5 s" in res["msg"]
    assert -0.5 < res["detect_s"] < 2.0           # raised ~1.5 s after the worker went silent


@pytest.mark.timeout(90)
def test_worker_import_error_reported():
    res = run_scenario("import_error")
    assert res["exc"] == "WorkerError"
    assert "failed to start" in res["msg"] and "ModuleNotFoundError" in res["msg"]
    assert res["again"] == "ok"


@pytest.mark.timeout(90)
def test_keyboard_interrupt_stops_workers():
    res = run_scenario("interrupt")
    assert res["exc"] == "KeyboardInterrupt"
    assert res["stop_s"] < 5.0
    assert res["again"] == "ok"                   # orderly stop: MPI still usable


@pytest.mark.timeout(90)
def test_missing_mpiexec_on_path_is_handled():
    # the venv's bin/ (where the mpich wheel puts mpiexec) is not on PATH: the shim finds it
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin"
    env.pop("VIRTUAL_ENV", None)
    res = run_scenario("healthy", env=env)
    assert res["exc"] is None and res["again"] == "ok"


@pytest.mark.timeout(30)
def test_missing_mpi_gives_install_message():
    res = run_scenario("no_mpi")
    assert res["exc"] == "ImportError"
    assert "pip install" in res["msg"] and "[mpi]" in res["msg"]


@pytest.mark.timeout(90)
def test_parent_death_ends_workers():
    proc = subprocess.Popen([sys.executable, SCENARIOS, "parent_dies"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        pids = None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("PIDS "):
                pids = json.loads(line[5:])
                break
        assert pids, proc.stderr.read()[-2000:] if proc.poll() is not None else "no pids"
        assert all(_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        left = _wait_gone(pids, 10.0)
        assert not left, "processes survived their parent: %s" % left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.timeout(60)
def test_n_workers_1_never_imports_mpi4py():
    code = ("import sys, sksparse_mlp, sksparse_mlp.parallel; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50,
                       cwd=ROOT)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]

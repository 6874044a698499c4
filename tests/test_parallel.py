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

import procs

pytest.importorskip("mpi4py")
pytestmark = [pytest.mark.mpi, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "mpi_scenarios.py")
ROOT = os.path.dirname(HERE)


_alive = procs.alive


def _wait_gone(pids, timeout=5.0):
    end = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def run_scenario(name, timeout=60, env=None):
    env = dict(os.environ if env is None else env)
    env["SKSPARSE_SCENARIO_DUMP_AFTER"] = str(max(1, timeout - 10))
    proc = subprocess.Popen([sys.executable, SCENARIOS, name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("scenario %s hung (killed after %d s); its stderr (thread stacks dumped "
                    "%d s before the kill):\n%s" % (name, timeout, 10, err[-8000:]))
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.returncode, out[-2000:], err[-3000:])
    res = json.loads(lines[-1][len("RESULT "):])
    res["stderr"] = err
    left = _wait_gone(res.get("pids", []), 5.0) + procs.workers_of(proc.pid)
    assert not left, "processes left behind: %s" % left
    return res


@pytest.mark.timeout(90)
def test_healthy_pool_spawn_and_shutdown():
    res = run_scenario("healthy")
    assert res["exc"] is None
    assert res["again"] == "ok"
    assert len(res["pids"]) >= 3          # 2 workers + launcher (+ proxy)
    assert max(res["idle_cpu_s"]) < 0.3, res["idle_cpu_s"]   # idle workers do not busy-poll
    assert not res["launched_by_mpiexec"]


@pytest.mark.timeout(90)
def test_spawn_with_mpi_info_host():
    res = run_scenario("mpi_info_host")
    assert res["exc"] is None and res["again"] == "ok"


@pytest.mark.timeout(240)
def test_under_mpiexec_n_1():
    import sysconfig
    mpiexec = os.path.join(sysconfig.get_path("scripts"), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("no mpiexec next to this Python (system MPI?)")

    proc = subprocess.run([mpiexec, "-n", "1", sys.executable, SCENARIOS,
                           "tiny_fit_then_healthy"], capture_output=True, text=True,
                          timeout=200, cwd=ROOT, start_new_session=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    # a fit under mpiexec runs its server in the caller (which holds the launcher's
    # connection), not in a helper process
    assert res["fit"] == "ok" and res["fit_launched_by_mpiexec"], res
    assert not res["mpi_before"] and res["mpi_in_caller"], res
    # then a pool of its own: spawned, used, closed, and a second one
    assert res["exc"] is None and res["again"] == "ok" and res["launched_by_mpiexec"]
    assert not _wait_gone([p for p in res["pids"]], 5.0)


@pytest.mark.timeout(120)
def test_keyboard_interrupt_during_fit():
    res = run_scenario("fit_interrupt", timeout=110)
    assert res["exc"] == "KeyboardInterrupt", res
    assert res["stop_s"] < 5.0, {k: v for k, v in res.items() if k != "stderr"}
    assert res["fitted"] is False                 # stays unfitted, as before the fit
    assert res["left_while_alive"] == [], res
    assert res["again"] == "ok", res              # the next fit works


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
def test_worker_raises_while_server_in_Recv_closes_cleanly():
    # regression: a receive left posted by the failed wait made MPICH's Disconnect hang forever
    res = run_scenario("raise_in_Recv")
    assert res["exc"] == "WorkerError", res
    assert "waited for a buffer from worker 0" in res["msg"]
    assert res["detect_s"] < 2.0
    assert res["again"] == "ok"


@pytest.mark.timeout(90)
def test_close_retires_interrupted_receives():
    res = run_scenario("interrupted_receives")
    assert res["exc"] is None, res
    assert res["warnings"] == [] and res["close_s"] < 5.0, res   # Disconnect completed


@pytest.mark.timeout(90)
def test_close_after_interrupt_waits_for_a_bye_still_queued():
    # a worker that exited after its bye did not die, even if the server had not yet
    # received the bye when it saw the exit (was: "a worker died during shutdown", the
    # workers killed and MPI unusable; frequent under load after Ctrl-C mid-transfer)
    res = run_scenario("interrupt_bye_unread")
    assert res["exc"] == "KeyboardInterrupt" and res["waited"] >= 1, _brief(res)
    assert res["warnings"] == [] and res["stop_s"] < 5.0, _brief(res)
    assert res["left_while_alive"] == [], _brief(res)
    assert res["again"] == "ok", _brief(res)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", ["interrupt_in_Irecv", "interrupt_in_improbe"])
def test_interrupt_as_a_receive_is_posted_keeps_mpi_usable(name):
    # Python raises a Ctrl-C that came during an MPI call when the call returns: the new
    # request / matched message was dropped before the pool recorded it, and MPICH's
    # Disconnect then waited for it (3 s, workers killed, MPI unusable: the CI flake of
    # interrupt_send, stop_s 3.10)
    res = run_scenario(name)
    assert res["exc"] == "KeyboardInterrupt", _brief(res)
    assert res["warnings"] == [] and res["stop_s"] < 2.0, _brief(res)
    assert res["left_while_alive"] == [], _brief(res)
    assert res["again"] == "ok", _brief(res)


@pytest.mark.timeout(90)
def test_disconnect_that_hangs_is_abandoned():
    res = run_scenario("disconnect_hangs")
    assert res["exc"] is None, res
    assert 2.0 <= res["close_s"] < 5.0
    assert any("Disconnect did not complete" in w for w in res["warnings"]), res


# scenarios that also try the next fit (a fresh helper, its workers, their imports) get
# longer limits: one took 57 s on a 2-core machine at load 15
NEXT_FIT_S = 150


@pytest.mark.timeout(NEXT_FIT_S + 30)
@pytest.mark.parametrize("kind", ["kill", "abort", "sigkill"])
def test_worker_dies_hard_gives_worker_died(kind):
    res = run_scenario(kind, timeout=NEXT_FIT_S)
    assert res["exc"] == "WorkerDied", res
    assert "died" in res["msg"]
    assert res["detect_s"] < 2.0
    # MPICH cannot spawn again in this process after a hard death: a clear error instead
    # of a crash; the next fit works all the same (its MPI world is a new helper process)
    assert res["again"] == "ok" or ("restart Python" in res["again"]), res["again"]
    assert res["next_fit"] == "ok", res["next_fit"]


# three kills: with cma allowed the caller aborted in 5 of 6 runs, so three clean runs
# would pass by chance with probability (1/6)**3 < 0.5 %; the soak
# (benchmarks/soak_mpi.py) kills many more
N_TRANSFER_KILLS = int(os.environ.get("SKSPARSE_TRANSFER_KILLS", "3"))


@pytest.mark.timeout(NEXT_FIT_S + 30 * N_TRANSFER_KILLS)
def test_worker_killed_during_large_transfers_never_aborts_caller():
    # UCX's cma transport aborted the *caller* (SIGABRT, "cma_ep.c:85 process_vm_readv ...
    # No such process") when a worker was SIGKILLed while a large message moved: in 5 of 6
    # runs with UCX_TLS=all. The package excludes cma; every kill must give WorkerDied.
    outcomes = []
    for i in range(N_TRANSFER_KILLS):
        env = dict(os.environ, SKSPARSE_NEXT_FIT="1") if i == 0 else None
        res = run_scenario("kill_in_transfer", timeout=NEXT_FIT_S if i == 0 else 60, env=env)
        assert res["ucx_tls"] == "^cma", res["ucx_tls"]
        assert "process_vm_readv" not in res["stderr"], res["stderr"][-2000:]
        outcomes.append((res["exc"], round(res.get("detect_s", -1), 3), res.get("rounds", 0)))
        assert res["exc"] == "WorkerDied", outcomes
        assert res["detect_s"] < 2.0, outcomes
        assert res["again"] == "ok" or "restart Python" in res["again"]
        assert i > 0 or res["next_fit"] == "ok", res["next_fit"]


@pytest.mark.timeout(90)
def test_transport_defaults_and_user_setting_wins():
    res = run_scenario("env_check")
    assert res["parent_env"] == "^cma" and res["worker_env"] == "^cma", res
    assert "UCX_TLS=^cma" in res["args"]          # also for workers of another launcher
    env = dict(os.environ, UCX_TLS="posix,sysv,self")
    res = run_scenario("env_check", env=env)
    assert res["parent_env"] == res["worker_env"] == "posix,sysv,self", res


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
    assert res["stop_s"] < 5.0, {k: v for k, v in res.items() if k != "stderr"}
    assert res["again"] == "ok"                   # orderly stop: MPI still usable


@pytest.mark.timeout(90)
def test_missing_mpiexec_on_path_is_handled():
    # the venv's bin/ (where the mpich wheel puts mpiexec) is not on PATH: the shim finds it
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin"
    env.pop("VIRTUAL_ENV", None)
    res = run_scenario("healthy", env=env)
    assert res["exc"] is None and res["again"] == "ok"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["no_mpi", "no_mpi_fit"])
def test_missing_mpi_gives_install_message(name):
    res = run_scenario(name)
    assert res["exc"] == "ImportError"
    assert "pip install" in res["msg"] and "[mpi]" in res["msg"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["parent_dies", "fit_parent_dies"])
def test_parent_death_ends_workers(name):
    # the caller owns the pool itself (parent_dies), or a fit's helper process owns it
    proc = subprocess.Popen([sys.executable, SCENARIOS, name], stdout=subprocess.PIPE,
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
        # the launcher's folder (the mpiexec shim, launcher.log): removed by the shim's tee
        # once hydra and the caller are gone (a SIGKILLed caller runs no atexit), also
        # when hydra exits while the killed caller is still inside exit()
        import tempfile
        end = time.monotonic() + 20         # 0.2-9 s on a loaded 2-core machine
        prefixes = tuple("sksparse-mpi-%d-" % p for p in [proc.pid] + pids)
        while time.monotonic() < end and any(n.startswith(prefixes)
                                             for n in os.listdir(tempfile.gettempdir())):
            time.sleep(0.1)
        left = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefixes)]
        assert not left, "launcher folder(s) outlived the caller: %s" % left
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


# ---------------------------------------------------------------------------- estimator level
@pytest.fixture(scope="module")
def fit_failures():
    """The three failing fits of one scenario process (``fit_failures``): run once, each
    kind is checked by its own test below."""
    return run_scenario("fit_failures", timeout=240)


# the first test of the three waits for the scenario (all three kinds)
@pytest.mark.timeout(270)
@pytest.mark.parametrize("kind", ["raise", "kill", "stall"])
def test_fit_failure_keeps_previous_state(fit_failures, kind):
    res = fit_failures["kinds"][kind]
    expected = {"raise": "WorkerError", "kill": "WorkerDied", "stall": "WorkerTimeout"}
    assert res.get("fit_exc") == expected[kind], res
    limit = 2.0 + (2.0 if kind == "stall" else 0.0)          # stall: after worker_timeout=2 s
    assert "detect_s" in res, res                            # it failed at the fault
    assert res["detect_s"] < limit, res
    assert res["kept_state"] and res["n_iter_"] == res["n_iter_before"] == 3, res  # intact
    assert res["refit2"] == "ok", res["refit2"]               # the next n_workers=2 fit works
    assert fit_failures["refit1"] == "ok"                     # n_workers=1 still works


@pytest.mark.timeout(270)
def test_caller_never_imports_mpi4py(fit_failures):
    # n_workers=2: MPI lives in the fit's helper process, never in the caller (a fresh
    # process that made the seven n_workers=2 fits of fit_failures, three of them failing)
    assert fit_failures["caller_imported_mpi4py"] is False


def _data_clf():
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = make_classification(n_samples=1200, n_features=20, n_informative=10, n_classes=3,
                               random_state=0)
    X = StandardScaler().fit_transform(X)
    return train_test_split(X, y, random_state=0)


@pytest.fixture(scope="module")
def warm_kernels():
    """Compile (or load) the numba kernels in this process first, so that the on-disk cache
    exists before workers start (they load it instead of compiling twice in parallel)."""
    from sksparse_mlp import TrulySparseMLPClassifier
    Xtr, Xte, ytr, yte = _data_clf()
    TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(Xtr, ytr)
    TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(
        __import__("scipy.sparse").sparse.csr_matrix(Xtr[:50]), ytr[:50])


_CLF_PARAMS = dict(hidden_layer_sizes=(32, 32), max_iter=12, random_state=0, worker_timeout=120)


@pytest.fixture(scope="module")
def one_worker_reference(warm_kernels):
    """What the n_workers=1 fit of _CLF_PARAMS gives (both modes compare with it): its
    test accuracy and the first layer's connection count after one epoch."""
    from sksparse_mlp import TrulySparseMLPClassifier
    Xtr, Xte, ytr, yte = _data_clf()
    acc1 = TrulySparseMLPClassifier(**_CLF_PARAMS).fit(Xtr, ytr).score(Xte, yte)
    nnz1 = TrulySparseMLPClassifier(**dict(_CLF_PARAMS, max_iter=1)).fit(
        Xtr, ytr).n_connections_[0]
    return acc1, nnz1


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_classifier_two_workers_close_to_one(one_worker_reference, mode):
    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _testing
    Xtr, Xte, ytr, yte = _data_clf()
    acc1, nnz1 = one_worker_reference
    clf = TrulySparseMLPClassifier(n_workers=2, worker_mode=mode, **_CLF_PARAMS).fit(Xtr, ytr)
    acc2 = clf.score(Xte, yte)
    assert acc2 >= acc1 - 0.08, (acc1, acc2)
    assert acc2 > 0.6
    assert clf.n_iter_ == 12 and len(clf.loss_curve_) == 12
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    st = _testing.last_stats
    assert st["n_workers"] == 2 and st["epochs"] == 12
    assert st["helper_imports_sklearn"] is False
    # the server's connection count is kept by the phase-2 merge
    assert clf.n_connections_[0] == nnz1


@pytest.mark.timeout(240)
def test_regressor_two_workers_close_to_one(warm_kernels):
    from sklearn.datasets import make_regression
    from sklearn.model_selection import train_test_split
    from sksparse_mlp import TrulySparseMLPRegressor
    X, y = make_regression(n_samples=1200, n_features=15, n_informative=10, noise=5.0,
                           random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    params = dict(hidden_layer_sizes=(32,), max_iter=20, random_state=0, worker_timeout=120,
                  learning_rate_init=0.01)
    r1 = TrulySparseMLPRegressor(**params).fit(Xtr, ytr).score(Xte, yte)
    r2 = TrulySparseMLPRegressor(n_workers=2, **params).fit(Xtr, ytr).score(Xte, yte)
    assert r2 >= r1 - 0.1, (r1, r2)
    assert r2 > 0.8


@pytest.mark.timeout(240)
def test_adam_and_gradient_regrowth_with_two_workers(warm_kernels):
    """The server owns Adam's moments in phase 1; phase 2 sends them to the workers and
    merges them back with the models; regrow="gradient" runs at the server and workers."""
    from sksparse_mlp import TrulySparseMLPClassifier
    from sksparse_mlp.parallel import _testing
    Xtr, Xte, ytr, yte = _data_clf()
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(32, 32), max_iter=8, random_state=0,
                                   worker_timeout=120, n_workers=2, worker_mode="sync",
                                   solver="adam", learning_rate_init=0.003,
                                   regrow="gradient").fit(Xtr, ytr)
    assert _testing.last_stats["epochs"] == 8
    assert clf.score(Xte, yte) > 0.6
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf._optimizer.t > 0
    for layer in clf.network_.layers:
        assert layer.second.shape == layer.velocity.shape == layer.W.data.shape
        assert layer.second.min() >= 0 and layer.second.max() > 0


@pytest.mark.timeout(240)
def test_sync_mode_is_reproducible(warm_kernels):
    import numpy as np
    from sksparse_mlp import TrulySparseMLPClassifier
    Xtr, Xte, ytr, yte = _data_clf()
    params = dict(hidden_layer_sizes=(16, 16), max_iter=6, random_state=42, n_workers=2,
                  worker_mode="sync", dropout=0.1, worker_timeout=120)
    a = TrulySparseMLPClassifier(**params).fit(Xtr, ytr)
    b = TrulySparseMLPClassifier(**params).fit(Xtr, ytr)
    assert a.loss_curve_ == b.loss_curve_
    for Wa, Wb, ba, bb in zip(a.coefs_, b.coefs_, a.intercepts_, b.intercepts_):
        assert np.array_equal(Wa.indices, Wb.indices) and np.array_equal(Wa.indptr, Wb.indptr)
        assert np.array_equal(Wa.data, Wb.data) and np.array_equal(ba, bb)
    c = TrulySparseMLPClassifier(**dict(params, random_state=7)).fit(Xtr, ytr)
    assert c.loss_curve_ != a.loss_curve_


@pytest.mark.timeout(240)
@pytest.mark.parametrize("phase1_fraction", [0.7, 0.2])
def test_callback_stops_worker_training(warm_kernels, phase1_fraction):
    # epoch 3 of 10 falls in phase 1 (async steps) or in phase 2 (local training)
    import numpy as np
    from sksparse_mlp import TrulySparseMLPClassifier
    Xtr, Xte, ytr, yte = _data_clf()
    seen = []

    def stop_at_3(est):
        seen.append(est.n_iter_)
        return est.n_iter_ == 3
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0,
                                   n_workers=2, phase1_fraction=phase1_fraction,
                                   worker_timeout=120, callback=stop_at_3).fit(Xtr, ytr)
    assert seen == [1, 2, 3] and clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert np.isfinite(clf.loss_curve_).all() and clf.predict(Xte).shape == yte.shape


@pytest.mark.timeout(120)
def test_fit_raise_in_process_keeps_state_and_pool_reusable(warm_kernels):
    import numpy as np
    from sksparse_mlp import TrulySparseMLPClassifier, parallel
    from sksparse_mlp.parallel import _testing
    Xtr, Xte, ytr, yte = _data_clf()
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0,
                                   n_workers=2, worker_timeout=120).fit(Xtr, ytr)
    before = [W.copy() for W in clf.coefs_]
    _testing.hooks["fault"] = {"rank": 0, "kind": "raise", "where": "step", "after": 1}
    try:
        with pytest.raises(parallel.WorkerError, match="injected failure"):
            clf.fit(Xtr, ytr)
    finally:
        _testing.hooks["fault"] = None
    assert all(np.array_equal(a.data, W.data) for a, W in zip(before, clf.coefs_))
    clf.set_params(max_iter=1).fit(Xtr, ytr)          # MPI still usable in this process


@pytest.mark.timeout(300)
def test_gridsearch_pipeline_clone_pickle(warm_kernels):
    import pickle
    import numpy as np
    from sklearn.base import clone
    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksparse_mlp import TrulySparseMLPClassifier
    X, y = make_classification(n_samples=700, n_features=10, n_informative=5, class_sep=2.0,
                               random_state=0)
    Xtr, Xte, ytr, yte = X[:600], X[600:], y[:600], y[600:]
    base = TrulySparseMLPClassifier(hidden_layer_sizes=(32,), max_iter=10, batch_size=32,
                                    random_state=0, n_workers=2, worker_timeout=120)
    c = clone(base)
    assert c.get_params() == base.get_params()
    gs = GridSearchCV(make_pipeline(StandardScaler(), base),
                      {"trulysparsemlpclassifier__density": [0.3, 0.6]},
                      cv=2, n_jobs=2)
    gs.fit(Xtr, ytr)
    assert set(gs.cv_results_["param_trulysparsemlpclassifier__density"]) == {0.3, 0.6}
    assert gs.best_score_ > 0.8
    fitted = gs.best_estimator_
    clf = fitted[-1]
    assert clf.n_workers == 2 and clf.n_iter_ == 10
    blob = pickle.dumps(fitted)
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict(Xte), fitted.predict(Xte))
    # nothing MPI-related lives on the estimator
    assert not any("comm" in k or "pool" in k for k in vars(clf))


# ---------------------------------------------------------------------------- issue 10
# Faults from outside at controlled (random) moments; each run is a fresh subprocess.
# SKSPARSE_FAULT_REPEAT multiplies the repetitions (the long soak: benchmarks/soak_mpi.py).
REPEAT = int(os.environ.get("SKSPARSE_FAULT_REPEAT", "1"))


def _brief(res):
    return {k: (v[:300] if isinstance(v, str) else v) for k, v in res.items()
            if k not in ("stderr", "bases")}


# A worker SIGKILLed while starting is checked at the estimator level
# (test_fit_start_up_failure_within_worker_timeout): MPICH's Spawn then crashed the
# process hosting MPI in 3 of 62 runs (also on 4fa4259), which for a fit is the helper
# process the caller throws away, so the pool-level scenario cannot promise more.
@pytest.mark.timeout(60 + NEXT_FIT_S * REPEAT)
@pytest.mark.parametrize("name", ["start_die", "bad_host", "unreachable_host"])
def test_start_up_failure_reported_fast(name):
    for i in range(REPEAT):
        res = run_scenario(name, timeout=NEXT_FIT_S)
        assert res["exc"] in ("WorkerDied", "WorkerTimeout"), _brief(res)
        # within the 5 s start-up timeout, or about at once when the launcher exits
        assert res["detect_s"] < (2.5 if name == "bad_host" else 5.5), _brief(res)
        if name in ("start_die", "bad_host"):
            assert res["next_fit"] == "ok", _brief(res)
        if name == "bad_host":
            assert res["exc"] == "WorkerDied", _brief(res)
            assert "launcher" in res["msg"] and "Could not resolve hostname" in res["msg"], \
                _brief(res)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["fit_start_die", "fit_start_hang", "fit_start_killed"])
def test_fit_start_up_failure_within_worker_timeout(name):
    res = run_scenario(name, timeout=100)
    assert res["exc"] == ("WorkerTimeout" if name == "fit_start_hang" else "WorkerDied"), \
        _brief(res)
    # worker_timeout=3, counted from the call to fit (a start-up hang took 180 s, issue
    # 10); the fit's helper process spawns the workers before it imports numpy, scipy or
    # numba (parallel/_start.py), so the start adds well under 1.5 s
    assert res["detect_s"] < 3.0 + 1.5, _brief(res)
    assert res["left_while_alive"] == [], _brief(res)
    assert res["again"] == "ok", _brief(res)


@pytest.mark.timeout(2 * NEXT_FIT_S + 60 * REPEAT)
def test_worker_dies_after_goodbye_is_noticed():
    res = run_scenario("die_after_bye", timeout=NEXT_FIT_S)
    # seen either while draining the goodbyes or after Disconnect (launcher gone)
    assert any("died while exiting" in w or "failed during shutdown" in w
               for w in res["warnings"]), _brief(res)
    assert "MPIUnusableError" in res["again"], _brief(res)     # not a segfault, not a hang
    assert res["next_fit"] == "ok", _brief(res)
    for i in range(3 * REPEAT):
        # SIGKILL at a random moment of close(): before the bye -> warning, after the
        # process left MPI -> nothing to notice; never a crash of the next pool
        # (the next fit after a death in close() is checked once, by die_after_bye above)
        res = run_scenario("kill_in_close")
        assert res["again"] == "ok" or "MPIUnusableError" in res["again"], _brief(res)
        assert (res["again"] == "ok") == (not res["warnings"]), _brief(res)


@pytest.mark.timeout(150)
def test_fit_whose_worker_dies_after_goodbye_warns_and_next_fit_works():
    res = run_scenario("fit_die_after_bye", timeout=140)
    assert res["exc"] is None and res["n_iter_"] == 2, _brief(res)
    assert any("died while exiting" in w or "failed during shutdown" in w
               for w in res["warnings"]), _brief(res)
    assert res["again"] == "ok", _brief(res)


@pytest.mark.timeout(60 + 90 * REPEAT)
def test_keyboard_interrupt_during_spawn_leaves_no_orphans():
    for i in range(3 * REPEAT):
        res = run_scenario("interrupt_spawn")
        assert res["exc"] == "KeyboardInterrupt", _brief(res)
        assert res["stop_s"] < 4.0, _brief(res)
        assert res["left_while_alive"] == [], _brief(res)
        assert res["again"] == "ok", _brief(res)


@pytest.mark.timeout(60 + 120 * REPEAT)
@pytest.mark.parametrize("name", ["interrupt_send", "interrupt_close", "interrupt_after_spawn"])
def test_keyboard_interrupt_keeps_mpi_usable(name):
    for i in range(2 * REPEAT):
        res = run_scenario(name)
        assert res["exc"] == "KeyboardInterrupt", _brief(res)
        assert res["stop_s"] < 2.0, _brief(res)
        assert res["left_while_alive"] == [], _brief(res)
        assert res["again"] == "ok", _brief(res)

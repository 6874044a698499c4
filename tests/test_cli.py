"""The ``sksparse-mlp`` command line: train -> model file -> predict, and every bad-input case.

Most tests call ``cli.main(argv)`` in-process (fast); a few run the real entry
points in a subprocess (``python -m sksparse_mlp``, the console script).
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest

from sksparse_mlp import TrulySparseMLPClassifier, cli

FAST = ["--hidden-layer-sizes", "16", "--max-iter", "4", "--random-state", "0"]


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 5))
    y = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "f1", "f2", "f3", "f4", "label"])
        for row, t in zip(X, y):
            w.writerow([f"{v:.4f}" for v in row] + [t])
    return str(path)


@pytest.fixture(scope="module")
def trained(toy_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    model = str(out / "m.joblib")
    code = cli.main(["train", toy_csv, "--target", "label", "-o", model, *FAST,
                     "--max-iter", "6", "--dropout", "0.0"])
    assert code == 0
    return model


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, expected_status=2):
    assert code == expected_status
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("sksparse-mlp: error: ")
    return lines[-1]


# ------------------------------------------------------------------ happy path
def test_train_writes_model_and_metrics(trained):
    bundle = joblib.load(trained)
    assert bundle["marker"] == cli.MODEL_MARKER
    assert bundle["feature_names"] == ["f0", "f1", "f2", "f3", "f4"]
    est = bundle["model"][-1]
    assert isinstance(est, TrulySparseMLPClassifier)
    assert est.hidden_layer_sizes == (16,) and est.max_iter == 6 and est.dropout == 0.0
    # the progress callback is gone: the saved estimator is a plain one
    assert est.callback is None
    metrics = json.load(open(trained.replace(".joblib", ".metrics.json")))
    assert metrics["n_train"] == 128 and metrics["n_test"] == 32
    assert 0 <= metrics["holdout"]["accuracy"] <= 1
    assert metrics["n_iter"] == len(metrics["loss_curve"]) == len(metrics["holdout_curve"])
    assert metrics["classes"] == ["neg", "pos"]
    assert sum(metrics["n_connections"]) > 0 and metrics["params"]["max_iter"] == 6


def test_progress_line_per_epoch(toy_csv, tmp_path, capsys):
    code, out, err = run(["train", toy_csv, "-t", "label", "-o", str(tmp_path / "m.joblib"),
                          *FAST, "--early-stopping", "--validation-fraction", "0.2"], capsys)
    assert code == 0
    epochs = [ln for ln in err.splitlines() if ln.startswith("epoch")]
    assert len(epochs) == 4
    for ln in epochs:
        assert "loss" in ln and "val" in ln and "holdout acc" in ln and "conn" in ln
        assert ln.rstrip().endswith("s")
    assert "model saved to" in out and "holdout accuracy" in out


def test_predict_roundtrip(trained, toy_csv, tmp_path, capsys):
    out_csv = str(tmp_path / "pred.csv")
    code, out, err = run(["predict", trained, toy_csv, "--proba", "-o", out_csv], capsys)
    assert code == 0, err
    rows = list(csv.reader(open(out_csv)))
    assert rows[0] == ["prediction", "proba_neg", "proba_pos"]
    assert len(rows) == 161
    assert {r[0] for r in rows[1:]} <= {"neg", "pos"}
    p = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-4)
    assert "accuracy against column 'label'" in err
    # same predictions as the model itself, on a file without the target column
    # and with the feature columns in another order
    src = list(csv.reader(open(toy_csv)))
    noy = tmp_path / "noy.csv"
    with open(noy, "w", newline="") as f:
        w = csv.writer(f)
        for r in src:
            w.writerow([r[4], r[3], r[2], r[1], r[0]])
    code, out, _ = run(["predict", trained, str(noy)], capsys)
    assert code == 0
    assert out.splitlines()[1:] == [r[0] for r in rows[1:]]


def test_regression_and_npz_and_svmlight(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    npz = str(tmp_path / "r.npz")
    np.savez(npz, X=X, y=y)
    model = str(tmp_path / "r.joblib")
    code, out, err = run(["train", npz, "--regression", "-o", model, "-q", *FAST], capsys)
    assert code == 0, err
    assert "holdout r2" in out
    code, out, _ = run(["predict", model, npz], capsys)
    assert code == 0 and len(out.splitlines()) == 121
    code, _, err = run(["predict", model, npz, "--proba"], capsys)
    assert "needs a classification model" in one_line_error(code, err)
    # continuous target without --regression: a hint, not a crash
    code, _, err = run(["train", npz, "-o", model, *FAST], capsys)
    assert "use --regression" in one_line_error(code, err)

    svm = tmp_path / "c.svm"
    with open(svm, "w") as f:
        for i in range(80):
            lab = i % 2
            f.write(f"{lab} {1 + i % 7}:{1.0 + lab} {8 + lab}:1\n")
    model = str(tmp_path / "c.joblib")
    code, out, err = run(["train", str(svm), "-o", model, "-q", *FAST], capsys)
    assert code == 0, err
    few = tmp_path / "few.svm"
    few.write_text("0 1:1\n1 9:1\n")  # fewer features than at training time
    code, out, err = run(["predict", model, str(few)], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 3


def test_every_estimator_parameter_is_a_flag():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    flags = {o for a in sub.choices["train"]._actions for o in a.option_strings}
    for name in TrulySparseMLPClassifier().get_params():
        if name == "callback":           # a Python callable; the CLI sets its progress line
            assert "--callback" not in flags
            continue
        assert "--" + name.replace("_", "-") in flags, name


def test_flag_help_comes_from_the_parameter_entries():
    # no docstring is parsed: the text is the entry's summary, the default the signature's
    from sksparse_mlp import _docstrings

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    actions = {a.dest: a for a in sub.choices["train"]._actions}
    for name, default in _docstrings.signature_defaults(TrulySparseMLPClassifier).items():
        if name == "callback":
            continue
        text = actions[name].help.replace("%%", "%")
        assert text.startswith(_docstrings.PARAMETERS[name].summary.replace("``", "")), name
        assert f"(default: {default!r}" in text, name
    assert "with --regression: 'relu'" in actions["activation"].help


def test_flag_values_are_parsed(toy_csv):
    args = cli.build_parser().parse_args(
        ["train", toy_csv, "--hidden-layer-sizes", "32,16", "--density", "0.25",
         "--no-shuffle", "--batch-size", "auto", "--random-state", "3", "--n-workers", "1",
         "--mpi-info", '{"hosts": "a,b"}'])
    est = cli.estimator_from_args(args, regression=False)
    p = est.get_params()
    assert p["hidden_layer_sizes"] == (32, 16) and p["density"] == 0.25
    assert p["shuffle"] is False and p["batch_size"] == "auto" and p["random_state"] == 3
    assert p["mpi_info"] == {"hosts": "a,b"}
    # unset flags keep the estimator's own defaults
    defaults = TrulySparseMLPClassifier().get_params()
    assert p["zeta"] == defaults["zeta"] and p["epsilon"] == defaults["epsilon"]


def test_new_parameter_flags(toy_csv):
    """Adam, gradient regrowth, per-layer density and the Poisson loss from the command line."""
    args = cli.build_parser().parse_args(
        ["train", toy_csv, "--solver", "adam", "--beta-1", "0.8", "--beta-2", "0.99",
         "--adam-epsilon", "1e-7", "--regrow", "gradient", "--regrow-candidates", "3",
         "--density", "0.1,0.5,1", "--loss", "poisson"])
    p = cli.estimator_from_args(args, regression=True).get_params()
    assert (p["solver"], p["beta_1"], p["beta_2"], p["adam_epsilon"]) == ("adam", 0.8, 0.99, 1e-7)
    assert (p["regrow"], p["regrow_candidates"], p["loss"]) == ("gradient", 3, "poisson")
    assert p["density"] == [0.1, 0.5, 1.0]


def test_invalid_parameter_value(toy_csv, capsys):
    code, _, err = run(["train", toy_csv, "-t", "label", "--zeta", "2"], capsys)
    assert "zeta" in one_line_error(code, err)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("content, args, message", [
    (None, ["-t", "y"], "no such file"),
    ("", ["-t", "y"], "empty file"),
    ("a,b,y\n", ["-t", "y"], "header only"),
    ("a,b,y\n1,2,0\n3,4,1\n", ["-t", "label"], "no target column 'label'; columns are: a, b, y"),
    ("a,b,y\n1,2,0\n3,oops,1\n", ["-t", "y"], "non-numeric value 'oops' at line 3, column 'b'"),
    ("a,b,y\n1,2,0\n3,4,0\n", ["-t", "y"], "single class"),
])
def test_train_bad_files(tmp_path, capsys, content, args, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    code, _, err = run(["train", str(path), *args, "-o", str(tmp_path / "m.joblib")], capsys)
    assert message in one_line_error(code, err)
    assert "Traceback" not in err
    assert not (tmp_path / "m.joblib").exists()


def test_predict_bad_model_files(tmp_path, toy_csv, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    other = tmp_path / "other.joblib"
    joblib.dump({"some": "dict"}, other)
    sk = tmp_path / "sk.joblib"
    joblib.dump(TrulySparseMLPClassifier(), sk)  # ours, but not a CLI model bundle
    empty = tmp_path / "empty.joblib"
    empty.write_bytes(b"")
    for path, message in [(tmp_path / "missing.joblib", "no such file"),
                          (text, "not a sksparse-mlp model file"),
                          (other, "not a sksparse-mlp model file"),
                          (sk, "not a sksparse-mlp model file"),
                          (empty, "empty file")]:
        code, _, err = run(["predict", str(path), toy_csv], capsys)
        assert message in one_line_error(code, err), path


def test_predict_bad_data(trained, tmp_path, capsys):
    for content, message in [
        (None, "no such file"),
        ("", "empty file"),
        ("f0,f1,f2,f3,f4\n1,2,3,4,x\n", "non-numeric value 'x' at line 2, column 'f4'"),
        ("f0,f1,f2,f3\n1,2,3,4\n", "missing feature column(s) the model was trained on: f4"),
    ]:
        path = tmp_path / "p.csv"
        if path.exists():
            path.unlink()
        if content is not None:
            path.write_text(content)
        code, _, err = run(["predict", trained, str(path)], capsys)
        assert message in one_line_error(code, err)


def test_no_command_prints_help(capsys):
    code, out, _ = run([], capsys)
    assert code == 2 and "demo" in out and "train" in out and "predict" in out


# ------------------------------------------------------------------ real entry points
@pytest.mark.slow
def test_python_m_help(subprocess_env):
    r = subprocess.run([sys.executable, "-m", "sksparse_mlp", "--help"], capture_output=True,
                       text=True, timeout=120, env=subprocess_env)
    assert r.returncode == 0
    assert "demo" in r.stdout and "train" in r.stdout and "predict" in r.stdout


@pytest.mark.slow
def test_console_script_end_to_end(toy_csv, tmp_path, subprocess_env):
    exe = shutil.which("sksparse-mlp", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "sksparse_mlp"]
    model = str(tmp_path / "m.joblib")
    r = subprocess.run(cmd + ["train", toy_csv, "--target", "label", "-o", model, *FAST],
                       capture_output=True, text=True, timeout=180, env=subprocess_env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["predict", model, toy_csv, "-o", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=120, env=subprocess_env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["train", str(tmp_path / "missing.csv"), "-t", "y"],
                       capture_output=True, text=True, timeout=120, env=subprocess_env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"sksparse-mlp: error: {tmp_path / 'missing.csv'}: no such file"]


@pytest.mark.slow
def test_demo_runs_small(tmp_path, capsys):
    code, out, err = run(["demo", "--dataset", "wine", "--epochs", "3",
                          "--hidden-layer-sizes", "16", "--output-dir", str(tmp_path),
                          "--json", str(tmp_path / "demo.json")], capsys)
    assert code == 0, err
    assert "dense MLPClassifier" in out and "importance pruning" in out
    assert "test accuracy" in out and "fit time" in out and "hidden neurons" in out
    assert (tmp_path / "sksparse-mlp-demo.png").stat().st_size > 10_000
    res = json.load(open(tmp_path / "demo.json"))
    assert len(res["results"]) == 3


def test_svmlight_index_convention_is_kept(tmp_path, capsys):
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    train = tmp_path / "z.svm"
    with open(train, "w") as f:  # zero-based indices 0..5
        for i in range(60):
            lab = i % 2
            pairs = " ".join(f"{j}:{rng.normal() + 2 * lab * (j == 0):.3f}" for j in range(6))
            f.write(f"{lab} {pairs}\n")
    model = str(tmp_path / "z.joblib")
    code, _, err = run(["train", str(train), "-o", model, "-q", *FAST], capsys)
    assert code == 0, err
    bundle = joblib.load(model)
    assert bundle["svmlight_zero_based"] is True
    test = tmp_path / "t.svm"
    test.write_text("0 1:3.0\n0 5:-2.0\n")  # no index 0: "auto" would read it one-based
    code, out, err = run(["predict", model, str(test), "--proba"], capsys)
    assert code == 0, err
    X = sp.csr_matrix(([3.0, -2.0], ([0, 1], [1, 5])), shape=(2, 6))
    expected = bundle["model"].predict_proba(X)
    got = np.array([[float(v) for v in line.split(",")[1:]] for line in out.splitlines()[1:]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_warm_up_fits_a_copy_and_never_raises():
    from sksparse_mlp import TrulySparseMLPRegressor
    est = TrulySparseMLPClassifier(hidden_layer_sizes=(300, 300), max_iter=7)
    assert cli.warm_up(est, stream=io.StringIO()) > 0
    assert not hasattr(est, "network_") and est.max_iter == 7      # the estimator is untouched
    from sksparse_mlp import _sampling  # the sampler of dense Erdős–Rényi layers is compiled too
    assert _sampling._complement_sorted.signatures
    assert cli.warm_up(TrulySparseMLPRegressor(), sparse_input=True) > 0
    # settings the tiny copy cannot take: the real fit will report them, not the warm-up
    assert cli.warm_up(TrulySparseMLPClassifier(dtype="float16")) == 0.0

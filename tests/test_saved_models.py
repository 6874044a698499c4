"""Models saved by sksparse_mlp 0.1.0 load and predict the same with today's code.

A pickle names classes by module path: ``sksparse_mlp._estimators``'s
estimators, ``sksparse_mlp._network.SparseMLP`` / ``SparseLayer`` and
``sksparse_mlp._optimizers.MomentumSGD``. Moving or renaming one breaks
every saved model unless the old path keeps working; these tests say so.
The fixtures were made once by ``tests/data/models-0.1.0/make.py`` on 0.1.0.
"""
import os
import pickle
import warnings

import numpy as np
import pytest

from sksparse_mlp import TrulySparseMLPClassifier, TrulySparseMLPRegressor
from sksparse_mlp.cli import main

HERE = os.path.join(os.path.dirname(__file__), "data", "models-0.1.0")


def _load(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(HERE, "expected.npz")) as data:
        return {k: data[k] for k in data.files}


def test_fixtures_were_made_by_the_released_version(expected):
    assert str(expected["version"]) == "0.1.0"


def test_classifier_predicts_the_same(expected):
    clf = _load("classifier.pkl")
    assert isinstance(clf, TrulySparseMLPClassifier)
    # importance pruning removed neurons before the model was saved
    assert clf.n_neurons_[1:-1] != [12, 8]
    np.testing.assert_array_equal(clf.predict(expected["X"]), expected["clf_predict"])
    np.testing.assert_allclose(clf.predict_proba(expected["X"]), expected["clf_proba"],
                               rtol=1e-6, atol=1e-7)


def test_regressor_predicts_the_same(expected):
    reg = _load("regressor.pkl")
    assert isinstance(reg, TrulySparseMLPRegressor)
    np.testing.assert_allclose(reg.predict(expected["X"]), expected["reg_predict"],
                               rtol=1e-6, atol=1e-7)


def test_loaded_models_go_on_training(expected):
    X = expected["X"]
    clf, reg = _load("classifier.pkl"), _load("regressor.pkl")
    loss = clf.loss_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, expected["clf_predict"])
        reg.partial_fit(X, expected["reg_predict"])
    assert clf.n_iter_ == reg.n_iter_ == 1 and clf.loss_ != loss


def test_cli_model_file_predicts_the_same(tmp_path, capsys):
    out = tmp_path / "p.csv"
    code = main(["predict", os.path.join(HERE, "cli-model.joblib"), os.path.join(HERE, "toy.csv"),
                 "--proba", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(os.path.join(HERE, "cli-predictions.csv")) as f:
        want = [line.split(",") for line in f.read().splitlines()]
    got = [line.split(",") for line in out.read_text().splitlines()]
    assert got[0] == want[0] and len(got) == len(want) > 1
    assert [r[0] for r in got] == [r[0] for r in want]
    np.testing.assert_allclose(np.array([r[1:] for r in got[1:]], dtype=float),
                               np.array([r[1:] for r in want[1:]], dtype=float), rtol=1e-5)

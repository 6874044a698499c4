"""Offline generators (shapes, determinism, learnability) and user-file loaders (errors)."""
import numpy as np
import pytest
import scipy.sparse as sp

from sksparse_mlp import datasets
from sksparse_mlp.cli._loaders import DataError, load_csv, load_data, load_npz, load_svmlight
from sksparse_mlp.datasets import make_fashion_like, make_lung_like, make_madelon


def test_madelon_shapes_and_determinism():
    a = make_madelon(random_state=0)
    b = make_madelon(random_state=0)
    X_tr, X_te, y_tr, y_te = a
    assert X_tr.shape == (2000, 500) and X_te.shape == (600, 500)
    assert set(np.unique(y_tr)) == {0, 1} and abs(y_tr.mean() - 0.5) < 0.05
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = make_madelon(200, 50, random_state=1)
    assert c[0].shape == (200, 500) and not np.array_equal(c[0][:5], a[0][:5])


def test_fashion_like():
    X_tr, X_te, y_tr, y_te = make_fashion_like(600, 200, random_state=0)
    assert X_tr.shape == (600, 784) and X_te.shape == (200, 784)
    assert X_tr.dtype == np.float32 and X_tr.min() >= 0 and X_tr.max() <= 1
    assert len(np.unique(y_tr)) == 10
    again = make_fashion_like(600, 200, random_state=0)
    np.testing.assert_array_equal(X_tr, again[0])
    assert not np.array_equal(X_tr, make_fashion_like(600, 200, random_state=1)[0])


def test_fashion_like_is_learnable_not_trivial():
    from sklearn.linear_model import RidgeClassifier

    X_tr, X_te, y_tr, y_te = make_fashion_like(1500, 500, random_state=0)
    acc = RidgeClassifier(alpha=10.0).fit(X_tr, y_tr).score(X_te, y_te)
    assert 0.45 < acc < 0.95, acc


def test_lung_like():
    X, y, informative = make_lung_like(random_state=0)
    assert X.shape == (203, 3312)
    assert np.bincount(y).tolist() == [139, 17, 21, 20, 6]
    assert informative.shape == (300,) and informative.max() < 3312
    X2, y2, _ = make_lung_like(random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    small, ys, _ = make_lung_like(60, 100, n_informative=10, random_state=0)
    assert small.shape == (60, 100) and len(ys) == 60 and np.bincount(ys).min() >= 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_generators_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="positive integer"):
        make_madelon(bad, 10)


# ------------------------------------------------------------------ loaders
def _write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    with open(p, mode) as f:
        f.write(text)
    return str(p)


def test_csv_numeric_and_string_targets(tmp_path):
    p = _write(tmp_path, "d.csv", "a,b,y\n1,2,0\n3,4.5,1\n\n")
    d = load_csv(p, "y")
    assert d.X.tolist() == [[1, 2], [3, 4.5]] and d.y.tolist() == [0.0, 1.0]
    assert d.feature_names == ["a", "b"] and d.target == "y"
    p = _write(tmp_path, "s.csv", "y;a\ncat;1\ndog;2\n")
    X, y = load_data(p, target="y")
    assert X.tolist() == [[1.0], [2.0]] and y.tolist() == ["cat", "dog"]
    # no target needed for prediction; a present target column is left out of X
    d = load_csv(p, "y", require_target=False)
    assert d.X.shape == (2, 1) and d.y is not None
    d = load_csv(_write(tmp_path, "n.csv", "a,b\n1,2\n"), "y", require_target=False)
    assert d.X.shape == (1, 2) and d.y is None


@pytest.mark.parametrize("content, target, message", [
    ("", "y", r"e\.csv: empty file$"),
    ("\n\n  \n", "y", "empty file"),
    ("a,b,y\n", "y", "header only, no data rows"),
    ("a,b,y\n1,2,3\n", "label", r"no target column 'label'; columns are: a, b, y$"),
    ("a,b,y\n1,2,3\n", None, "no target column given"),
    ("a,b,y\n1,2,0\n3,x7,1\n", "y", r"non-numeric value 'x7' at line 3, column 'b'$"),
    ("a,b,y\n1,,0\n", "y", r"missing value at line 2, column 'b'$"),
    ("a,b,y\n1,nan,0\n", "y", r"non-numeric value 'nan' at line 2, column 'b'"),
    ("a,b,y\n1,2\n", "y", "line 2 has 2 fields, the header has 3"),
    ("a,a,y\n1,2,0\n", "y", "duplicate column name"),
    ("a,y\n1,\n", "y", "missing target value at line 2"),
    ("y\n1\n", "y", "no feature columns"),
])
def test_csv_errors(tmp_path, content, target, message):
    p = _write(tmp_path, "e.csv", content)
    with pytest.raises(DataError, match=message) as info:
        load_data(p, target=target)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        load_data(str(tmp_path / "nope.csv"), "y")
    with pytest.raises(DataError, match="is a directory"):
        load_data(str(tmp_path), "y")


def test_binary_file_is_not_csv(tmp_path):
    p = _write(tmp_path, "b.csv", b"\xff\xfe\x00garbage", mode="wb")
    with pytest.raises(DataError, match="not a text file"):
        load_data(p, "y")


def test_svmlight(tmp_path):
    p = _write(tmp_path, "d.svm", "# comment\n1 1:0.5 3:2\n0 2:1\n")
    d = load_svmlight(p)
    assert sp.issparse(d.X) and d.X.shape == (2, 3) and d.zero_based is False
    assert d.y.tolist() == [1.0, 0.0]
    # a predict-time file must keep the training file's convention and width
    d2 = load_svmlight(_write(tmp_path, "e.svm", "0 1:1\n"), n_features=3, zero_based=False)
    assert d2.X.toarray().tolist() == [[1.0, 0.0, 0.0]]
    z = load_svmlight(_write(tmp_path, "z.svm", "1 0:1 2:3\n"))
    assert z.zero_based is True and z.X.shape == (1, 3)
    # sniffed from the contents when the extension says nothing
    X, y = load_data(_write(tmp_path, "d.txt", "1 1:0.5 3:2\n0 2:1\n"))
    assert X.shape == (2, 3)


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("# only a comment\n", "empty file"),
    ("1 1:0.5\nabc 2:1\n", "non-numeric label 'abc' at line 2"),
    ("1 1:0.5\n0 2:x\n", "non-numeric value 'x' at line 2, feature 2"),
    ("1 1:0.5 foo\n", "malformed pair 'foo' at line 1"),
])
def test_svmlight_errors(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_data(_write(tmp_path, "e.svm", content))


def test_npz(tmp_path):
    p = str(tmp_path / "d.npz")
    np.savez(p, X=np.arange(6.0).reshape(3, 2), y=np.array(["a", "b", "a"]))
    d = load_npz(p)
    assert d.X.shape == (3, 2) and d.y.tolist() == ["a", "b", "a"]
    np.savez(p, X=np.ones((3, 2)), label=np.array([[0], [1], [0]]))
    assert load_data(p, target="label").y.tolist() == [0, 1, 0]
    assert load_data(p, require_target=False).y is None


def test_npz_errors(tmp_path):
    p = str(tmp_path / "e.npz")
    np.savez(p, data=np.ones((2, 2)))
    with pytest.raises(DataError, match="no array 'X'; arrays are: data"):
        load_data(p)
    np.savez(p, X=np.ones((2, 2)))
    with pytest.raises(DataError, match="no target array 'y'; arrays are: X"):
        load_data(p)
    np.savez(p, X=np.array([["1", "2"], ["3", "four"]]), y=np.array([0, 1]))
    with pytest.raises(DataError, match="non-numeric value 'four' in X at row 1, column 1"):
        load_data(p)
    np.savez(p, X=np.ones(3), y=np.ones(3))
    with pytest.raises(DataError, match="X must be 2-D"):
        load_data(p)
    np.savez(p, X=np.ones((3, 2)), y=np.ones(2))
    with pytest.raises(DataError, match="X has 3 rows but y has 2"):
        load_data(p)
    np.savez(p, X=np.array([[1.0, np.inf]]), y=np.ones(1))
    with pytest.raises(DataError, match="non-finite value inf in X at row 0, column 1"):
        load_data(p)
    bad = _write(tmp_path, "f.npz", "this is not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        load_data(bad)
    with pytest.raises(DataError, match="empty file"):
        load_data(_write(tmp_path, "g.npz", ""))


def test_loaders_old_names_warn_and_work(tmp_path):
    # 0.1.0 exported the loaders from sksparse_mlp.datasets
    for name, new in [("load_data", load_data), ("load_csv", load_csv), ("DataError", DataError)]:
        with pytest.warns(DeprecationWarning, match=f"datasets.{name} is deprecated"):
            assert getattr(datasets, name) is new
    with pytest.raises(AttributeError, match="no attribute 'load_everything'"):
        datasets.load_everything  # noqa: B018

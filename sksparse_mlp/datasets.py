"""Offline data sets and loaders for user files.

Nothing here downloads anything. The generators give data with the *shape*
of the sets used in "Truly Sparse Neural Networks at Scale" (Madelon,
Fashion-MNIST, the Lung gene-expression set), made up on the spot from a seed;
the loaders read a user's own CSV, svmlight/libsvm or ``.npz`` file and fail
with a one-line :class:`DataError` that says what is wrong and where.

Generators
----------
make_madelon
    Guyon's Madelon generator (:func:`sklearn.datasets.make_classification`):
    500 features, 5 informative, 15 redundant, 2 classes, 2000 + 600 samples.
make_fashion_like
    28 x 28 "images" in [0, 1] (784 features), 10 classes built from shared
    smooth parts, random shifts and noise: learnable, not trivial.
make_lung_like
    203 samples x 3312 "genes", 5 unbalanced classes (139/17/21/20/6).

Loaders
-------
load_data
    Dispatch on the file extension (or ``format=``) to one of the loaders.
load_csv, load_svmlight, load_npz
    The individual loaders.
"""
from __future__ import annotations

import csv
import io
import os
import re
import zipfile

import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

__all__ = [
    "DataError",
    "Dataset",
    "load_csv",
    "load_data",
    "load_npz",
    "load_svmlight",
    "make_fashion_like",
    "make_lung_like",
    "make_madelon",
]


# --------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------
def make_madelon(n_train=2000, n_test=600, *, n_features=500, n_informative=5,
                 n_redundant=15, flip_y=0.01, class_sep=1.0, random_state=None):
    """Madelon-like two-class problem from Guyon's generator, split into train/test.

    Madelon (NIPS 2003 feature-selection challenge) places 32 Gaussian clusters
    on the vertices of a five-dimensional hypercube, labels them at random
    (16 clusters per class), adds 15 linear combinations of the 5 informative
    features and pads with noise features up to 500. This is exactly what
    :func:`sklearn.datasets.make_classification` generates with the settings
    below, so the problem is XOR-like: no single feature and no linear model
    solves it.

    Parameters
    ----------
    n_train : int, default=2000
        Number of training samples (Madelon's training set has 2000).
    n_test : int, default=600
        Number of test samples (Madelon's validation set has 600).
    n_features : int, default=500
        Total number of features.
    n_informative : int, default=5
        Number of informative features (dimension of the hypercube).
    n_redundant : int, default=15
        Number of random linear combinations of the informative features.
    flip_y : float, default=0.01
        Fraction of labels flipped at random.
    class_sep : float, default=1.0
        Half the side of the hypercube; larger is easier.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    X_train : ndarray of shape (n_train, n_features), float64
    X_test : ndarray of shape (n_test, n_features), float64
    y_train : ndarray of shape (n_train,), int64 in {0, 1}
    y_test : ndarray of shape (n_test,), int64 in {0, 1}

    The split is stratified. Scale the features (e.g. ``StandardScaler``)
    before training a network.

    Examples
    --------
    >>> from sksparse_mlp.datasets import make_madelon
    >>> X_train, X_test, y_train, y_test = make_madelon(random_state=0)
    >>> X_train.shape, X_test.shape
    ((2000, 500), (600, 500))
    >>> sorted(set(y_train.tolist()))
    [0, 1]
    """
    n_train, n_test = _check_count(n_train, "n_train"), _check_count(n_test, "n_test")
    n_clusters = max(1, 2 ** n_informative // 2)
    rs = check_random_state(random_state)
    X, y = make_classification(
        n_samples=n_train + n_test, n_features=n_features,
        n_informative=n_informative, n_redundant=n_redundant, n_repeated=0,
        n_classes=2, n_clusters_per_class=n_clusters, flip_y=flip_y,
        class_sep=class_sep, hypercube=True, shuffle=True, random_state=rs)
    return train_test_split(X, y.astype(np.int64), train_size=n_train,
                            test_size=n_test, stratify=y, random_state=rs)


def make_fashion_like(n_train=6000, n_test=1000, *, n_classes=10, noise=0.08,
                      random_state=None):
    """A generated set with the shape of Fashion-MNIST: 784 features in [0, 1], 10 classes.

    Each class is drawn from a few "styles"; a style is a non-negative mix of
    smooth blob-shaped parts on a 28 x 28 grid, and groups of classes share
    most of their parts (as shirts, T-shirts and pullovers do). Each sample
    jitters the part strengths, shifts the image by up to 2 pixels, rescales
    the brightness and adds pixel noise. The result is learnable but not
    trivial: with 6000 training samples a logistic regression reaches about
    0.78 test accuracy and a one-hidden-layer MLP about 0.83-0.87.

    Parameters
    ----------
    n_train : int, default=6000
        Number of training samples.
    n_test : int, default=1000
        Number of test samples.
    n_classes : int, default=10
        Number of classes.
    noise : float, default=0.08
        Standard deviation of the additive pixel noise (before clipping).
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data (both the class prototypes
        and the samples).

    Returns
    -------
    X_train : ndarray of shape (n_train, 784), float32 in [0, 1]
    X_test : ndarray of shape (n_test, 784), float32 in [0, 1]
    y_train : ndarray of shape (n_train,), int64
    y_test : ndarray of shape (n_test,), int64

    Examples
    --------
    >>> from sksparse_mlp.datasets import make_fashion_like
    >>> X_train, X_test, y_train, y_test = make_fashion_like(500, 100, random_state=0)
    >>> X_train.shape, X_test.shape, X_train.dtype
    ((500, 784), (100, 784), dtype('float32'))
    >>> bool(X_train.min() >= 0 and X_train.max() <= 1)
    True
    >>> len(set(y_train.tolist()))
    10
    """
    n_train, n_test = _check_count(n_train, "n_train"), _check_count(n_test, "n_test")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    rng = np.random.default_rng(_seed_from(random_state))
    n_parts, n_styles, side, shift = 32, 3, 28, 2
    # smooth parts: 1-3 rotated anisotropic Gaussian blobs each
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    parts = np.zeros((n_parts, side, side))
    for k in range(n_parts):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(5, side - 5, 2)
            sy, sx = rng.uniform(1.0, 6.0, 2)
            th = rng.uniform(0, np.pi)
            c, s = np.cos(th), np.sin(th)
            u = c * (xx - cx) + s * (yy - cy)
            v = -s * (xx - cx) + c * (yy - cy)
            parts[k] += np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
        parts[k] /= parts[k].max()
    parts = parts.reshape(n_parts, side * side)
    n_families = max(2, int(n_classes) * 2 // 5)
    family = rng.random((n_families, n_parts)) < 0.25
    styles = np.empty((int(n_classes), n_styles, n_parts))
    for c in range(int(n_classes)):
        for s in range(n_styles):
            base = family[c % n_families] * rng.uniform(0.4, 1.0, n_parts)
            own = (rng.random(n_parts) < 0.16) * rng.uniform(0.3, 0.9, n_parts)
            styles[c, s] = base + own

    n = n_train + n_test
    y = rng.integers(0, int(n_classes), n)
    style = rng.integers(0, n_styles, n)
    Z = styles[y, style] * rng.lognormal(0.0, 0.35, (n, n_parts))
    Z += np.clip(rng.normal(0.0, 0.1, (n, n_parts)), 0, None)
    X = (Z @ parts).reshape(n, side, side)
    offsets = rng.integers(-shift, shift + 1, (n, 2))
    for a in range(-shift, shift + 1):
        for b in range(-shift, shift + 1):
            m = (offsets[:, 0] == a) & (offsets[:, 1] == b)
            if m.any():
                X[m] = np.roll(X[m], (a, b), axis=(1, 2))
    X = X.reshape(n, side * side)
    scale = np.quantile(X, 0.99, axis=1, keepdims=True)
    X = X / np.maximum(scale, 1e-12) * rng.uniform(0.6, 1.0, (n, 1))
    X += rng.normal(0.0, float(noise), X.shape)
    np.clip(X, 0.0, 1.0, out=X)
    X = X.astype(np.float32)
    y = y.astype(np.int64)
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


#: class sizes of the Lung gene-expression set (scikit-feature repository)
LUNG_CLASS_SIZES = (139, 17, 21, 20, 6)


def make_lung_like(n_samples=203, n_features=3312, *, n_informative=300,
                   n_factors=20, effect=1.0, random_state=None):
    """A generated set with the shape of the Lung microarray set: 203 x 3312, 5 classes.

    Samples are log2-expression-like values: a per-gene baseline, a low-rank
    correlated part (``n_factors`` latent factors, as co-regulated genes
    give), a class-specific shift on ``n_informative`` genes and gene-wise
    noise. Classes are unbalanced in the proportions of the real set
    (139 / 17 / 21 / 20 / 6 for 203 samples), which makes it a small-n,
    large-p problem where sparse input layers and feature importance matter.

    Parameters
    ----------
    n_samples : int, default=203
        Number of samples (class sizes scale with it; every class keeps at
        least 2 samples).
    n_features : int, default=3312
        Number of genes.
    n_informative : int, default=300
        Number of genes whose mean differs between classes (each class
        shifts a random third of them).
    n_factors : int, default=20
        Rank of the correlated part shared by all genes.
    effect : float, default=1.0
        Size of the class shifts relative to the gene-wise noise. With the
        defaults a standardised logistic regression reaches about 0.89
        cross-validated accuracy (0.69 is the majority class).
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        Not centred: standardise before training.
    y : ndarray of shape (n_samples,), int64 in {0, ..., 4}
    informative : ndarray of shape (n_informative,), int64
        Indices of the genes that carry class information (for checking
        feature importances).

    Examples
    --------
    >>> import numpy as np
    >>> from sksparse_mlp.datasets import make_lung_like
    >>> X, y, informative = make_lung_like(random_state=0)
    >>> X.shape, np.bincount(y).tolist()
    ((203, 3312), [139, 17, 21, 20, 6])
    """
    n_samples = _check_count(n_samples, "n_samples")
    n_features = _check_count(n_features, "n_features")
    if n_samples < 2 * len(LUNG_CLASS_SIZES):
        raise ValueError(f"n_samples must be >= {2 * len(LUNG_CLASS_SIZES)}, got {n_samples}")
    n_informative = min(int(n_informative), n_features)
    rng = np.random.default_rng(_seed_from(random_state))
    sizes = np.asarray(LUNG_CLASS_SIZES, dtype=float) * n_samples / sum(LUNG_CLASS_SIZES)
    sizes = np.maximum(2, np.floor(sizes)).astype(int)
    sizes[0] += n_samples - sizes.sum()
    y = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(y)

    baseline = rng.normal(7.0, 1.5, n_features)
    gene_sd = rng.uniform(0.3, 1.0, n_features)
    loadings = rng.normal(0.0, 1.0, (n_factors, n_features)) * (gene_sd / np.sqrt(n_factors))
    factors = rng.normal(0.0, 1.0, (n_samples, n_factors))
    informative = np.sort(rng.choice(n_features, n_informative, replace=False))
    shifts = np.zeros((len(sizes), n_features))
    # each class over/under-expresses its own random subset of the informative genes
    for c in range(1, len(sizes)):
        genes = rng.choice(informative, max(1, n_informative // 3), replace=False)
        shifts[c, genes] = rng.choice([-1.0, 1.0], genes.size) * effect * gene_sd[genes] * 3
    X = baseline + factors @ loadings + shifts[y]
    X += rng.normal(0.0, 1.0, X.shape) * gene_sd
    return X, y.astype(np.int64), informative.astype(np.int64)


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed_from(random_state):
    """A numpy Generator seed from a sklearn-style random_state."""
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(0, 2 ** 63 - 1)
    return check_random_state(random_state).randint(0, 2 ** 31 - 1)


# --------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------
class DataError(ValueError):
    """A user file cannot be used; the message is one line and names the file."""


class Dataset:
    """What a loader returns: features, optional target and column names.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features) or scipy.sparse CSR matrix
    y : ndarray of shape (n_samples,) or None
        Numeric (float64) when every target value parses as a number,
        otherwise the labels as strings.
    feature_names : list of str or None
        Column names for CSV files, array names for none of the others.
    target : str or None
        The name of the target column (CSV) or array (npz).
    path : str
    zero_based : bool or None
        svmlight files only: whether the feature indices started at 0.
    """

    def __init__(self, X, y=None, feature_names=None, target=None, path=None):
        self.X, self.y = X, y
        self.feature_names, self.target, self.path = feature_names, target, path
        self.zero_based = None  # svmlight only: whether feature indices start at 0

    def __iter__(self):  # allows ``X, y = load_data(...)``
        return iter((self.X, self.y))

    def __repr__(self):
        y = None if self.y is None else self.y.shape
        return f"Dataset(X={self.X.shape}, y={y}, path={self.path!r})"


_FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".tab": "csv",
    ".svm": "svmlight", ".svmlight": "svmlight", ".libsvm": "svmlight",
    ".npz": "npz",
}


def load_data(path, target=None, *, format="auto", require_target=True):
    """Load a user file: CSV with a named target column, svmlight/libsvm, or ``.npz``.

    Parameters
    ----------
    path : str or path-like
        The file. ``.csv``/``.tsv`` are read as CSV, ``.svm``/``.svmlight``/
        ``.libsvm`` as svmlight, ``.npz`` as numpy archives; any other
        extension (e.g. ``.txt``, ``.dat``) is sniffed: a first line with
        ``index:value`` pairs is svmlight, anything else CSV.
    target : str or None, default=None
        CSV: name of the target column (required when ``require_target``).
        npz: name of the target array (default ``"y"``). Ignored for svmlight.
    format : {"auto", "csv", "svmlight", "npz"}, default="auto"
    require_target : bool, default=True
        When False a missing target is not an error and ``y`` is None
        (used for prediction).

    Returns
    -------
    Dataset
        With ``X``, ``y``, ``feature_names``; unpacks as ``X, y``.

    Raises
    ------
    DataError
        One line naming the file and the problem: missing file, empty file,
        missing target column (with the available columns), non-numeric value
        (with its row and column), ...

    Examples
    --------
    >>> import os, tempfile
    >>> from sksparse_mlp.datasets import load_data
    >>> d = tempfile.mkdtemp()
    >>> path = os.path.join(d, "toy.csv")
    >>> _ = open(path, "w").write("a,b,label\\n1,2,x\\n3,4,y\\n")
    >>> X, y = load_data(path, target="label")
    >>> X.tolist(), y.tolist()
    ([[1.0, 2.0], [3.0, 4.0]], ['x', 'y'])
    >>> load_data(path, target="class")
    Traceback (most recent call last):
    ...
    sksparse_mlp.datasets.DataError: ...toy.csv: no target column 'class'; columns are: a, b, label
    """
    path = os.fspath(path)
    if format not in ("auto", "csv", "svmlight", "npz"):
        raise ValueError(f"format must be auto, csv, svmlight or npz, got {format!r}")
    _check_file(path)
    if format == "auto":
        format = _FORMATS.get(os.path.splitext(path)[1].lower()) or _sniff(path)
    if format == "csv":
        return load_csv(path, target, require_target=require_target)
    if format == "svmlight":
        return load_svmlight(path)
    return load_npz(path, target or "y", require_target=require_target)


def _check_file(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a data file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file")


def _sniff(path):
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(b"PK"):
            return "npz"
        f.seek(0)
        first = b""
        for line in f:
            if line.strip() and not line.lstrip().startswith(b"#"):
                first = line
                break
    tokens = first.split()
    if len(tokens) >= 2 and all(b":" in t for t in tokens[1:]):
        return "svmlight"
    return "csv"


def _read_text(path):
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None


def load_csv(path, target=None, *, delimiter=None, require_target=True):
    """Read a CSV file with a header row; every column but the target must be numeric.

    Parameters
    ----------
    path : str or path-like
    target : str or None, default=None
        Name of the target column. Its values may be numbers or labels.
    delimiter : str or None, default=None
        Sniffed from the header when None (``,``, ``;``, tab or ``|``).
    require_target : bool, default=True
        When False, a missing (or None) target gives ``y=None`` and all
        columns become features, except ``target`` if it is present.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Missing/empty file, header only, missing target column (listing the
        columns), ragged rows, empty or non-numeric cells (with the 1-based
        line number and the column name).

    Examples
    --------
    >>> import os, tempfile
    >>> from sksparse_mlp.datasets import load_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.csv")
    >>> _ = open(path, "w").write("a,b,y\\n1,2,0\\n3,oops,1\\n")
    >>> load_csv(path, target="y")
    Traceback (most recent call last):
    ...
    sksparse_mlp.datasets.DataError: ...bad.csv: non-numeric value 'oops' at line 3, column 'b'
    """
    path = os.fspath(path)
    _check_file(path)
    text = _read_text(path)
    lines = text.splitlines()
    # skip leading blank lines, remember the 1-based line number of each row
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise DataError(f"{path}: empty file")
    header_line = numbered[0][1]
    if delimiter is None:
        delimiter = _sniff_delimiter(header_line)
    rows = list(csv.reader(io.StringIO("\n".join(ln for _, ln in numbered)),
                           delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    line_of = [num for num, _ in numbered[1:]]
    if not body:
        raise DataError(f"{path}: header only, no data rows")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path}: duplicate column name(s): {', '.join(dup)}")
    n_cols = len(header)
    for r, row in enumerate(body):
        if len(row) != n_cols:
            raise DataError(f"{path}: line {line_of[r]} has {len(row)} fields, "
                            f"the header has {n_cols}")

    t_idx = None
    if target is not None and target in header:
        t_idx = header.index(target)
    elif require_target:
        if target is None:
            raise DataError(f"{path}: no target column given (use --target); "
                            f"columns are: {_list_columns(header)}")
        raise DataError(f"{path}: no target column {target!r}; "
                        f"columns are: {_list_columns(header)}")
    feat_idx = [j for j in range(n_cols) if j != t_idx]
    if not feat_idx:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    cells = np.array(body, dtype=object)
    feats = cells[:, feat_idx]
    try:
        X = np.asarray(feats.astype(str), dtype=np.float64)
    except ValueError:
        X = None
    if X is None or not np.isfinite(X).all():
        r, c, value = _first_bad_cell(feats)
        what = "missing value" if not value.strip() else f"non-numeric value {value!r}"
        raise DataError(f"{path}: {what} at line {line_of[r]}, column {header[feat_idx[c]]!r}")
    y = None
    if t_idx is not None:
        raw = [v.strip() for v in cells[:, t_idx].astype(str)]
        empty = [i for i, v in enumerate(raw) if not v]
        if empty:
            raise DataError(f"{path}: missing target value at line {line_of[empty[0]]}, "
                            f"column {target!r}")
        try:
            y = np.array(raw, dtype=np.float64)
            if not np.isfinite(y).all():
                bad = int(np.flatnonzero(~np.isfinite(y))[0])
                raise DataError(f"{path}: non-finite target value {raw[bad]!r} at line "
                                f"{line_of[bad]}, column {target!r}")
        except ValueError as exc:
            if isinstance(exc, DataError):
                raise
            y = np.array(raw, dtype=str)
    return Dataset(X, y, [header[j] for j in feat_idx], target if t_idx is not None else None,
                   path)


def _sniff_delimiter(line):
    counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _list_columns(header, limit=30):
    shown = ", ".join(header[:limit])
    return shown + (f", ... ({len(header)} in all)" if len(header) > limit else "")


def _first_bad_cell(cells):
    for r in range(cells.shape[0]):
        for c in range(cells.shape[1]):
            v = str(cells[r, c])
            try:
                if np.isfinite(float(v)):
                    continue
            except ValueError:
                pass
            return r, c, v
    return 0, 0, ""  # pragma: no cover


def load_svmlight(path, *, n_features=None, zero_based="auto"):
    """Read an svmlight / libsvm file (``label index:value ...`` per line).

    Parameters
    ----------
    path : str or path-like
    n_features : int or None, default=None
        Number of features; inferred from the largest index when None.
    zero_based : bool or "auto", default="auto"
        Whether feature indices start at 0. ``"auto"``: zero-based if any
        index 0 occurs, otherwise one-based (the libsvm convention).

    Returns
    -------
    Dataset
        ``X`` is a ``scipy.sparse`` CSR matrix (float64), ``y`` float64;
        ``zero_based`` records the convention used (pass it on when loading
        another file for the same model).

    Raises
    ------
    DataError
        Missing/empty file, or a malformed line (with its line number).

    Examples
    --------
    >>> import os, tempfile
    >>> from sksparse_mlp.datasets import load_svmlight
    >>> path = os.path.join(tempfile.mkdtemp(), "toy.svm")
    >>> _ = open(path, "w").write("1 1:0.5 3:2\\n0 2:1\\n")
    >>> X, y = load_svmlight(path)
    >>> X.toarray().tolist(), y.tolist()
    ([[0.5, 0.0, 2.0], [0.0, 1.0, 0.0]], [1.0, 0.0])
    """
    from sklearn.datasets import load_svmlight_file

    path = os.fspath(path)
    _check_file(path)
    text = _read_text(path)
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise DataError(f"{path}: empty file")
    if zero_based == "auto":
        zero_based = re.search(r"(^|\s)0+:", text, re.M) is not None
    try:
        X, y = load_svmlight_file(path, n_features=n_features, dtype=np.float64,
                                  zero_based=bool(zero_based))
    except Exception as exc:  # sklearn's messages do not name the line
        raise DataError(f"{path}: {_svmlight_problem(text) or str(exc).splitlines()[0]}") from None
    if X.shape[0] == 0:
        raise DataError(f"{path}: empty file")
    if not np.isfinite(X.data).all() or not np.isfinite(y).all():
        return_problem = _svmlight_problem(text) or "non-finite value"
        raise DataError(f"{path}: {return_problem}")
    data = Dataset(X.tocsr(), y, None, None, path)
    data.zero_based = bool(zero_based)
    return data


def _svmlight_problem(text):
    for num, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        label = tokens[0]
        try:
            for lab in label.split(","):
                if not np.isfinite(float(lab)):
                    raise ValueError
        except ValueError:
            return f"non-numeric label {label!r} at line {num}"
        for tok in tokens[1:]:
            if tok.startswith("qid:"):
                continue
            idx, sep, val = tok.partition(":")
            if not sep:
                return f"malformed pair {tok!r} at line {num} (expected index:value)"
            if not idx.isdigit():
                return f"non-integer feature index {idx!r} at line {num}"
            try:
                if not np.isfinite(float(val)):
                    raise ValueError
            except ValueError:
                return f"non-numeric value {val!r} at line {num}, feature {idx}"
    return None


def load_npz(path, target="y", *, require_target=True):
    """Read a numpy ``.npz`` archive holding an ``X`` array and a target array.

    Parameters
    ----------
    path : str or path-like
    target : str, default="y"
        Name of the target array.
    require_target : bool, default=True
        When False a missing target array gives ``y=None``.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Missing/empty file, not an npz archive, no ``X`` (or target) array
        (listing the arrays present), wrong shapes, non-numeric ``X``
        (with the row and column of the first bad value).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sksparse_mlp.datasets import load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
    >>> np.savez(path, X=np.eye(3), y=np.array([0, 1, 1]))
    >>> X, y = load_npz(path)
    >>> X.shape, y.tolist()
    ((3, 3), [0, 1, 1])
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({str(exc).splitlines()[0]})") \
            from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive with X and y")
    with archive:
        names = list(archive.files)
        if not names:
            raise DataError(f"{path}: empty archive (no arrays)")
        if "X" not in names:
            raise DataError(f"{path}: no array 'X'; arrays are: {', '.join(names)}")
        try:
            X = archive["X"]
            y = archive[target] if target in names else None
        except ValueError as exc:  # object arrays need pickle: refuse
            raise DataError(f"{path}: cannot read arrays without pickle "
                            f"({str(exc).splitlines()[0]})") from None
    if y is None and require_target:
        raise DataError(f"{path}: no target array {target!r}; arrays are: {', '.join(names)}")
    if X.ndim != 2:
        raise DataError(f"{path}: X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: X is empty (shape {X.shape})")
    if X.dtype.kind not in "biuf":
        bad = None
        for (r, c), v in np.ndenumerate(X):
            try:
                float(v)
            except (TypeError, ValueError):
                bad = (r, c, v)
                break
        if bad is not None:
            raise DataError(f"{path}: non-numeric value {str(bad[2])!r} in X at row {bad[0]}, "
                            f"column {bad[1]}")
        X = X.astype(np.float64)
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"{path}: non-finite value {X[r, c]} in X at row {r}, column {c}")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.shape[0] != X.shape[0]:
            raise DataError(f"{path}: X has {X.shape[0]} rows but {target} has {y.shape[0]}")
    return Dataset(X, y, None, target if y is not None else None, path)

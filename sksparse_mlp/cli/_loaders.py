"""The command line's file loaders: CSV, svmlight/libsvm and ``.npz``.

They read a user's own file and fail with a one-line :class:`DataError` that
says what is wrong and where (file, row, column); ``train`` and ``predict``
turn it into ``sksparse-mlp: error: ...``.

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


def load_data(path, target: str | None = None, *, format: str = "auto",
              require_target: bool = True) -> Dataset:
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
    >>> from sksparse_mlp.cli._loaders import load_data
    >>> d = tempfile.mkdtemp()
    >>> path = os.path.join(d, "toy.csv")
    >>> _ = open(path, "w").write("a,b,label\\n1,2,x\\n3,4,y\\n")
    >>> X, y = load_data(path, target="label")
    >>> X.tolist(), y.tolist()
    ([[1.0, 2.0], [3.0, 4.0]], ['x', 'y'])
    >>> load_data(path, target="class")
    Traceback (most recent call last):
    ...
    sksparse_mlp.cli._loaders.DataError: ...: no target column 'class'; columns are: a, b, label
    """
    path = os.fspath(path)
    format = resolve_format(path, format)
    if format == "csv":
        return load_csv(path, target, require_target=require_target)
    if format == "svmlight":
        return load_svmlight(path)
    return load_npz(path, target or "y", require_target=require_target)


def resolve_format(path: str, format: str = "auto") -> str:
    """The format of a file: ``format`` itself, or from the extension, else sniffed.

    Raises DataError for a missing, empty or directory ``path`` when ``format`` is
    ``"auto"`` (sniffing reads the file).
    """
    if format not in ("auto", "csv", "svmlight", "npz"):
        raise ValueError(f"format must be auto, csv, svmlight or npz, got {format!r}")
    if format != "auto":
        return format
    _check_file(path)
    return _FORMATS.get(os.path.splitext(path)[1].lower()) or _sniff(path)


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


def load_csv(path, target: str | None = None, *, delimiter: str | None = None,
             require_target: bool = True) -> Dataset:
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
        ``X`` float64 (every column but the target), ``y`` float64 when every
        target value is a number, else the labels as strings (None without a
        target); ``feature_names`` are the header's names of the columns of ``X``.

    Raises
    ------
    DataError
        Missing/empty file, header only, missing target column (listing the
        columns), ragged rows, empty or non-numeric cells (with the 1-based
        line number and the column name).

    Examples
    --------
    >>> import os, tempfile
    >>> from sksparse_mlp.cli._loaders import load_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.csv")
    >>> _ = open(path, "w").write("a,b,y\\n1,2,0\\n3,oops,1\\n")
    >>> load_csv(path, target="y")
    Traceback (most recent call last):
    ...
    sksparse_mlp.cli._loaders.DataError: ...bad.csv: non-numeric value 'oops' at line 3, column 'b'
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


def load_svmlight(path, *, n_features: int | None = None, zero_based="auto") -> Dataset:
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
    >>> from sksparse_mlp.cli._loaders import load_svmlight
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


def load_npz(path, target: str = "y", *, require_target: bool = True) -> Dataset:
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
        ``X`` as stored when numeric (else converted to float64), ``y`` the
        target array as stored (a single column flattened); no feature names.

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
    >>> from sksparse_mlp.cli._loaders import load_npz
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

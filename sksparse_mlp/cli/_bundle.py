"""The model file of ``train`` and ``predict``: a joblib dict around the fitted model.

Format 1 (``MODEL_FORMAT_VERSION``): ``marker``, ``version``, ``package_version``,
``model`` (the estimator, or a Pipeline of scaler and estimator), ``task``,
``feature_names``, ``target``, ``n_features``, ``format``, ``svmlight_zero_based``,
``sparse_input``. The model pickles the estimator classes by module path, which
therefore stay where they are (``tests/test_saved_models.py``).
"""
from __future__ import annotations

import json
import os
import warnings

from ._util import PROG, CLIError, package_version

MODEL_MARKER = "sksparse_mlp.cli/model"
MODEL_FORMAT_VERSION = 1


def load_model(path: str) -> dict:
    """Load a model file written by ``sksparse-mlp train``; CLIError if it is not one."""
    import joblib

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a model file")
    if os.path.getsize(path) == 0:
        raise CLIError(f"{path}: empty file, not a sksparse-mlp model")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bundle = joblib.load(path)
    except Exception:
        raise CLIError(f"{path}: not a sksparse-mlp model file (written by "
                       f"'{PROG} train')") from None
    if not isinstance(bundle, dict) or bundle.get("marker") != MODEL_MARKER:
        raise CLIError(f"{path}: not a sksparse-mlp model file (written by '{PROG} train')")
    if bundle.get("version", 0) > MODEL_FORMAT_VERSION:
        raise CLIError(f"{path}: model file format {bundle['version']} is newer than this "
                       f"{PROG} understands ({MODEL_FORMAT_VERSION}); upgrade sksparse_mlp")
    return bundle



def save_model(path: str, model, metrics_path: str, metrics: dict, **fields) -> None:
    """Write the model file with ``fields`` and the metrics JSON; CLIError (status 1) on failure."""
    import joblib

    bundle = dict(marker=MODEL_MARKER, version=MODEL_FORMAT_VERSION,
                  package_version=package_version(), model=model, **fields)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        joblib.dump(bundle, path)
        with open(metrics_path, "w") as f:
            json.dump(metrics, f, indent=2)
    except OSError as exc:
        raise CLIError(f"cannot write {exc.filename or path}: {exc.strerror or exc}",
                       status=1) from None

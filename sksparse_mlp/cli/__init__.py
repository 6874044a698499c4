"""Command line: ``sksparse-mlp demo | train | predict`` (also ``python -m sksparse_mlp``).

``demo``
    Trains the sparse classifier on a built-in data set (no download), beside a
    dense :class:`~sklearn.neural_network.MLPClassifier` of the same shape,
    prints a comparison table and saves a plot.
``train DATA``
    Trains on a user file (CSV with ``--target``, svmlight/libsvm, ``.npz``
    with ``X`` and ``y``). Every estimator hyper-parameter is a flag, made
    from the estimators' signatures and their parameter entries. Shows one live progress line
    per epoch, evaluates on a held-out split, saves the model (joblib) and a
    metrics JSON.
``predict MODEL DATA``
    Writes predictions (and class probabilities with ``--proba``) as CSV.

Bad input gives a one-line ``sksparse-mlp: error: ...`` on stderr and exit
status 2; a failure during training gives exit status 1.

Modules: ``_parser`` (parser, entry point), ``_flags`` (estimator flags),
``_progress`` (progress line, warm-up), ``_demo``, ``_train``, ``_predict``
(one command each), ``_bundle`` (model-file format), ``_loaders`` (user
files), ``_util`` (errors and output helpers). Imports go from the commands
to the helpers, never back into this ``__init__``.
"""
from ._bundle import MODEL_FORMAT_VERSION, MODEL_MARKER, load_model
from ._flags import estimator_from_args
from ._parser import build_parser, main
from ._progress import warm_up

__all__ = ["MODEL_FORMAT_VERSION", "MODEL_MARKER", "build_parser", "estimator_from_args",
           "load_model", "main", "warm_up"]

"""The scikit-learn estimators: ``TrulySparseMLPClassifier`` and ``TrulySparseMLPRegressor``.

Each adds to the shared :class:`._base._BaseTrulySparseMLP` (parameters, set-up,
transaction, reporting) its own targets (validation, label binarization or
target shapes), loss, output decoding, ``predict`` and tags. Both are pickled by
this module's path (``sksparse_mlp._estimators.<name>``): saved models name it,
so the classes stay here. Their documentation comes from :mod:`._docstrings`.
"""
import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from . import _docstrings
from ._base import _BaseTrulySparseMLP


@_docstrings.document()
class TrulySparseMLPClassifier(ClassifierMixin, _BaseTrulySparseMLP):
    """Multilayer perceptron classifier whose weights are sparse throughout training.

    The weight matrices are ``scipy.sparse`` CSR arrays from the first step to
    the last: memory and time grow with the number of connections, not with
    the dense size. The topology evolves with SET (prune the ``zeta`` fraction
    of the smallest positive and negative weights each epoch, regrow as many at
    random), hidden neurons can be removed by importance pruning, and the
    default activation is All-ReLU. Parameters shared with
    :class:`sklearn.neural_network.MLPClassifier` have its meaning.

    %(sections)s

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sksparse_mlp import TrulySparseMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = TrulySparseMLPClassifier(hidden_layer_sizes=(50, 50), max_iter=50,
    ...                                random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {**_BaseTrulySparseMLP._parameter_constraints,
                              "loss": [StrOptions({"log_loss"})]}
    _loss = "log_loss"

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (dense or sparse) and labels ``y``.

        %(parameters)s

        Returns
        -------
        self : TrulySparseMLPClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train one epoch over ``(X, y)``; ``classes`` is required on the first call.

        Labels of ``y`` outside ``classes`` (or ``classes_``) raise a ValueError;
        a batch may miss classes. ``early_stopping=True`` is not supported.

        %(parameters)s

        Returns
        -------
        self : TrulySparseMLPClassifier
            The updated estimator.
        """
        if not hasattr(self, "network_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError("`classes=%r` is not the same as on the first call to partial_fit, "
                             "was: %r" % (classes, self.classes_))
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _validate_training_data(self, X, y, incremental, first, classes):
        if incremental and not first:
            fast = self._known_labels_fast(X, y)
            if fast is not None:
                return fast
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=np.dtype(self.dtype), reset=first)
        if sp.issparse(X):
            X = X.tocsr()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            lb = LabelBinarizer()
            lb.fit(y if classes is None or type_of_target(y) == "multilabel-indicator" else classes)
            if len(lb.classes_) < 2:
                raise ValueError("The classifier needs samples of at least 2 classes in the data, "
                                 "but the data contains only one class: %r." % lb.classes_[0])
            if classes is not None and lb.y_type_ != "multilabel-indicator":
                self._check_known_labels(y, lb.classes_, "the `classes` argument")
            self._label_binarizer = lb
            self.classes_ = lb.classes_
            if lb.y_type_ == "multilabel-indicator":
                self.out_activation_, self._loss = "logistic", "binary_log_loss"
            elif len(lb.classes_) == 2:
                self.out_activation_, self._loss = "logistic", "binary_log_loss"
            else:
                self.out_activation_, self._loss = "softmax", "log_loss"
        elif not incremental:
            # warm start: as MLPClassifier, the classes must be the same as before
            labels = unique_labels(y)
            if set(labels.tolist()) != set(np.asarray(self.classes_).tolist()):
                raise ValueError("warm_start can only be used where `y` has the same classes as "
                                 "in the previous call to fit. Previously got %s, `y` has %s"
                                 % (self.classes_, labels))
        elif y.ndim == 1:
            self._check_known_labels(y, self.classes_, "the first call to partial_fit")
        return X, self._label_binarizer.transform(y).astype(X.dtype)

    def _known_labels_fast(self, X, y):
        """``(X, Y)`` for a later ``partial_fit`` call on a plain array and integer
        labels that are all known, with the checks of the general path done in a few
        array operations (validation and binarization were a quarter of a small
        network's epoch); None where the general path must run (it also raises)."""
        classes = np.asarray(self.classes_)
        y_type = self._label_binarizer.y_type_
        if (type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in "iu"
                or classes.dtype.kind not in "iu" or y_type not in ("binary", "multiclass")
                or type(X) is not np.ndarray or len(y) != X.shape[0]):
            return None
        pos = np.searchsorted(classes, y)
        if not (pos < len(classes)).all() or not (classes[np.minimum(pos, len(classes) - 1)]
                                                   == y).all():
            return None
        X = self._check_X(X, reset=False)
        if y_type == "binary":  # LabelBinarizer: one column, 1 for classes_[1]
            return X, (pos == 1).astype(X.dtype)[:, None]
        Y = np.zeros((len(y), len(classes)), X.dtype)
        Y[np.arange(len(y)), pos] = 1
        return X, Y

    @staticmethod
    def _check_known_labels(y, classes, where):
        unknown = np.setdiff1d(np.unique(y), classes)
        if len(unknown):
            raise ValueError("y contains labels %r that are not among the classes %r of %s."
                             % (unknown.tolist(), np.asarray(classes).tolist(), where))

    def _decode(self, Y):
        lb = self._label_binarizer
        # LabelBinarizer's own rules (argmax; threshold 0.5) without its array-API
        # dispatch, which costs more than a small network's forward pass
        if not lb.sparse_input_:
            if lb.y_type_ == "multiclass":
                return lb.classes_.take(np.argmax(Y, axis=1))
            if lb.y_type_ == "binary" and Y.shape[1] == 1:
                return lb.classes_.take((Y[:, 0] > 0.5).astype(np.intp))
        return lb.inverse_transform(Y)

    def _score_output(self, out, y, sample_weight):
        return accuracy_score(y, self._decode(out), sample_weight=sample_weight)

    def predict(self, X):
        """Predict class labels.

        %(parameters)s

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted labels; an indicator matrix for multilabel models.
        """
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Predict class probabilities.

        %(parameters)s

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        P = self._forward(X)
        if self._label_binarizer.y_type_ == "binary":
            return np.hstack([1 - P, P])
        return P

    def predict_log_proba(self, X):
        """Predict the logarithm of the class probabilities.

        %(parameters)s

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Logarithm of :meth:`predict_proba`.
        """
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


@_docstrings.document(without=("classes_",), targets="regressor")
class TrulySparseMLPRegressor(RegressorMixin, _BaseTrulySparseMLP):
    """Multilayer perceptron regressor whose weights are sparse throughout training.

    The parameters and attributes are those of :class:`TrulySparseMLPClassifier`
    (but ``classes_``); the output layer is linear and the loss is half the mean
    squared error, as in :class:`sklearn.neural_network.MLPRegressor`, or with
    ``loss="poisson"`` the output is ``exp`` and the loss the half Poisson
    deviance (``y`` must be non-negative with a positive sum). The
    default hidden activation is ``"relu"`` and the default
    ``learning_rate_init`` is 0.001, as in MLPRegressor: All-ReLU passes the
    magnitude of negative pre-activations on, and with a larger step plain SGD
    diverges on unscaled regression targets (the paper used All-ReLU for
    classification only).

    %(sections)s

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sksparse_mlp import TrulySparseMLPRegressor
    >>> X, y = make_regression(n_samples=300, n_features=10, noise=1.0, random_state=0)
    >>> reg = TrulySparseMLPRegressor(hidden_layer_sizes=(64,), max_iter=100, dropout=0.0,
    ...                               learning_rate_init=0.001, random_state=0).fit(X, y / 100)
    >>> reg.score(X, y / 100) > 0.9
    True
    """

    _parameter_constraints = {**_BaseTrulySparseMLP._parameter_constraints,
                              "loss": [StrOptions({"squared_error", "poisson"})]}

    # the signature is the base's but for the defaults of ``activation``,
    # ``learning_rate_init`` and ``loss``: scikit-learn reads parameters and defaults from it
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, allrelu_slope=0.6,
                 epsilon=20, density=None, zeta=0.3, init="sparse_he", regrow="pruned",
                 regrow_candidates=4.0, dropout=0.0, importance_pruning=False, pruning_start=50,
                 pruning_interval=10, pruning_percentile=20.0, alpha=1e-4, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, solver="sgd", beta_1=0.9, beta_2=0.999,
                 adam_epsilon=1e-8, loss="squared_error", early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, dtype="float32", n_workers=1,
                 worker_mode="async", phase1_fraction=0.7, worker_timeout=60.0, mpi_info=None,
                 callback=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            allrelu_slope=allrelu_slope, epsilon=epsilon, density=density, zeta=zeta, init=init,
            regrow=regrow, regrow_candidates=regrow_candidates, dropout=dropout,
            importance_pruning=importance_pruning, pruning_start=pruning_start,
            pruning_interval=pruning_interval, pruning_percentile=pruning_percentile,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            solver=solver, beta_1=beta_1, beta_2=beta_2, adam_epsilon=adam_epsilon, loss=loss,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, dtype=dtype, n_workers=n_workers,
            worker_mode=worker_mode, phase1_fraction=phase1_fraction,
            worker_timeout=worker_timeout, mpi_info=mpi_info, callback=callback)

    @property
    def _loss(self):
        return self.loss

    @property
    def out_activation_(self):
        """str: ``"exp"`` with the Poisson loss (a log link), else ``"identity"``."""
        return "exp" if self.loss == "poisson" else "identity"

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (dense or sparse) and targets ``y``.

        %(parameters)s

        Returns
        -------
        self : TrulySparseMLPRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch over ``(X, y)``.

        The number of targets must stay the same. ``early_stopping=True`` is not
        supported.

        %(parameters)s

        Returns
        -------
        self : TrulySparseMLPRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_training_data(self, X, y, incremental, first, classes):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=np.dtype(self.dtype), reset=first)
        if sp.issparse(X):
            X = X.tocsr()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.loss == "poisson" and not (np.all(Y >= 0) and np.sum(Y) > 0):
            # the checks of scikit-learn's Poisson estimators (HistGradientBoostingRegressor)
            raise ValueError("loss='poisson' requires non-negative y and sum(y) > 0.")
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError("y has %d targets, but the model was fitted with %d."
                             % (Y.shape[1], self.n_outputs_))
        return X, Y.astype(X.dtype)

    def _decode(self, Y):
        return Y

    def _score_output(self, out, y, sample_weight):
        return r2_score(y, out, sample_weight=sample_weight)

    def predict(self, X):
        """Predict targets.

        %(parameters)s

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predicted values.
        """
        P = self._forward(X)
        return P.ravel() if P.shape[1] == 1 else P

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

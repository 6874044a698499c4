"""What both estimators share: parameters, set-up of a fit, input checks, reporting.

:class:`_BaseTrulySparseMLP` validates the parameters, sets a fit up (the network
of :mod:`._network`, the optimizer, the random generator, the record attributes),
runs it as a transaction (a failed fit leaves the estimator as it was), checks
prediction input and reports the fitted network. The epochs themselves are
:class:`._training.EpochLoop`'s; the classifier and the regressor
(:mod:`._estimators`) add their targets, loss and outputs.
"""
import copy
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import config
from ._activations import HIDDEN_ACTIVATIONS
from ._guard import kernel_guard
from ._network import NetworkBackup, SparseMLP, TrainingConfig
from ._optimizers import Adam, MomentumSGD
from ._panels import has_non_finite
from ._sampling import erdos_renyi_density
from ._training import EpochLoop


def _output_dtype(X, dtype):
    """dtype of predictions: the model's, promoted with the input's, as in MLPRegressor.

    scikit-learn's MLPs compute with float32 input in float32 and with anything else
    in float64; ours compute in ``dtype`` and return ``result_type`` of the two.
    """
    in_dtype = getattr(X, "dtype", None)
    if in_dtype is None and hasattr(X, "dtypes"):  # a DataFrame
        try:
            in_dtype = np.result_type(*X.dtypes)
        except TypeError:
            in_dtype = None
    in_dtype = np.float32 if in_dtype == np.float32 else np.float64
    return np.result_type(in_dtype, dtype)


class _BaseTrulySparseMLP(EpochLoop, BaseEstimator):
    """Shared parameters, fit loop and reporting of the two estimators."""

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "allrelu_slope": [Interval(Real, 0, None, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither"), "array-like"],
        "density": [None, Interval(Real, 0, 1, closed="right"), "array-like"],
        "zeta": [Interval(Real, 0, 1, closed="left")],
        "init": [StrOptions({"sparse_he", "he", "xavier"})],
        "regrow": [StrOptions({"pruned", "init", "gradient"})],
        "regrow_candidates": [Interval(Real, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "importance_pruning": ["boolean"],
        "pruning_start": [Interval(Integral, 0, None, closed="left")],
        "pruning_interval": [Interval(Integral, 1, None, closed="left")],
        "pruning_percentile": [Interval(Real, 0, 100, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "solver": [StrOptions({"sgd", "adam"})],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "adam_epsilon": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "dtype": [StrOptions({"float32", "float64"})],
        "n_workers": [Interval(Integral, 1, None, closed="left")],
        "worker_mode": [StrOptions({"async", "sync", "allreduce"})],
        "phase1_fraction": [Interval(Real, 0, 1, closed="both")],
        "worker_timeout": [None, Interval(Real, 0, None, closed="neither")],
        "mpi_info": [None, dict],
        "callback": [None, callable],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="allrelu", *, allrelu_slope=0.6,
                 epsilon=20, density=None, zeta=0.3, init="sparse_he", regrow="pruned",
                 regrow_candidates=4.0, dropout=0.0,
                 importance_pruning=False, pruning_start=50, pruning_interval=10,
                 pruning_percentile=20.0, alpha=1e-4, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.01, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, solver="sgd", beta_1=0.9, beta_2=0.999,
                 adam_epsilon=1e-8, loss="log_loss", early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, dtype="float32", n_workers=1,
                 worker_mode="async", phase1_fraction=0.7, worker_timeout=60.0, mpi_info=None,
                 callback=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.allrelu_slope = allrelu_slope
        self.epsilon = epsilon
        self.density = density
        self.zeta = zeta
        self.init = init
        self.regrow = regrow
        self.regrow_candidates = regrow_candidates
        self.dropout = dropout
        self.importance_pruning = importance_pruning
        self.pruning_start = pruning_start
        self.pruning_interval = pruning_interval
        self.pruning_percentile = pruning_percentile
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.solver = solver
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.adam_epsilon = adam_epsilon
        self.loss = loss
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.n_workers = n_workers
        self.worker_mode = worker_mode
        self.phase1_fraction = phase1_fraction
        self.worker_timeout = worker_timeout
        self.mpi_info = mpi_info
        self.callback = callback

    # ------------------------------------------------------------------ reporting
    @property
    def coefs_(self):
        """list of scipy.sparse.csr_array: weight matrix ``(n_in, n_out)`` of each layer."""
        return [layer.W for layer in self.network_.layers]

    @property
    def intercepts_(self):
        """list of ndarray: bias vector of each layer."""
        return [layer.bias for layer in self.network_.layers]

    @property
    def n_connections_(self):
        """list of int: connections (non-zero weights) of each layer."""
        return self.network_.n_connections

    @property
    def density_(self):
        """list of float: achieved density ``nnz / (n_in * n_out)`` of each layer."""
        return self.network_.densities

    @property
    def n_neurons_(self):
        """list of int: neurons of every layer, input first, after importance pruning."""
        return self.network_.n_neurons

    @property
    def feature_importances_(self):
        """ndarray of shape (n_features_in_,): strength of each input neuron.

        The sum of the absolute weights of the input neuron's connections,
        normalised to sum to 1. Inputs SET disconnected score 0.
        """
        W = self.network_.layers[0].W
        strength = np.asarray(abs(W).sum(axis=1), dtype=np.float64).ravel()
        total = strength.sum()
        return strength / total if total > 0 else strength

    # ------------------------------------------------------------------ fitting
    def _training_config(self):
        return TrainingConfig(
            alpha=self.alpha, dropout=self.dropout, zeta=self.zeta, init=self.init,
            regrow=self.regrow, regrow_candidates=float(self.regrow_candidates),
            importance_pruning=self.importance_pruning, pruning_start=self.pruning_start,
            pruning_interval=self.pruning_interval, pruning_percentile=self.pruning_percentile,
            verbose=bool(self.verbose))

    def _layer_densities(self, sizes):
        """Density of every weight matrix from ``density`` or ``epsilon`` (a number, or
        one value per weight matrix)."""
        n = len(sizes) - 1
        name, value = ("density", self.density) if self.density is not None else (
            "epsilon", self.epsilon)
        values = np.asarray(value, dtype=np.float64) if np.ndim(value) else np.full(n, value,
                                                                                      np.float64)
        if values.shape != (n,):
            raise ValueError("%s has %d values, but the network has %d weight matrices (one "
                             "per hidden layer plus the output layer)." % (name, values.size, n))
        if name == "density" and not np.all((values > 0) & (values <= 1)):
            raise ValueError("density values must be in (0, 1], got %r." % (value,))
        if name == "epsilon" and not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("epsilon values must be positive, got %r." % (value,))
        if name == "density":
            return [float(d) for d in values]
        return [erdos_renyi_density(a, b, e)
                for a, b, e in zip(sizes[:-1], sizes[1:], values)]

    def _new_optimizer(self, previous):
        """The optimizer of ``solver``; Adam continues the step count of ``previous``."""
        if self.solver == "adam":
            t = previous.t if isinstance(previous, Adam) else 0
            return Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.adam_epsilon, t)
        return MomentumSGD(self.learning_rate_init, self.learning_rate, self.momentum,
                           self.nesterovs_momentum, self.power_t)

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.ndim(sizes) == 0 else list(sizes)

        def positive_integer(s):
            return (isinstance(s, Real) and not isinstance(s, (bool, np.bool_))
                    and np.isfinite(s) and float(s).is_integer() and s > 0)

        if not sizes or not all(positive_integer(s) for s in sizes):
            raise ValueError("hidden_layer_sizes must be positive integers, got %r."
                             % (self.hidden_layer_sizes,))
        return [int(s) for s in sizes]

    def _new_network(self, n_features, n_outputs, rng):
        sizes = [n_features] + self._hidden_sizes() + [n_outputs]
        return SparseMLP.random(
            sizes, self._layer_densities(sizes), rng, init=self.init, activation=self.activation,
            slope=self.allrelu_slope, out_activation=self.out_activation_, loss=self._loss,
            dtype=np.dtype(self.dtype))

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        # Work on fresh objects and restore the previous state on any error, so a
        # failed fit (bad input, divergence, dead MPI worker, Ctrl-C) leaves the model as it was.
        saved = dict(self.__dict__)
        try:
            self._fit_checked(X, y, sample_weight, incremental, classes)
        except BaseException as exc:
            backup = self.__dict__.get("_network_backup")
            self.__dict__.clear()
            self.__dict__.update(saved)
            if backup is not None:  # a large model may have been trained in place
                self.network_ = backup.restore()
            if isinstance(exc, SystemError) and isinstance(exc.__cause__, KeyboardInterrupt):
                # Ctrl-C handled while a numba function returned: CPython reports
                # "returned a result with an exception set"; the user pressed Ctrl-C
                raise KeyboardInterrupt from None
            raise
        finally:
            self.__dict__.pop("_probe_X", None)
        self.__dict__.pop("_network_backup", None)  # a backup file closes with its object
        return self

    def _fit_checked(self, X, y, sample_weight, incremental, classes):
        self._validate_params()
        self._hidden_sizes()
        if incremental and self.early_stopping:
            # as MLPClassifier / MLPRegressor: one epoch has nothing to stop early
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "network_") or not (self.warm_start or incremental)
        X, Y = self._validate_training_data(X, y, incremental, first, classes)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        if first:
            self._rng = np.random.default_rng(
                check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            self.network_ = self._new_network(X.shape[1], Y.shape[1], self._rng)
            self.t_, self._epochs = 0, 0
            self.loss_curve_, self._no_improvement_count = [], 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        else:
            # continue on copies: the old objects stay intact in the saved state (a
            # model too large to copy in memory is backed up on disk and trained in place)
            self._network_backup = NetworkBackup(self.network_)
            self.network_ = self._network_backup.network
            self._rng = copy.deepcopy(self._rng)
            # epochs trained since the network was built: the SET and pruning schedules
            self._epochs = getattr(self, "_epochs", self.n_iter_)
            self.loss_curve_ = list(self.loss_curve_)
            if self.validation_scores_ is not None:
                self.validation_scores_ = list(self.validation_scores_)
            elif self.early_stopping:  # switched on between two fits
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
            if self.best_loss_ is None and not self.early_stopping:
                self.best_loss_ = np.inf
        self.n_iter_ = 0  # epochs of this call, as in scikit-learn (warm start included)
        self.n_layers_ = len(self.network_.layers) + 1
        self.n_outputs_ = Y.shape[1]
        if first or not hasattr(self, "_optimizer") or not incremental:
            self._optimizer = self._new_optimizer(None if first else
                                                  getattr(self, "_optimizer", None))
        else:
            self._optimizer = copy.copy(self._optimizer)

        early_stopping = self.early_stopping and not incremental
        X_val = y_val = sw_val = None
        if early_stopping:
            X, Y, sample_weight, X_val, y_val, sw_val = self._validation_split(X, Y, sample_weight)
        sample_weight = self._relative_weights(sample_weight)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(config.AUTO_BATCH_SIZE, n)
        else:
            if self.batch_size > n:
                # stacklevel: the line that called fit / partial_fit
                warnings.warn("Got `batch_size` larger than sample size (%d > %d). It is going "
                              "to be clipped" % (self.batch_size, n), stacklevel=4)
            batch_size = min(self.batch_size, n)
        self._probe_X = X[:config.PROBE_ROWS]
        max_epochs = 1 if incremental else self.max_iter
        self._run_epochs(X, Y, sample_weight, batch_size, max_epochs, (X_val, y_val, sw_val),
                         incremental)
        return self

    @staticmethod
    def _relative_weights(sample_weight):
        """Sample weights rescaled to mean 1 over the samples trained on.

        Weights are relative: a batch's weights are ``sample_weight / batch_size``
        (see ``_network.run_epoch``), so scaling all weights changes nothing and a
        batch of zero-weight samples makes a step with no data gradient (momentum
        and weight decay go on), as an SGD step on such samples does.
        """
        if sample_weight is None:
            return None
        mean = float(np.mean(sample_weight))
        if not mean > 0:
            raise ValueError("sample_weight sums to zero over the %d samples trained on: there "
                             "is nothing to learn from." % len(sample_weight))
        return sample_weight / mean

    def _validation_split(self, X, Y, sample_weight):
        multilabel = is_classifier(self) and self._label_binarizer.y_type_ == "multilabel-indicator"
        stratify = Y if is_classifier(self) and not multilabel else None
        seed = int(self._rng.integers(np.iinfo(np.int32).max))
        try:
            parts = train_test_split(X, Y, *([] if sample_weight is None else [sample_weight]),
                                     random_state=seed, test_size=self.validation_fraction,
                                     stratify=stratify)
        except ValueError as e:
            hint = ("early_stopping=True holds out validation_fraction=%g of the %d samples"
                    % (self.validation_fraction, X.shape[0]))
            if stratify is not None:
                hint += (", split stratified by class, so both parts need at least one sample of "
                         "each of the %d classes" % len(self.classes_))
            raise ValueError("%s: %s Increase validation_fraction or the size of your dataset, "
                             "or set early_stopping=False." % (hint, e)) from e
        X, X_val, Y, Y_val = parts[:4]
        sample_weight, sw_val = parts[4:6] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        if sw_val is not None and not sw_val.sum() > 0:
            raise ValueError("The validation set (validation_fraction=%g) holds only samples of "
                             "weight zero: its score is undefined. Increase validation_fraction."
                             % self.validation_fraction)
        return X, Y, sample_weight, X_val, self._decode(Y_val), sw_val

    def _check_X(self, X, reset, ensure_min_samples=1):
        if not reset and type(X) is np.ndarray and not hasattr(self, "feature_names_in_"):
            # a float array of the fitted width: what validate_data would return, in a
            # few microseconds instead of ~100 (most of a one-row predict); anything
            # else, a non-finite value included, takes validate_data for its message
            if (X.ndim == 2 and X.dtype.kind == "f" and X.shape[0] >= ensure_min_samples
                    and X.shape[1] == getattr(self, "n_features_in_", -1)):
                Xc = X.astype(self.dtype, copy=False)
                with kernel_guard():  # a parallel kernel
                    finite = not has_non_finite(Xc)
                if finite:  # else validate_data raises its message
                    return Xc
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=np.dtype(self.dtype),
                          reset=reset, ensure_min_samples=ensure_min_samples)
        return X.tocsr() if sp.issparse(X) else X

    def __setstate__(self, state):
        super().__setstate__(state)
        # a model saved before a parameter existed gets that parameter's default
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and name not in self.__dict__ and p.default is not p.empty:
                setattr(self, name, p.default)

    def __sklearn_is_fitted__(self):
        # what check_is_fitted would find by scanning every attribute (17 us of a
        # one-row predict); a failed first fit leaves no network_ behind
        return hasattr(self, "network_")

    def _forward(self, X):
        if "network_" not in self.__dict__:  # check_is_fitted's tags cost ~3 us a call
            check_is_fitted(self)
        out_dtype = _output_dtype(X, self.network_.dtype)
        X = self._check_X(X, reset=False)
        with kernel_guard():  # safe from several threads on every numba threading layer
            out = self.network_.predict_output(X)
        return out.astype(out_dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

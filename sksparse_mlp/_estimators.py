"""scikit-learn facade: parameters, validation, the epoch loop and reporting.

The numerical work lives in :mod:`._network` (forward, backward, step),
:mod:`._topology` (SET, importance pruning) and :mod:`._kernels`; data-parallel
training lives in :mod:`.parallel`.
"""
import copy
import inspect
import threading
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numba

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from . import _docstrings, _topology, config
from ._activations import HIDDEN_ACTIVATIONS
from ._network import NetworkBackup, SparseMLP, TrainingConfig, evolve_topology, run_epoch
from ._optimizers import Adam, MomentumSGD

# numba's workqueue threading layer (what numba falls back to without TBB or an
# OpenMP runtime) aborts the process when two threads enter parallel kernels at
# once; on that layer every call into the kernels holds this lock. Reentrant:
# a callback may predict during a fit.
_WORKQUEUE_LOCK = threading.RLock()


def _kernels_need_lock():
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # not chosen yet: the first parallel call picks the layer
        return True


@contextmanager
def _kernel_guard():
    """Serialise calls into numba's parallel kernels on the workqueue layer only."""
    if _kernels_need_lock():
        with _WORKQUEUE_LOCK:
            yield
    else:
        yield


def _diverged(what, epoch):
    return ValueError("Training diverged: %s at epoch %d. Scale the inputs and targets or lower "
                      "learning_rate_init." % (what, epoch))


def _all_finite(a):
    # min and max propagate NaN and need no temporary array of the size of ``a``
    return a.size == 0 or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


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


class _BaseTrulySparseMLP(BaseEstimator):
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
            alpha=self.alpha, dropout=self.dropout, zeta=self.zeta, init=self.init, regrow=self.regrow,
            regrow_candidates=float(self.regrow_candidates),
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
        return [_topology.erdos_renyi_density(a, b, e)
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
        except BaseException:
            backup = self.__dict__.get("_network_backup")
            self.__dict__.clear()
            self.__dict__.update(saved)
            if backup is not None:  # a large model may have been trained in place
                self.network_ = backup.restore()
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
                warnings.warn("Got `batch_size` larger than sample size (%d > %d). It is going "
                              "to be clipped" % (self.batch_size, n))
            batch_size = min(self.batch_size, n)
        self._probe_X = X[:config.PROBE_ROWS]
        max_epochs = 1 if incremental else self.max_iter
        validation = (X_val, y_val, sw_val)
        if self.n_workers > 1:
            self._fit_parallel(X, Y, sample_weight, batch_size, max_epochs, validation)
        else:
            self._fit_local(X, Y, sample_weight, batch_size, max_epochs, validation, incremental)
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
        stratify = Y if is_classifier(self) and self._label_binarizer.y_type_ != "multilabel-indicator" else None
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

    def _fit_local(self, X, Y, sample_weight, batch_size, max_epochs, validation, incremental):
        config = self._training_config()
        net = self.network_
        for _ in range(max_epochs):
            with _kernel_guard():
                if self._epochs > 0:
                    evolve_topology(net, self._epochs, config, self._rng,
                                    (X, Y, sample_weight))
                loss = run_epoch(net, X, Y, sample_weight, batch_size, self._optimizer, config,
                                 self._rng, self.shuffle)
            if self._end_epoch(loss, X.shape[0], *validation):
                break
        else:
            if not incremental and self.max_iter > 0:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter, ConvergenceWarning)
        if validation[0] is not None and hasattr(self, "_best_network"):
            self.network_ = self._best_network.restore()
        self.__dict__.pop("_best_network", None)

    def _fit_parallel(self, X, Y, sample_weight, batch_size, max_epochs, validation):
        from .parallel import TrainingPlan, fit_wasap  # MPI itself runs in a helper process

        plan = TrainingPlan(
            X, Y, sample_weight, config=self._training_config(), batch_size=batch_size,
            max_epochs=max_epochs, shuffle=self.shuffle, n_workers=self.n_workers,
            mode=self.worker_mode, phase1_fraction=self.phase1_fraction,
            timeout=self.worker_timeout, mpi_info=self.mpi_info, epochs_done=self._epochs)
        with _kernel_guard():  # the server may train in this process (under mpiexec)
            self.network_ = fit_wasap(
                plan, self.network_, self._optimizer, self._rng,
                on_epoch_end=lambda loss: self._end_epoch(loss, X.shape[0], *validation))
        if validation[0] is not None and hasattr(self, "_best_network"):
            self.network_ = self._best_network.restore()
        self.__dict__.pop("_best_network", None)

    def _check_diverged(self, loss):
        """Raise if the loss, any parameter or the outputs on a few rows are not finite.

        The loss of a batch is computed before its step, so the parameters the last
        step left are checked here; huge but finite weights can still overflow the
        outputs, hence the probe rows.
        """
        epoch = self.n_iter_ + 1
        if not np.isfinite(loss):
            raise _diverged("the loss became %s" % loss, epoch)
        for layer in self.network_.layers:
            if not (_all_finite(layer.W.data) and _all_finite(layer.bias)):
                raise _diverged("the weights overflowed", epoch)
        with _kernel_guard():
            probe = self.network_.predict_output(self._probe_X)
        if not _all_finite(probe):
            raise _diverged("the outputs overflowed", epoch)

    def _end_epoch(self, loss, n_samples, X_val, y_val, sw_val=None):
        """Record an epoch; returns True when training should stop."""
        self._check_diverged(loss)
        score = None
        if X_val is not None:
            with _kernel_guard():
                out = self.network_.predict_output(X_val)
            if not _all_finite(out):
                raise _diverged("the outputs on the validation set overflowed", self.n_iter_ + 1)
            with np.errstate(over="ignore", invalid="ignore"):
                score = self._score_output(out, y_val, sw_val)
            if not np.isfinite(score):  # huge outputs overflow the score
                raise _diverged("the validation score became %s" % score, self.n_iter_ + 1)
        self.n_iter_ += 1
        self._epochs += 1
        self.t_ += n_samples
        self.loss_ = loss
        self.loss_curve_.append(loss)
        self._optimizer.iteration_ends(self.t_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
        if score is not None:
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                # a large model is kept in a temporary file, not a second copy in memory
                self._best_network = NetworkBackup(self.network_, frozen=True)
        else:
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, loss)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if X_val is not None else "Training loss"
            msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                   % (what, self.tol, self.n_iter_no_change))
            stop = self._optimizer.trigger_stopping(msg, self.verbose)
            if not stop:
                self._no_improvement_count = 0
        else:
            stop = False
        if self.callback is not None and self.callback(self):
            stop = True
        return stop

    def _check_X(self, X, reset, ensure_min_samples=1):
        if not reset and type(X) is np.ndarray and not hasattr(self, "feature_names_in_"):
            # a float array of the fitted width: what validate_data would return, in a
            # few microseconds instead of ~100 (most of a one-row predict); anything
            # else, a non-finite value included, takes validate_data for its message
            if (X.ndim == 2 and X.dtype.kind == "f" and X.shape[0] >= ensure_min_samples
                    and X.shape[1] == getattr(self, "n_features_in_", -1)):
                Xc = X.astype(self.dtype, copy=False)
                # a finite sum proves every value finite; an overflowing one does not
                # prove the opposite
                if np.isfinite(Xc.sum()) or np.isfinite(Xc).all():
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
        check_is_fitted(self)
        out_dtype = _output_dtype(X, self.network_.dtype)
        X = self._check_X(X, reset=False)
        with _kernel_guard():  # safe from several threads on every numba threading layer
            out = self.network_.predict_output(X)
        return out.astype(out_dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Labels, or a binary indicator matrix for multilabel classification.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative, with a positive sum. Relative: rescaled to mean 1 over
            the samples trained on, so a batch of zero-weight samples is an SGD
            step without data gradient.

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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Labels, or a binary indicator matrix for multilabel classification.
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole training run. Required on the first call,
            and if given later, it must be the same.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative, with a positive sum. Relative: rescaled to mean 1 over
            the samples trained on, so a batch of zero-weight samples is an SGD
            step without data gradient.

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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted labels; an indicator matrix for multilabel models.
        """
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Predict class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.

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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.

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


@_docstrings.document(without=("classes_",))
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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative, with a positive sum. Relative: rescaled to mean 1 over
            the samples trained on, so a batch of zero-weight samples is an SGD
            step without data gradient.

        Returns
        -------
        self : TrulySparseMLPRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch over ``(X, y)``.

        ``early_stopping=True`` is not supported.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values; the number of targets must stay the same.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative, with a positive sum. Relative: rescaled to mean 1 over
            the samples trained on, so a batch of zero-weight samples is an SGD
            step without data gradient.

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

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input samples.

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

"""The epochs of a fit, locally or over MPI workers, and the record of each epoch.

:class:`EpochLoop` is the part of both estimators that trains: the estimator
module validates the input and sets the fit up (network, optimizer, generator,
record attributes), then :meth:`EpochLoop._run_epochs` runs ``run_epoch`` /
``evolve_topology`` in this process or hands a :class:`.parallel.TrainingPlan`
to ``parallel.fit_wasap``. After every epoch :meth:`EpochLoop._end_epoch` checks
for divergence, records the loss (and validation score), decides on stopping
and calls the user's ``callback``; with early stopping the best network is kept
and restored at the end.
"""
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._guard import kernel_guard
from ._network import NetworkBackup, evolve_topology, run_epoch


def _diverged(what, epoch):
    return ValueError("Training diverged: %s at epoch %d. Scale the inputs and targets or lower "
                      "learning_rate_init." % (what, epoch))


# Outputs bounded by this (SparseMLP.output_bound) cannot overflow, not even in float32
# (3.4e38): the check then predicts no rows.  At 3 x 1 M neurons the probe rows' CSR
# scatter took 1.95 s per epoch, the bound 0.09 s.
_SAFE_OUTPUT_BOUND = 1e30


def _all_finite(a):
    # min and max propagate NaN and need no temporary array of the size of ``a``
    return a.size == 0 or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


class EpochLoop:
    """Mixin of the estimators: running a fit's epochs and recording each one.

    It reads the parameters and what the estimator's set-up made (``network_``,
    ``_optimizer``, ``_rng``, ``_epochs``, ``_probe_X``, ``loss_curve_`` and the
    other record attributes) and updates the record after every epoch.
    """

    def _run_epochs(self, X, Y, sample_weight, batch_size, max_epochs, validation,
                    incremental):
        """Train up to ``max_epochs`` epochs; ``validation`` is ``(X_val, y_val, sw_val)``
        (all None without early stopping)."""
        if self.n_workers > 1:
            self._fit_parallel(X, Y, sample_weight, batch_size, max_epochs, validation)
        else:
            self._fit_local(X, Y, sample_weight, batch_size, max_epochs, validation, incremental)
        if validation[0] is not None and hasattr(self, "_best_network"):
            self.network_ = self._best_network.restore()
        self.__dict__.pop("_best_network", None)

    def _fit_local(self, X, Y, sample_weight, batch_size, max_epochs, validation, incremental):
        config = self._training_config()
        net = self.network_
        for _ in range(max_epochs):
            with kernel_guard():
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
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning, stacklevel=6)  # the caller of fit

    def _fit_parallel(self, X, Y, sample_weight, batch_size, max_epochs, validation):
        from .parallel import TrainingPlan, fit_wasap  # MPI itself runs in a helper process

        plan = TrainingPlan(
            X, Y, sample_weight, config=self._training_config(), batch_size=batch_size,
            max_epochs=max_epochs, shuffle=self.shuffle, n_workers=self.n_workers,
            mode=self.worker_mode, phase1_fraction=self.phase1_fraction,
            timeout=self.worker_timeout, mpi_info=self.mpi_info, epochs_done=self._epochs)
        with kernel_guard():  # the server may train in this process (under mpiexec)
            self.network_ = fit_wasap(
                plan, self.network_, self._optimizer, self._rng,
                on_epoch_end=lambda loss: self._end_epoch(loss, X.shape[0], *validation))

    def _check_diverged(self, loss):
        """Raise if the loss, any parameter or the outputs on a few rows are not finite.

        The loss of a batch is computed before its step, so the parameters the last
        step left are checked here; huge but finite weights can still overflow the
        outputs, hence the probe rows, predicted only when the network's bound on its
        outputs (:meth:`SparseMLP.output_bound`) does not rule an overflow out.
        """
        epoch = self.n_iter_ + 1
        if not np.isfinite(loss):
            raise _diverged("the loss became %s" % loss, epoch)
        if self.network_.output_bound(self._probe_X) < _SAFE_OUTPUT_BOUND:
            return  # every parameter is finite and no output can overflow
        for layer in self.network_.layers:
            if not (_all_finite(layer.W.data) and _all_finite(layer.bias)):
                raise _diverged("the weights overflowed", epoch)
        with kernel_guard():
            probe = self.network_.predict_output(self._probe_X)
        if not _all_finite(probe):
            raise _diverged("the outputs overflowed", epoch)

    def _end_epoch(self, loss, n_samples, X_val, y_val, sw_val=None):
        """Record an epoch; returns True when training should stop."""
        self._check_diverged(loss)
        score = None
        if X_val is not None:
            with kernel_guard():
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

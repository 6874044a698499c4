"""Momentum SGD over the values arrays of sparse layers, with sklearn's schedules.

The optimizer state lives in the layers (``velocity`` aligned with ``W.data``)
because topology changes must prune and grow it together with the weights;
this module only holds the update rule and the learning-rate schedule.
"""
import numpy as np

from . import _kernels


class MomentumSGD:
    """Heavy-ball or Nesterov momentum SGD with MLPClassifier's schedules.

    Parameters
    ----------
    learning_rate_init : float
        Initial step size.
    learning_rate : {"constant", "invscaling", "adaptive"}
        Schedule, with the meaning of :class:`sklearn.neural_network.MLPClassifier`.
    momentum : float
        Momentum coefficient ``mu`` in ``v = mu * v - lr * g``.
    nesterov : bool
        Use Nesterov's momentum (step ``mu * v - lr * g`` after the update of ``v``).
    power_t : float
        Exponent of the ``"invscaling"`` schedule.

    Examples
    --------
    >>> opt = MomentumSGD(0.1, "invscaling", 0.9, False, power_t=0.5)
    >>> opt.iteration_ends(99)
    >>> round(opt.learning_rate, 3)
    0.01
    """

    def __init__(self, learning_rate_init, learning_rate="constant", momentum=0.9,
                 nesterov=True, power_t=0.5):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = learning_rate
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.power_t = float(power_t)

    def update_layer(self, layer, grad_W, grad_b, l2):
        """Update one layer in place; ``l2`` is the weight-decay coefficient."""
        lr, mu = self.learning_rate, self.momentum
        _kernels.momentum_step(layer.W.data, layer.velocity, grad_W, lr, mu, l2, self.nesterov)
        v = layer.bias_velocity
        v *= mu
        v -= lr * grad_b
        layer.bias += mu * v - lr * grad_b if self.nesterov else v

    def iteration_ends(self, time_step):
        """Advance the ``"invscaling"`` schedule; ``time_step`` counts samples seen."""
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """Return True to stop; the ``"adaptive"`` schedule first divides the rate by 5."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


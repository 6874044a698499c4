"""Momentum SGD and Adam over the values arrays of sparse layers, with sklearn's schedules.

The optimizer state lives in the layers (``velocity`` aligned with ``W.data``, and
for Adam ``second``) because topology changes must prune and grow it together with
the weights; this module only holds the update rules, the learning-rate schedule
and Adam's step count.
"""
import numpy as np

from . import _steps


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

    def prepare(self, net):
        """Give every layer momentum state only (zeroed if it held Adam's)."""
        for layer in net.layers:
            layer.use_state(adam=False)

    def next_step(self):
        """``(lr, momentum, nesterov, adam=None)`` of the next step, for the engine."""
        return self.learning_rate, self.momentum, self.nesterov, None

    def update_layer(self, layer, grad_W, grad_b, l2, rule=None):
        """Update one layer in place; ``l2`` is the weight-decay coefficient."""
        lr, mu = self.learning_rate, self.momentum
        _steps.momentum_step(layer.W.data, layer.velocity, grad_W, lr, mu, l2, self.nesterov)
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



class Adam:
    """Adam with scikit-learn's rule, over the moments kept in the layers.

    ``m = beta_1 m + (1 - beta_1) g``, ``v = beta_2 v + (1 - beta_2) g**2``,
    ``w -= lr_t m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1 - beta_2**t) / (1 - beta_1**t)``
    at the ``t``-th step; ``g`` includes the L2 term.  The first moment lives in
    ``layer.velocity``, the second in ``layer.second`` (and the bias moments in
    ``bias_velocity`` / ``bias_second``).

    Parameters
    ----------
    learning_rate_init : float
    beta_1, beta_2 : float in [0, 1)
        Decay rates of the moment estimates.
    eps : float
        Numerical constant of the denominator (scikit-learn's ``epsilon``).
    t : int
        Steps already taken (continued training).

    Examples
    --------
    >>> opt = Adam(0.001)
    >>> lr_t, beta_1, _, (beta_2, eps) = opt.next_step()
    >>> opt.t, round(float(lr_t), 6)
    (1, 0.000316)
    """

    def __init__(self, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999, eps=1e-8, t=0):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.eps = float(eps)
        self.t = int(t)

    @property
    def momentum(self):
        return self.beta_1

    def prepare(self, net):
        """Give every layer Adam's two moments (zero if it held momentum state)."""
        for layer in net.layers:
            layer.use_state(adam=True)

    def next_step(self):
        """Advance the step count; ``(lr_t, beta_1, False, (beta_2, eps))`` for the engine."""
        self.t += 1
        lr_t = _steps.adam_rate(self.learning_rate, self.beta_1, self.beta_2, self.t)
        return lr_t, self.beta_1, False, (self.beta_2, self.eps)

    def update_layer(self, layer, grad_W, grad_b, l2, rule=None):
        """Update one layer in place; ``rule`` is this step's :meth:`next_step` (taken
        here when None)."""
        lr_t, b1, _, (b2, eps) = self.next_step() if rule is None else rule
        layer.use_state(adam=True)
        _steps.adam_step(layer.W.data, layer.velocity, layer.second, grad_W, lr_t, b1, b2, l2,
                           eps)
        _steps.adam_step(layer.bias, layer.bias_velocity, layer.bias_second,
                           np.ascontiguousarray(grad_b, dtype=layer.bias.dtype), lr_t, b1, b2,
                           0.0, eps)

    def iteration_ends(self, time_step):
        """Adam has no learning-rate schedule (as in scikit-learn)."""

    def trigger_stopping(self, msg, verbose):
        """Always stop (scikit-learn's ``"adaptive"`` schedule is for SGD only)."""
        if verbose:
            print(msg + " Stopping.")
        return True

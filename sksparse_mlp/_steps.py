"""Optimizer step kernels: momentum SGD and Adam over a layer's values arrays.

One rule each (:func:`momentum_update`, :func:`adam_update`), used by the whole-layer kernels
here, by the backward kernel's fused step (:mod:`._kernels`) and by the WASAP-SGD
server (through :mod:`._optimizers`).
"""
import numpy as np
from numba import njit, prange

from ._jit import OPTS as _OPTS


@njit(inline="always")
def momentum_update(data, velocity, k, g, lr, mu, wd, nesterov):
    """Momentum step of connection ``k`` (rule of :func:`momentum_step`) from gradient
    ``g`` without the L2 term; returns the old ``data[k] ** 2``."""
    w = data[k]
    g = g + wd * w
    v = mu * velocity[k] - lr * g
    velocity[k] = v
    if nesterov:
        data[k] = w + (mu * v - lr * g)
    else:
        data[k] = w + v
    return w * w


@njit(parallel=True, **_OPTS)
def momentum_step(data, velocity, grad, lr, momentum, l2, nesterov):
    """Fused momentum SGD step, in place over the values arrays.

    ``g = grad + l2 * data; velocity = momentum * velocity - lr * g``; then
    ``data += velocity`` (heavy ball) or ``data += momentum * velocity - lr * g``
    (Nesterov).  ``grad`` is read only.  The rule is :func:`momentum_update`'s.
    """
    t = data.dtype.type
    lr_ = t(lr)
    mu = t(momentum)
    wd = t(l2)
    for k in prange(data.shape[0]):
        momentum_update(data, velocity, k, grad[k], lr_, mu, wd, nesterov)


@njit(inline="always")
def adam_update(data, m, v, k, g, lr_t, b1, b2, wd, eps):
    """Adam step of connection ``k`` (rule of :func:`adam_step`) from gradient ``g``
    without the L2 term; returns the old ``data[k] ** 2``."""
    w = data[k]
    g = g + wd * w
    mk = b1 * m[k] + (1 - b1) * g
    vk = b2 * v[k] + (1 - b2) * (g * g)
    m[k] = mk
    v[k] = vk
    data[k] = w - lr_t * mk / (np.sqrt(vk) + eps)
    return w * w


def adam_rate(lr, beta_1, beta_2, t):
    """Bias-corrected step size of Adam's ``t``-th step (1-based), as scikit-learn's."""
    return lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)


@njit(parallel=True, **_OPTS)
def adam_step(data, m, v, grad, lr_t, beta_1, beta_2, l2, eps):
    """Fused Adam step, in place over the values arrays (scikit-learn's rule).

    ``g = grad + l2 * data; m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g**2;
    data -= lr_t * m / (sqrt(v) + eps)`` with ``lr_t`` from :func:`adam_rate`.
    """
    t = data.dtype.type
    for k in prange(data.shape[0]):
        adam_update(data, m, v, k, grad[k], t(lr_t), t(beta_1), t(beta_2), t(l2), t(eps))


@njit(**_OPTS)
def bias_step(bias, bias_velocity, bsum, n_parts, lr, momentum, nesterov):
    """Momentum step on a bias from ``sum(bsum[:n_parts])`` (no weight decay), serial."""
    T = bias.dtype.type
    lr_ = T(lr)
    mu = T(momentum)
    for j in range(bias.shape[0]):
        g = bsum[0, j]
        for p in range(1, n_parts):
            g += bsum[p, j]
        v = mu * bias_velocity[j] - lr_ * g
        bias_velocity[j] = v
        if nesterov:
            bias[j] += mu * v - lr_ * g
        else:
            bias[j] += v


@njit(parallel=True, **_OPTS)
def apply_step(data, velocity, gbuf, n_parts, lr, momentum, l2, nesterov):
    """Momentum step on a layer from partial gradients; returns ``sum(data**2)`` before it.

    ``g = sum(gbuf[:n_parts, k]) + l2 * data[k]``, then :func:`momentum_step`'s rule.
    """
    T = data.dtype.type
    lr_ = T(lr)
    mu = T(momentum)
    wd = T(l2)
    n = data.shape[0]
    sq = 0.0
    for k in prange(n):
        g = gbuf[0, k]
        if n_parts > 1:
            g += gbuf[1, k]
            for p in range(2, n_parts):
                g += gbuf[p, k]
        sq += momentum_update(data, velocity, k, g, lr_, mu, wd, nesterov)
    return sq


@njit(parallel=True, **_OPTS)
def apply_adam_step(data, m, v, gbuf, n_parts, lr_t, beta_1, beta_2, l2, eps):
    """:func:`apply_step` with the rule of :func:`adam_step`."""
    T = data.dtype.type
    n = data.shape[0]
    sq = 0.0
    for k in prange(n):
        g = gbuf[0, k]
        for p in range(1, n_parts):
            g += gbuf[p, k]
        sq += adam_update(data, m, v, k, g, T(lr_t), T(beta_1), T(beta_2), T(l2), T(eps))
    return sq


@njit(**_OPTS)
def bias_adam_step(bias, m, v, bsum, n_parts, lr_t, beta_1, beta_2, eps):
    """:func:`bias_step` with the rule of :func:`adam_step` (no weight decay)."""
    T = bias.dtype.type
    for j in range(bias.shape[0]):
        g = bsum[0, j]
        for p in range(1, n_parts):
            g += bsum[p, j]
        adam_update(bias, m, v, j, g, T(lr_t), T(beta_1), T(beta_2), T(0), T(eps))

"""Hidden and output activations on transposed activations ``(n_units, batch)``.

Hidden activations return both the activation and the factor ``f'(z)`` that
backpropagation multiplies into the incoming delta, so the backward pass never
needs the pre-activation again (one array per layer instead of two).
"""
import numpy as np

HIDDEN_ACTIVATIONS = ("allrelu", "relu", "leaky_relu", "tanh", "logistic", "identity")


def negative_slope(activation, layer, slope):
    """Slope for ``z <= 0`` of a piecewise-linear activation in hidden layer ``layer``.

    Parameters
    ----------
    activation : str
        One of :data:`HIDDEN_ACTIVATIONS`.
    layer : int
        1-based index of the hidden layer (the first hidden layer is 1).
    slope : float
        The magnitude ``alpha`` of the All-ReLU / leaky ReLU slope.

    Returns
    -------
    float or None
        ``-slope`` in odd hidden layers and ``+slope`` in even ones for
        All-ReLU (the sign alternates layer by layer), ``slope`` for leaky
        ReLU, ``0`` for ReLU and ``None`` for the smooth activations.

    Examples
    --------
    >>> [negative_slope("allrelu", l, 0.6) for l in (1, 2, 3)]
    [-0.6, 0.6, -0.6]
    """
    if activation == "allrelu":
        return -slope if layer % 2 == 1 else slope
    if activation == "leaky_relu":
        return slope
    if activation == "relu":
        return 0.0
    return None


def hidden_forward(activation, Z, layer, slope):
    """Apply the hidden activation to ``Z`` in place and return ``f'(Z)``.

    Parameters
    ----------
    activation : str
        One of :data:`HIDDEN_ACTIVATIONS`.
    Z : ndarray of shape (n_units, batch)
        Pre-activations; overwritten with the activations.
    layer : int
        1-based hidden-layer index (sets the All-ReLU sign).
    slope : float
        All-ReLU / leaky ReLU slope magnitude.

    Returns
    -------
    deriv : ndarray of shape (n_units, batch) or None
        ``f'(z)`` evaluated at the pre-activations (``None`` for identity,
        whose derivative is 1).
    """
    s = negative_slope(activation, layer, slope)
    if s is not None:
        positive = Z > 0
        deriv = np.where(positive, Z.dtype.type(1), Z.dtype.type(s))
        Z *= deriv  # f(z) = z for z > 0, s * z otherwise: exactly z * f'(z)
        return deriv
    if activation == "tanh":
        np.tanh(Z, out=Z)
        return 1 - Z * Z
    if activation == "logistic":
        _logistic(Z)
        return Z * (1 - Z)
    if activation == "identity":
        return None
    raise ValueError("unknown activation %r" % activation)


def _logistic(Z):
    # numerically stable for large |z|: exp(-|z|) never overflows
    E = np.exp(-np.abs(Z))
    np.divide(np.where(Z >= 0, 1, E), 1 + E, out=Z)
    return Z

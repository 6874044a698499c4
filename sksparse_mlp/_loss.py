"""The output layer's kernels: output activation, loss and output delta in one pass
(training), and the same output activation over rows (prediction).

Codes of the output activations (``OUT_*``) and losses (``LOSS_*``) as
:mod:`._fastpath` passes them; panels as in :mod:`._kernels`.
"""
import numpy as np
from numba import njit

from ._jit import OPTS as _OPTS

LOSS_LOG = 0
LOSS_BINARY = 1
LOSS_SQUARED = 2
LOSS_POISSON = 3
OUT_SOFTMAX = 0
OUT_LOGISTIC = 1
OUT_IDENTITY = 2
OUT_EXP = 3


@njit(inline="always")
def _activate_outputs(z, out_act):
    """The output activation of one sample's outputs ``z``, in place: softmax from the
    largest, logistic from ``exp(-|z|)`` (no overflow), exp, or identity."""
    n_out = z.shape[0]
    one = z.dtype.type(1)
    if out_act == OUT_SOFTMAX:
        m = z[0]
        for j in range(1, n_out):
            m = max(m, z[j])
        ssum = z.dtype.type(0)
        for j in range(n_out):
            e = np.exp(z[j] - m)
            z[j] = e
            ssum += e
        for j in range(n_out):
            z[j] /= ssum
    elif out_act == OUT_LOGISTIC:
        for j in range(n_out):
            e = np.exp(-abs(z[j]))
            z[j] = (one if z[j] >= 0 else e) / (one + e)
    elif out_act == OUT_EXP:
        for j in range(n_out):
            z[j] = np.exp(z[j])


@njit(**_OPTS)
def output_rows(Z, out_act):
    """The output activation of every row of ``Z`` (samples x outputs), in place:
    prediction's, the code :func:`output_loss_delta` runs in training (compiled over
    contiguous rows here, so the last place may round differently)."""
    for b in range(Z.shape[0]):
        _activate_outputs(Z[b], out_act)


@njit(**_OPTS)
def output_loss_delta(Z3, Y, w, B, out_act, loss_kind, eps, D3, bsum, accumulate):
    """Output activation, weighted loss and output delta on the tiled layout.

    ``Z3`` holds the output pre-activations (overwritten with the outputs ``P``),
    ``Y`` is ``(B, n_out)`` targets in batch order, ``w`` the normalised sample
    weights.  ``D3 = (P - Y) * w`` (divided by ``n_out`` for squared error, as
    sklearn's loss is half the mean over outputs; the half Poisson deviance sums them
    as sklearn's does), zero on padding;
    ``bsum[0] (+)= D.sum(over samples)`` (other rows of ``bsum`` are zeroed unless
    ``accumulate``).  ``D3`` may be ``Z3`` itself (each output is read before its
    delta is written).  Returns ``sum_b w_b * loss_b`` with the
    losses of ``tests/reference.py``'s ``loss_and_output_delta`` (the oracle).
    """
    nt, n_out, TB = Z3.shape
    one = Z3.dtype.type(1)
    if not accumulate:
        bsum[:, :] = 0
    total = 0.0
    for t in range(nt):
        for bb in range(TB):
            b = t * TB + bb
            if b >= B:
                for j in range(n_out):
                    D3[t, j, bb] = 0
                    Z3[t, j, bb] = 0
                continue
            _activate_outputs(Z3[t, :, bb], out_act)
            wb = w[b]
            ls = 0.0
            for j in range(n_out):
                p = Z3[t, j, bb]
                y = Y[b, j]
                # a term whose factor is zero adds exactly zero: skipping its logarithm
                # (nine in ten of them with one-hot targets) leaves the same bits and
                # halved this pass over the benchmark's 10 outputs
                if loss_kind == LOSS_LOG:
                    if y != 0:
                        ls -= y * np.log(min(max(p, eps), one))
                    d = (p - y) * wb
                elif loss_kind == LOSS_BINARY:
                    pc = min(max(p, eps), 1 - eps)
                    if y != 0:
                        ls -= y * np.log(pc)
                    if y != 1:
                        ls -= (1 - y) * np.log1p(-pc)
                    d = (p - y) * wb
                elif loss_kind == LOSS_POISSON:  # half Poisson deviance, with xlogy(y, y / p)
                    ls += (y * (np.log(y) - np.log(p)) if y > 0 else 0.0) - y + p
                    d = (p - y) * wb
                else:
                    ls += 0.5 * (p - y) * (p - y) / n_out
                    d = (p - y) * (wb / n_out)
                D3[t, j, bb] = d
                bsum[0, j] += d
            total += ls * wb
    return total

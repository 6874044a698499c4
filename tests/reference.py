"""The reference implementation the engine is tested against (not part of the package).

Plain numba kernels over the CSR arrays with activations kept ``(units, batch)`` in
one block, and a numpy forward/backward/step written for clarity, not speed: the
same mathematics as :mod:`sksparse_mlp._fastpath`, computed a different way.
"""
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from sksparse_mlp._activations import _logistic, hidden_forward
from sksparse_mlp._jit import OPTS as _OPTS

_BLOCK = 16
_FWD_BLOCK = 64


@njit(parallel=True, **_OPTS)
def forward_dense(indptr, indices, data, bias, At, Zt):
    """``Zt[:, :] = W.T @ At + bias[:, None]`` from the CSR arrays of ``W``.

    ``At`` is ``(n_in, B)``, ``Zt`` is ``(n_out, B)``.  The batch is split into blocks
    of about 64 samples; each thread scatters into its own columns of ``Zt``.
    """
    n_in = At.shape[0]
    n_out, B = Zt.shape
    # blocks of about _FWD_BLOCK samples (get_num_threads() would defeat caching)
    nblocks = max(1, (B + _FWD_BLOCK - 1) // _FWD_BLOCK)
    blk = (B + nblocks - 1) // nblocks
    blk = ((blk + _BLOCK - 1) // _BLOCK) * _BLOCK
    for c in prange(nblocks):
        b0 = c * blk
        b1 = min(B, b0 + blk)
        n = b1 - b0
        # slices + loops from 0: LLVM then proves the indices non-negative and
        # vectorises (a loop over range(b0, b1) keeps numba's wraparound checks)
        for j in range(n_out):
            z = Zt[j, b0:b1]
            bj = bias[j]
            for b in range(n):
                z[b] = bj
        for i in range(n_in):
            a = At[i, b0:b1]
            for k in range(indptr[i], indptr[i + 1]):
                z = Zt[indices[k], b0:b1]
                w = data[k]
                for b in range(n):
                    z[b] += w * a[b]


@njit(parallel=True, **_OPTS)
def forward_sparse(indptr, indices, data, bias, x_indptr, x_indices, x_data, Zt):
    """``Zt[:, :] = (X @ W).T + bias[:, None]`` for a sparse batch ``X`` (CSR, ``(B, n_in)``).

    Parallel over samples: sample ``b`` writes only column ``b`` of ``Zt``.
    """
    n_out, B = Zt.shape
    for b in prange(B):
        for j in range(n_out):
            Zt[j, b] = bias[j]
        for p in range(x_indptr[b], x_indptr[b + 1]):
            i = x_indices[p]
            x = x_data[p]
            for k in range(indptr[i], indptr[i + 1]):
                Zt[indices[k], b] += x * data[k]


@njit(parallel=True, **_OPTS)
def backward(indptr, indices, data, Dt, Et):
    """``Et[:, :] = W @ Dt``; ``Dt`` is ``(n_out, B)``, ``Et`` is ``(n_in, B)``.

    Parallel over input neurons (rows of ``W``), four connections per pass.
    """
    n_in, B = Et.shape
    for i in prange(n_in):
        e = Et[i]
        for b in range(B):
            e[b] = 0
        k = indptr[i]
        end = indptr[i + 1]
        while k + 4 <= end:
            w0 = data[k]
            w1 = data[k + 1]
            w2 = data[k + 2]
            w3 = data[k + 3]
            d0 = Dt[indices[k]]
            d1 = Dt[indices[k + 1]]
            d2 = Dt[indices[k + 2]]
            d3 = Dt[indices[k + 3]]
            for b in range(B):
                e[b] += w0 * d0[b] + w1 * d1[b] + w2 * d2[b] + w3 * d3[b]
            k += 4
        while k < end:
            w0 = data[k]
            d0 = Dt[indices[k]]
            for b in range(B):
                e[b] += w0 * d0[b]
            k += 1


@njit(parallel=True, **_OPTS)
def sddmm_dense(indptr, indices, At, Dt, grad):
    """``grad[k] = sum_b At[i, b] * Dt[indices[k], b]`` for every ``k`` of row ``i``.

    No ``1/B`` scaling.  Parallel over rows of ``W``.
    """
    n_in, B = At.shape
    if B == 0:
        grad[:] = 0
        return
    for i in prange(n_in):
        a = At[i]
        k = indptr[i]
        end = indptr[i + 1]
        while k + 4 <= end:
            d0 = Dt[indices[k]]
            d1 = Dt[indices[k + 1]]
            d2 = Dt[indices[k + 2]]
            d3 = Dt[indices[k + 3]]
            s0 = a[0] * d0[0]
            s1 = a[0] * d1[0]
            s2 = a[0] * d2[0]
            s3 = a[0] * d3[0]
            for b in range(1, B):
                ab = a[b]
                s0 += ab * d0[b]
                s1 += ab * d1[b]
                s2 += ab * d2[b]
                s3 += ab * d3[b]
            grad[k] = s0
            grad[k + 1] = s1
            grad[k + 2] = s2
            grad[k + 3] = s3
            k += 4
        while k < end:
            d0 = Dt[indices[k]]
            s0 = a[0] * d0[0]
            for b in range(1, B):
                s0 += a[b] * d0[b]
            grad[k] = s0
            k += 1


@njit(parallel=True, **_OPTS)
def sddmm_sparse(indptr, indices, xc_indptr, xc_indices, xc_data, Dt, grad):
    """:func:`sddmm_dense` with the batch ``X`` ``(B, n_in)`` given as CSC arrays.

    Column ``i`` of ``X`` lists ``(sample b, value)`` pairs in
    ``xc_indices[xc_indptr[i]:xc_indptr[i + 1]]`` / ``xc_data[...]``.
    """
    n_in = indptr.shape[0] - 1
    for i in prange(n_in):
        p0 = xc_indptr[i]
        p1 = xc_indptr[i + 1]
        for k in range(indptr[i], indptr[i + 1]):
            d = Dt[indices[k]]
            s = grad.dtype.type(0)
            for p in range(p0, p1):
                s += xc_data[p] * d[xc_indices[p]]
            grad[k] = s



# ------------------------------------------------------------------ output layer
def output_forward(out_activation, Z):
    """Apply the output activation to ``Z`` (shape ``(n_outputs, batch)``) in place."""
    if out_activation == "softmax":
        Z -= Z.max(axis=0)
        np.exp(Z, out=Z)
        Z /= Z.sum(axis=0)
    elif out_activation == "logistic":
        _logistic(Z)
    elif out_activation == "exp":
        np.exp(Z, out=Z)
    elif out_activation != "identity":
        raise ValueError("unknown output activation %r" % out_activation)
    return Z


def loss_and_output_delta(loss, P, Yt, weights):
    """Mean loss over the batch and the delta at the output pre-activations.

    With the canonical pairing (softmax + cross-entropy, logistic + binary
    cross-entropy, identity + squared error, exp + Poisson deviance) the delta is
    ``P - Y``, scaled
    here by the normalised sample weights so that callers need no ``1/B``.

    Parameters
    ----------
    loss : {"log_loss", "binary_log_loss", "squared_error", "poisson"}
    P : ndarray of shape (n_outputs, batch)
        Output activations.
    Yt : ndarray of shape (n_outputs, batch)
        Targets (one-hot / indicator for classification).
    weights : ndarray of shape (batch,)
        Sample weights divided by their sum.

    Returns
    -------
    loss : float
    delta : ndarray of shape (n_outputs, batch)
    """
    eps = np.finfo(P.dtype).eps
    if loss == "log_loss":
        per_sample = -(Yt * np.log(np.clip(P, eps, 1))).sum(axis=0)
    elif loss == "binary_log_loss":
        Pc = np.clip(P, eps, 1 - eps)
        per_sample = -(Yt * np.log(Pc) + (1 - Yt) * np.log1p(-Pc)).sum(axis=0)
    elif loss == "squared_error":
        # sklearn's value: half the mean over outputs of the squared error
        per_sample = 0.5 * ((P - Yt) ** 2).mean(axis=0)
        delta = (P - Yt) * (weights / P.shape[0])
        return float(per_sample @ weights), delta
    elif loss == "poisson":  # half Poisson deviance (exp output), summed over outputs
        ratio = np.divide(Yt, P, out=np.ones_like(P), where=Yt > 0)
        per_sample = (Yt * np.log(ratio) - Yt + P).sum(axis=0)
    else:
        raise ValueError("unknown loss %r" % loss)
    return float(per_sample @ weights), (P - Yt) * weights


# ---------------------------------------------------------------------------- network
def forward(net, X, dropout=0.0, rng=None):
    """Activations (input first, transposed) and ``f'(z)`` factors of the hidden layers."""
    dtype = net.dtype
    B = X.shape[0]
    A = X if sp.issparse(X) else np.ascontiguousarray(X.T, dtype=dtype)
    acts, derivs = [A], []
    last = len(net.layers) - 1
    for l, layer in enumerate(net.layers):
        W = layer.W
        Z = np.empty((layer.n_out, B), dtype=dtype)
        if sp.issparse(A):
            forward_sparse(W.indptr, W.indices, W.data, layer.bias, A.indptr, A.indices, A.data, Z)
        else:
            forward_dense(W.indptr, W.indices, W.data, layer.bias, A, Z)
        if l < last:
            d = hidden_forward(net.activation, Z, l + 1, net.slope)
            if dropout > 0 and rng is not None:
                scale = (rng.random(Z.shape, dtype=dtype) >= dropout).astype(dtype)
                scale *= dtype.type(1.0 / (1.0 - dropout))
                Z *= scale
                d = scale if d is None else d * scale
            derivs.append(d)
        else:
            output_forward(net.out_activation, Z)
        acts.append(Z)
        A = Z
    return acts, derivs


def predict_output(net, X):
    """Output activations, shape ``(n_samples, n_outputs)``."""
    return forward(net, X)[0][-1].T.copy()


def loss_and_gradients(net, X, Y, weights, dropout=0.0, rng=None):
    """Weighted data loss and, per layer, (gradient at the connections, bias gradient)."""
    acts, derivs = forward(net, X, dropout, rng)
    weights = weights.astype(net.dtype, copy=False)
    loss, D = loss_and_output_delta(net.loss, acts[-1], Y.T.astype(net.dtype, copy=False), weights)
    grads = [None] * len(net.layers)
    for l in range(len(net.layers) - 1, -1, -1):
        layer, A = net.layers[l], acts[l]
        W = layer.W
        gW = np.empty_like(W.data)
        if sp.issparse(A):
            Ac = A.tocsc()
            sddmm_sparse(W.indptr, W.indices, Ac.indptr, Ac.indices, Ac.data, D, gW)
        else:
            sddmm_dense(W.indptr, W.indices, A, D, gW)
        grads[l] = (gW, D.sum(axis=1))
        if l > 0:
            E = np.empty((layer.n_in, D.shape[1]), dtype=D.dtype)
            backward(W.indptr, W.indices, W.data, D, E)
            if derivs[l - 1] is not None:
                E *= derivs[l - 1]
            D = E
    return loss, grads


def layer_signals(net, X, Y, weights):
    """Per layer, dense input activations ``(n_in, B)`` and output deltas ``(n_out, B)``
    (no dropout): the gradient at any position ``(i, j)``, connection or not, is
    ``A[i] @ D[j]`` (the oracle of the candidates' gradients in regrowth)."""
    acts, derivs = forward(net, X)
    weights = weights.astype(net.dtype, copy=False)
    _, D = loss_and_output_delta(net.loss, acts[-1], Y.T.astype(net.dtype, copy=False), weights)
    signals = [None] * len(net.layers)
    for l in range(len(net.layers) - 1, -1, -1):
        A = acts[l].toarray().T if sp.issparse(acts[l]) else acts[l]
        signals[l] = (A, D)
        if l > 0:
            layer = net.layers[l]
            E = np.empty((layer.n_in, D.shape[1]), dtype=D.dtype)
            backward(layer.W.indptr, layer.W.indices, layer.W.data, D, E)
            if derivs[l - 1] is not None:
                E *= derivs[l - 1]
            D = E
    return signals


def run_epoch(net, X, Y, sample_weight, batch_size, optimizer, config, rng, shuffle=True):
    """One pass in mini-batches, one optimizer step each; the engine's RNG use and loss."""
    n = X.shape[0]
    order = rng.permutation(n) if shuffle else np.arange(n)
    accumulated = 0.0
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        B = len(idx)
        sw = None if sample_weight is None else sample_weight[idx]
        weights = (np.full(B, 1.0 / B) if sw is None else sw / B).astype(net.dtype)
        loss, grads = loss_and_gradients(net, X[idx], Y[idx], weights, config.dropout, rng)
        l2 = config.alpha / B
        loss += 0.5 * l2 * net.squared_norm()
        net.apply_gradients(grads, optimizer, l2)
        accumulated += loss * B
    return accumulated / n


def adam_step(data, m, v, grad, lr, beta_1, beta_2, l2, eps, t):
    """scikit-learn's Adam rule (``AdamOptimizer._get_updates``) in float64, in place:
    step ``t`` (1-based) with the L2 term added to the gradient."""
    g = grad.astype(np.float64) + l2 * data.astype(np.float64)
    m[:] = beta_1 * m.astype(np.float64) + (1 - beta_1) * g
    v[:] = beta_2 * v.astype(np.float64) + (1 - beta_2) * g ** 2
    lr_t = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    data[:] = data - lr_t * m.astype(np.float64) / (np.sqrt(v.astype(np.float64)) + eps)

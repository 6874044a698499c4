"""The training engine: every training step and prediction of :class:`~._network.SparseMLP`.

Forward, backward, SDDMM gradient, momentum step and loss with the L2 term, written
for speed with the kernels of :mod:`._kernels` (``tests/reference.py`` computes the
same mathematics plainly, as the oracle of the tests):

* activations live in a *tiled* transposed layout ``(n_panels, n_units, panel)``
  so that each core keeps its panel of the gathered matrix in cache;
* the forward pass reads the CSC view of every weight matrix (built once per
  topology, O(nnz)) and applies activation, derivative and dropout in the same
  pass; derivatives are stored as one byte per unit;
* the backward pass computes the SDDMM gradient and the delta of the layer below
  in one sweep over the connections, and the optimizer step follows at once;
* all buffers are allocated once per epoch (:class:`._workspace.Workspace`), and a batch whose
  activations would exceed ``activation_budget`` bytes, or what the available
  memory leaves after the CSC views and the gradient buffers, is processed in
  micro-batches whose gradients are summed before one optimizer step (the same
  step up to rounding, bounded memory: this is what lets a 30-million-neuron
  network train); when even micro-batches of 16 samples would not fit beside
  the CSC views, the forward pass scatters from the CSR arrays instead;
* a layer whose input panels are larger than the caches has its values gathered
  into CSC order before its forward pass, which then prefetches them.

Dropout uses a counter-based hash RNG seeded from the estimator's generator: the
same distribution as ``rng.random() >= p``, but a different stream than the
reference.  Without dropout both consume the generator identically and agree to
rounding.
"""
import time
import weakref

import numba
import numpy as np
import scipy.sparse as sp

from . import _kernels as K
from . import _loss, _threads
from . import _panels as P
from . import _regrowth as RG
from . import _scatter as SC
from . import _steps as S
from . import config as cfg
from ._activations import negative_slope
from ._workspace import Workspace, _cached_views, _predict_view, _round_panel, choose_tiles

# predicting at most this many rows: scatter from CSR, skip the CSC transposition
_CSR_PREDICT = 32
# predicting at most this many rows with cached CSC views: one row at a time, serial
_SERIAL_PREDICT = 2
_OUT = {"softmax": _loss.OUT_SOFTMAX, "logistic": _loss.OUT_LOGISTIC, "identity": _loss.OUT_IDENTITY,
        "exp": _loss.OUT_EXP}
_LOSS = {"log_loss": _loss.LOSS_LOG, "binary_log_loss": _loss.LOSS_BINARY,
         "squared_error": _loss.LOSS_SQUARED, "poisson": _loss.LOSS_POISSON}
_ACT = {"tanh": K.ACT_TANH, "logistic": K.ACT_LOGISTIC, "identity": K.ACT_IDENTITY}


def check_supported(net, X, optimizer=None):
    """Raise ``ValueError`` unless the engine implements this network, input and optimizer.

    There is no slower fallback: what the estimators build always passes.
    """
    if net.out_activation not in _OUT or net.loss not in _LOSS:
        raise ValueError("the engine has no output %r with loss %r" % (net.out_activation,
                                                                        net.loss))
    if net.activation not in _ACT and negative_slope(net.activation, 1, net.slope) is None:
        raise ValueError("the engine has no hidden activation %r" % (net.activation,))
    if sp.issparse(X) and X.format != "csr":
        raise ValueError("sparse input must be CSR, got %s" % X.format)
    if optimizer is not None:
        from ._optimizers import Adam, MomentumSGD
        if type(optimizer) not in (MomentumSGD, Adam):
            raise ValueError("the engine runs momentum SGD and Adam, not %s"
                             % type(optimizer).__name__)


def _act_code(net, hidden_layer):
    """(activation code, negative slope) of 1-based hidden layer ``hidden_layer``."""
    if net.activation in _ACT:
        return _ACT[net.activation], 0.0
    return K.ACT_PIECEWISE, float(negative_slope(net.activation, hidden_layer, net.slope))


# the memory choice (micro-batch, lean) last printed for a network (verbose mode)
_NOTED = weakref.WeakKeyDictionary()


def _forward(net, ws, X, idx, B, nt, tb, seeds, dropout, csr=False):
    """Forward pass of ``B`` samples (rows ``idx`` of ``X``); returns the panels per layer.

    ``csr=True`` scatters from the CSR arrays instead of gathering through the CSC
    view: no O(nnz) transposition, for a few samples at a time.
    """
    L = len(net.layers)
    sizes = ws.sizes
    acts, codes = [], []
    keep = 1.0 - dropout
    thr = K.dropout_threshold(keep) if dropout > 0 else 0
    scale = 1.0 / keep if dropout > 0 else 1.0
    Xb = None
    if ws.sparse_input:
        Xb = X[idx]
        Xb.sort_indices()
        A = None
    else:
        A = ws.view(ws.A[0], sizes[0], nt, tb)
        if sp.issparse(X):  # densified batch (see Workspace)
            P.gather_input_tiled(X[idx].toarray(), np.arange(B), B, A)
        else:
            P.gather_input_tiled(X, idx, B, A)
    acts.append(A)
    codes.append(None)
    for l, layer in enumerate(net.layers):
        W = layer.W
        Z = ws.view(ws.A[l + 1], sizes[l + 1], nt, tb)
        if l < L - 1:
            act, s = _act_code(net, l + 1)
            G = ws.view(ws.G[l + 1], sizes[l + 1], nt, tb)
            seed = int(seeds[l]) if thr else 0
        else:
            act, s, G, seed = K.ACT_NONE, 0.0, ws._dummy_codes, 0
        lthr = thr if act != K.ACT_NONE else 0
        lscale = scale if lthr else 1.0
        if A is None:
            SC.forward_sparse_tiled(W.indptr, W.indices, W.data, layer.bias, Xb.indptr,
                                   Xb.indices, Xb.data, B, Z, G, act, s, lthr, seed, lscale)
        else:
            G = forward_layer(ws, l, layer, A, Z, G, act, s, lthr, seed, lscale, csr)
        acts.append(Z)
        codes.append(G)
        A = Z
    return acts, codes, Xb


def forward_layer(ws, l, layer, A, Z, G, act, s, thr, seed, scale, csr=False):
    """Layer ``l``'s forward pass from the dense panels ``A`` into ``Z`` (arguments as
    :func:`~._kernels.forward_tiled`'s); returns the code panels written (none when
    prediction needs none).  ``csr`` as in :func:`_forward`."""
    W = layer.W
    if csr or ws.lean:
        SC.forward_csr_tiled(W.indptr, W.indices, W.data, layer.bias, A, Z, G, act, s, thr,
                             seed, scale)
    else:
        T = _predict_view(W) if ws.trans[l] is None else ws.trans[l].get(W)
        perm, data = T.perm, W.data
        if not ws.training and act == K.ACT_PIECEWISE:  # nothing reads the codes
            G = ws._no_codes
        if ws.values is not None and ws.large[l]:
            data = ws.values[: W.nnz]
            P.gather_values(W.data, perm, data)
            perm = perm[:0]
        K.forward_tiled(T.indptr, T.indices, perm, data, layer.bias, A, Z, G, act, s, thr,
                        seed, scale, ws.n_threads, ws.sched, ws.rows)
    return G


def _backward(net, ws, acts, codes, Xb, D, nt, tb, accumulate, dropout, opt, last,
              candidates=None):
    """Backward pass from the output delta ``D``; on the ``last`` micro-batch each
    layer takes its optimizer step as soon as its gradient is complete (inside the
    backward kernel in fused mode).  Deltas overwrite the activations they replace.

    ``candidates`` (per layer ``(rows, cols, out)`` or None) adds the gradient at those
    positions to ``out`` while the layer's input activations are still there; the
    first layer's backward, which only gives gradients at connections, is then skipped.

    ``opt = (lr, momentum, nesterov, l2, adam)``; with ``adam = (beta_2, constant)``
    the step is Adam's, ``lr`` its bias-corrected rate and ``momentum`` beta_1.
    Returns ``sum(W.data**2)`` before the steps taken here.
    """
    L = len(net.layers)
    scale = 1.0 / (1.0 - dropout) if dropout > 0 else 1.0
    lr, mu, nesterov, l2, adam = opt
    b2, aeps = adam if adam is not None else (0.0, 0.0)
    step_mode = K.GRAD_STEP if adam is None else K.GRAD_ADAM
    sq = 0.0
    for l in range(L - 1, -1, -1):
        layer = net.layers[l]
        W = layer.W
        if candidates is not None:
            if candidates[l] is not None:
                if l == 0 and Xb is not None:
                    Xc = Xb.tocsc()
                    RG.candidate_gradients_sparse(Xc.indptr, Xc.indices, Xc.data, D,
                                                 *candidates[l])
                else:
                    RG.candidate_gradients_tiled(acts[l], D, *candidates[l])
            if l == 0:
                break
        gbuf = ws.gbuf[l]
        mode = step_mode if ws.fused else (K.GRAD_ADD if accumulate else K.GRAD_WRITE)
        second = layer.velocity if adam is None else layer.second  # SGD: never read
        sparse_first = l == 0 and Xb is not None
        if sparse_first:
            Xc = Xb.tocsc()
            SC.sddmm_sparse_tiled(W.indptr, W.indices, Xc.indptr, Xc.indices, Xc.data, D, gbuf,
                                 accumulate)
        else:
            g = ws._nogbuf if gbuf is None else gbuf
            if l == 0:
                G, act, s, bs = ws._dummy_codes, 0, 0.0, ws.bsum[0]
            else:
                act, s = _act_code(net, l)
                G, bs = codes[l], ws.bsum[l - 1]
            sq += K.backward_tiled(W.indptr, W.indices, W.data, acts[l], D, G, g, mode, l > 0,
                                   act, s, scale, bs, layer.velocity, lr, mu, l2, nesterov,
                                   ws.n_threads, second, b2, aeps, ws.sched, ws.block_sq,
                                   ws.rows)
        if last:
            nb = ws.bsum[l].shape[0]
            if adam is None:
                if mode != K.GRAD_STEP or sparse_first:
                    sq += S.apply_step(W.data, layer.velocity, gbuf, 1, lr, mu, l2, nesterov)
                S.bias_step(layer.bias, layer.bias_velocity, ws.bsum[l], nb, lr, mu, nesterov)
            else:
                if mode != K.GRAD_ADAM or sparse_first:
                    sq += S.apply_adam_step(W.data, layer.velocity, second, gbuf, 1, lr, mu, b2,
                                            l2, aeps)
                S.bias_adam_step(layer.bias, layer.bias_velocity, layer.bias_second, ws.bsum[l],
                                 nb, lr, mu, b2, aeps)
        D = acts[l]  # now holds the delta of layer l's input (unused after layer 0)
    return sq


def _batch(net, ws, X, Y, idx, weights, dropout, rng, opt, last, candidates=None):
    """Forward and backward over the micro-batches of one batch; returns loss and ``||W||^2``.

    With ``last`` the final micro-batch applies the optimizer step ``opt``; for
    ``candidates`` see :func:`_backward`.
    """
    L = len(net.layers)
    B = len(idx)
    micro = ws.micro
    n_micro = -(-B // micro)
    loss = 0.0
    sq = 0.0
    eps = float(np.finfo(ws.dtype).eps)
    out_act, loss_kind = _OUT[net.out_activation], _LOSS[net.loss]
    nt = ws.nt
    for m in range(n_micro):
        lo, hi = m * micro, min(B, (m + 1) * micro)
        Bm = hi - lo
        tb = _round_panel(-(-Bm // nt))
        seeds = rng.integers(0, 1 << 32, size=L) if dropout > 0 else None
        acts, codes, Xb = _forward(net, ws, X, idx[lo:hi], Bm, nt, tb, seeds, dropout)
        D = acts[-1]  # the output delta replaces the outputs
        loss += _loss.output_loss_delta(acts[-1], Y[idx[lo:hi]], weights[lo:hi], Bm, out_act,
                                    loss_kind, eps, D, ws.bsum[L - 1], m > 0)
        sq += _backward(net, ws, acts, codes, Xb, D, nt, tb, m > 0, dropout, opt,
                        last and m == n_micro - 1, candidates)
    return loss, sq


def loss_and_gradients(net, X, Y, weights, dropout=0.0, rng=None):
    """Drop-in for :meth:`._network.SparseMLP.loss_and_gradients` (no optimizer step).

    Used by the WASAP-SGD workers, whose gradients the server applies.
    """
    B = X.shape[0]
    ws = Workspace(net, B, training=True, sparse_input=sp.issparse(X), step=False)
    idx = np.arange(B)
    Y = np.asarray(Y, dtype=ws.dtype)
    loss, _ = _batch(net, ws, X, Y, idx, weights.astype(ws.dtype, copy=False), dropout, rng,
                     (0.0, 0.0, False, 0.0, None), last=False)
    grads = [(ws.gbuf[l][0].copy(), ws.bsum[l].sum(axis=0)) for l in range(len(net.layers))]
    return loss, grads


def candidate_gradients(net, X, Y, weights, positions):
    """The loss gradient at positions that hold no connection, for gradient-guided regrowth.

    ``positions`` holds per layer ``(rows, cols)`` (int64 arrays) or None; returns per
    layer the gradients at those positions (None where none were asked), from the
    forward and backward passes training runs (no dropout, no step), over
    micro-batches when the batch does not fit at once.
    """
    B = X.shape[0]
    ws = Workspace(net, B, training=True, sparse_input=sp.issparse(X), step=False)
    out = [None if p is None else np.zeros(len(p[0]), ws.dtype) for p in positions]
    candidates = [None if p is None else (p[0], p[1], g) for p, g in zip(positions, out)]
    _batch(net, ws, X, np.asarray(Y, dtype=ws.dtype), np.arange(B),
           np.asarray(weights, dtype=ws.dtype), 0.0, None, (0.0, 0.0, False, 0.0, None),
           last=False, candidates=candidates)
    return out


def train_batch(net, ws, X, Y, idx, weights, lr, momentum, nesterov, l2, dropout, rng,
                adam=None):
    """One optimizer step on the samples ``idx`` of ``(X, Y)``; returns the data loss and ``||W||^2``.

    ``weights`` are the normalised sample weights of the batch (sum 1).  With
    ``adam = (beta_2, constant)`` the step is Adam's (``lr`` bias-corrected,
    ``momentum`` = beta_1; see :meth:`._optimizers.Adam.next_step`).
    """
    return _batch(net, ws, X, Y, idx, weights, dropout, rng,
                  (lr, momentum, nesterov, l2, adam), last=True)


def run_epoch(net, X, Y, sample_weight, batch_size, optimizer, config, rng, shuffle=True,
              activation_budget=None):
    """Drop-in for :func:`._network.run_epoch` (same arguments, result and RNG use)."""
    n = X.shape[0]
    order = rng.permutation(n) if shuffle else np.arange(n)
    ws = Workspace(net, min(batch_size, n), training=True, sparse_input=sp.issparse(X),
                   activation_budget=activation_budget)
    if getattr(config, "verbose", False):
        msg = ws.describe(min(batch_size, n))
        plan = (ws.micro, ws.lean)
        if msg is not None and _NOTED.get(net) != plan:  # once per network and choice
            _NOTED[net] = plan
            print(msg, flush=True)
    dtype = net.dtype
    accumulated = 0.0
    optimizer.prepare(net)
    uniform = None
    threads = ws.n_threads
    chooser = _threads.chooser_for(net, min(batch_size, n), threads)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            idx = order[start:stop]
            B = stop - start
            if sample_weight is None:
                if uniform is None or len(uniform) != B:
                    uniform = np.full(B, 1.0 / B, dtype=dtype)
                weights, total = uniform, float(B)
            else:
                # rescaled to mean 1 by the estimator (see _network._normalised_weights)
                weights, total = (sample_weight[idx] / B).astype(dtype), float(B)
            l2 = config.alpha / total
            lr, mu, nesterov, adam = optimizer.next_step()
            if chooser is not None:
                n_threads = chooser.next_count()
                if n_threads != ws.n_threads:
                    ws.n_threads = n_threads
                    numba.set_num_threads(n_threads)
                t0 = time.perf_counter()
            loss, sq = train_batch(net, ws, X, Y, idx, weights, lr, mu, nesterov, l2,
                                   config.dropout, rng, adam)
            # the first batch builds the CSC views; a short last batch is mostly overhead
            if chooser is not None and start > 0 and B == batch_size:
                chooser.record(ws.n_threads, time.perf_counter() - t0, B)
            accumulated += (loss + 0.5 * l2 * sq) * B
    finally:
        numba.set_num_threads(threads)
    return accumulated / n


def _predict_rows_serial(net, X):
    """Rows one at a time through :func:`~._scatter.forward_row` (no parallel regions)."""
    layers = net.layers
    L = len(layers)
    dtype = layers[0].bias.dtype
    # (activation code, slope) per layer, and buffers: looked up once, not per row
    acts = [_act_code(net, l + 1) for l in range(L - 1)] + [(K.ACT_NONE, 0.0)]
    width = max(layer.bias.shape[0] for layer in layers)
    out = np.empty((X.shape[0], layers[-1].bias.shape[0]), dtype=dtype)
    bufs = [np.empty(width, dtype), np.empty(width, dtype)]
    for r in range(X.shape[0]):
        a = np.ascontiguousarray(X[r], dtype=dtype)
        for l, layer in enumerate(layers):
            bias = layer.bias
            z = out[r] if l == L - 1 else bufs[l % 2][: bias.shape[0]]
            W = layer.W
            SC.forward_row(W.indptr, W.indices, W.data, bias, a, z, *acts[l])
            a = z
    _loss.output_rows(out, _OUT[net.out_activation])
    return out


def predict_output(net, X, chunk=None):
    """Output activations for all rows of ``X`` (dense or CSR), shape ``(n, n_outputs)``."""
    n = X.shape[0]
    sparse = sp.issparse(X)
    if n <= _SERIAL_PREDICT and not sparse:
        return _predict_rows_serial(net, X)
    dtype = net.dtype
    sizes = net.n_neurons
    csr, views = False, None
    if _cached_views(net):
        views = [_predict_view(layer.W) for layer in net.layers]  # reused between calls
    else:  # no cache: for a few rows, scattering beats transposing every weight matrix
        csr = n <= _CSR_PREDICT
    if chunk is None:
        # as many rows as the cache, the activation budget and the free memory allow
        ws = Workspace(net, min(n, cfg.PREDICT_CHUNK_ROWS), training=False, sparse_input=sparse)
        chunk = ws.micro
    else:
        chunk = max(1, min(chunk, n))
        ws = Workspace(net, chunk, training=False, sparse_input=sparse, activation_budget=1 << 62,
                       available=np.inf)
    csr = csr or ws.lean
    if views is not None:
        ws.trans = views
    out = np.empty((n, sizes[-1]), dtype=dtype)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        B = stop - start
        nt, tb = choose_tiles(B, max(sizes), dtype.itemsize)
        if ws.lean or nt * tb > ws.nt * ws.tb:
            nt, tb = ws.nt, _round_panel(-(-B // ws.nt))
        idx = np.arange(start, stop)
        acts, _, _ = _forward(net, ws, X, idx, B, nt, tb, None, 0.0, csr=csr)
        P.untile_rows(acts[-1], B, out, start)
    _loss.output_rows(out, _OUT[net.out_activation])
    return out

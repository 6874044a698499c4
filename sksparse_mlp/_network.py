"""The sparse network: layers, forward and backward passes, one training step.

Everything here is written once and shared by the local training loop of the
estimators and by the WASAP-SGD server and workers in :mod:`sksparse_mlp.parallel`.
"""
import pickle
import tempfile
from dataclasses import dataclass

import numpy as np

from . import _fastpath, _pruning, _regrowth, _sampling, _set, _workspace
from ._activations import hidden_forward, negative_slope
from ._csr import max_row_abs_sum


def layer_init(init, layer):
    """Initialisation scheme of weight matrix ``layer`` (0 = input layer).

    ``"sparse_he"`` scales hidden and output layers by their actual mean fan-in,
    so the signal survives sparse depth and training starts at once; the input
    layer keeps Glorot's bound on its dense shape, because it weighs raw
    features, many of which may be noise (large weights there fit the noise:
    about 6 points of test accuracy lost on Madelon-like data).
    """
    return "xavier" if init == "sparse_he" and layer == 0 else init


class SparseLayer:
    """One sparse weight matrix with its bias and their optimizer state.

    Parameters
    ----------
    W : scipy.sparse.csr_array of shape (n_in, n_out)
        Weights; training updates ``W.data`` in place.
    bias : ndarray of shape (n_out,)
    velocity : ndarray of shape (W.nnz,), optional
        Momentum of each connection (Adam: its first moment), aligned with ``W.data``.
    bias_velocity : ndarray of shape (n_out,), optional
    second, bias_second : ndarray or None, optional
        Adam's second moments, aligned like ``velocity`` / ``bias_velocity``; None
        with momentum SGD (no memory for a state that is not used).
    """

    __slots__ = ("W", "bias", "velocity", "bias_velocity", "second", "bias_second")

    def __init__(self, W, bias, velocity=None, bias_velocity=None, second=None,
                 bias_second=None):
        self.W = W
        self.bias = bias
        self.velocity = np.zeros_like(W.data) if velocity is None else velocity
        self.bias_velocity = np.zeros_like(bias) if bias_velocity is None else bias_velocity
        self.second = second
        self.bias_second = bias_second

    def state_arrays(self):
        """The per-connection optimizer state arrays (aligned with ``W.data``)."""
        return [self.velocity] if self.second is None else [self.velocity, self.second]

    def use_state(self, adam):
        """Switch to momentum (``adam=False``) or Adam state, zeroed when it changes kind."""
        if (self.second is not None) == adam:
            return
        self.velocity = np.zeros_like(self.W.data)
        self.bias_velocity = np.zeros_like(self.bias)
        self.second = np.zeros_like(self.W.data) if adam else None
        self.bias_second = np.zeros_like(self.bias) if adam else None

    def select_state(self, kept):
        """Keep the connection state at the old positions ``kept`` (``-1``: new, zero)."""
        out = []
        for a in self.state_arrays():
            b = a[kept]
            b[kept < 0] = 0
            out.append(b)
        self.velocity = out[0]
        if self.second is not None:
            self.second = out[1]

    @property
    def n_in(self):
        return self.W.shape[0]

    @property
    def n_out(self):
        return self.W.shape[1]

    def copy(self):
        def cp(a):
            return None if a is None else a.copy()

        return SparseLayer(self.W.copy(), self.bias.copy(), self.velocity.copy(),
                           self.bias_velocity.copy(), cp(self.second), cp(self.bias_second))

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        state = dict({"second": None, "bias_second": None}, **state)  # older pickles
        for k, v in state.items():
            setattr(self, k, v)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one training step and of the topology evolution."""

    alpha: float = 1e-4
    dropout: float = 0.0
    zeta: float = 0.3
    init: str = "sparse_he"
    regrow: str = "pruned"
    regrow_candidates: float = 4.0
    importance_pruning: bool = False
    pruning_start: int = 50
    pruning_interval: int = 10
    pruning_percentile: float = 20.0
    # print the engine's memory choices (micro-batches, lean forward pass)
    verbose: bool = False


class SparseMLP:
    """A multilayer perceptron whose weight matrices are all sparse.

    Parameters
    ----------
    layers : list of SparseLayer
    activation : str
        Hidden activation (see :mod:`sksparse_mlp._activations`).
    slope : float
        All-ReLU / leaky ReLU slope magnitude.
    out_activation : {"softmax", "logistic", "identity"}
    loss : {"log_loss", "binary_log_loss", "squared_error"}
    """

    def __init__(self, layers, activation, slope, out_activation, loss):
        self.layers = layers
        self.activation = activation
        self.slope = slope
        self.out_activation = out_activation
        self.loss = loss

    @classmethod
    def random(cls, layer_sizes, densities, rng, *, init="sparse_he", activation="allrelu",
               slope=0.6, out_activation="softmax", loss="log_loss", dtype=np.float32):
        """Erdős–Rényi network with ``len(layer_sizes) - 1`` sparse layers."""
        layers = [
            SparseLayer(_sampling.random_layer(n_in, n_out, d, rng, layer_init(init, l), dtype),
                        np.zeros(n_out, dtype=dtype))
            for l, (n_in, n_out, d) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:], densities))
        ]
        return cls(layers, activation, slope, out_activation, loss)

    # ------------------------------------------------------------------ reporting
    @property
    def dtype(self):
        return self.layers[0].bias.dtype

    @property
    def n_connections(self):
        return [layer.W.nnz for layer in self.layers]

    @property
    def densities(self):
        return [layer.W.nnz / (layer.n_in * layer.n_out) for layer in self.layers]

    @property
    def n_neurons(self):
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    def copy(self):
        return SparseMLP([layer.copy() for layer in self.layers], self.activation,
                         self.slope, self.out_activation, self.loss)

    @property
    def nbytes(self):
        """Bytes of weights, index arrays, biases and optimizer state."""
        return sum(a.nbytes for layer in self.layers for a in
                   (layer.W.data, layer.W.indices, layer.W.indptr, layer.bias, layer.velocity,
                    layer.bias_velocity, layer.second, layer.bias_second) if a is not None)

    def squared_norm(self):
        return float(sum(np.dot(layer.W.data, layer.W.data) for layer in self.layers))

    def output_bound(self, X):
        """An upper bound on ``|z|`` of every output neuron's pre-activation for every
        row of ``X``; inf or NaN when a parameter is not finite.  O(nnz), streaming.

        A layer maps the L1 norm of its input to at most ``||a||_1 max_i sum_j |w_ij| +
        ||b||_1``; the piecewise-linear activations multiply it by at most
        ``max(1, |slope|)``, ``tanh`` and ``identity`` by 1, and the logistic bounds
        each neuron by 1.  Far cheaper than predicting rows of a large network.
        """
        bound = float(abs(X).sum(axis=1).max()) if X.shape[0] else 0.0
        for l, layer in enumerate(self.layers):
            bound = (bound * max_row_abs_sum(layer.W.indptr, layer.W.data)
                     + float(np.abs(layer.bias, dtype=np.float64).sum()))
            if l == len(self.layers) - 1:
                break
            if self.activation == "logistic":
                bound = float(layer.n_out) if bound < np.inf else bound  # keeps NaN
            elif self.activation not in ("tanh", "identity"):
                bound *= max(1.0, abs(negative_slope(self.activation, l + 1, self.slope)))
        return bound

    # ------------------------------------------------------------------ passes
    def predict_output(self, X):
        """Output activations for all rows of ``X``, shape ``(n_samples, n_outputs)``."""
        _fastpath.check_supported(self, X)
        return _fastpath.predict_output(self, X)

    def loss_and_gradients(self, X, Y, weights, dropout=0.0, rng=None):
        """Data loss and gradients at the existing connections for one batch.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (batch, n_features)
        Y : ndarray of shape (batch, n_outputs)
        weights : ndarray of shape (batch,)
            Per-sample weights of the batch mean (``1 / batch`` each without sample weights).
        dropout : float
            Dropout rate on hidden activations (needs ``rng``).
        rng : numpy.random.Generator or None

        Returns
        -------
        loss : float
            Weighted mean loss, without the L2 penalty.
        grads : list of (ndarray, ndarray)
            Per layer, the gradient aligned with ``W.data`` and the bias gradient.
        """
        _fastpath.check_supported(self, X)
        return _fastpath.loss_and_gradients(self, X, Y, weights, dropout, rng)

    def apply_gradients(self, grads, optimizer, l2):
        """One optimizer step on every layer; ``l2`` is the weight-decay coefficient."""
        optimizer.prepare(self)
        rule = optimizer.next_step()  # one step of the optimizer for all layers
        for layer, (gW, gb) in zip(self.layers, grads):
            optimizer.update_layer(layer, gW, gb, l2, rule)

    # ------------------------------------------------------------------ topology
    def prune_and_regrow(self, zeta, rng, init, regrow="pruned", scoring=None, factor=4.0):
        """SET on every sparse hidden weight matrix (the output matrix does not evolve).

        A full layer is skipped: its only empty positions would be the ones just
        pruned, so SET would merely re-initialise its smallest weights.  With
        ``regrow="gradient"`` the new connections are the ``factor`` x as many
        candidates of :func:`._regrowth.draw_candidates` with the largest loss
        gradient on the batch ``scoring = (X, Y, weights)``, computed by the engine.
        """
        evolving = [l for l, layer in enumerate(self.layers[:-1])
                    if layer.W.nnz < layer.n_in * layer.n_out]
        if regrow == "gradient":
            if scoring is None:
                raise ValueError("regrow='gradient' needs the training data")
            candidates = [None] * len(self.layers)
            for l in evolving:
                candidates[l] = _regrowth.draw_candidates(self.layers[l].W, zeta, rng, factor)
            _fastpath.check_supported(self, scoring[0])
            gradients = _fastpath.candidate_gradients(
                self, *scoring, [None if c is None else (c.rows, c.cols) for c in candidates])
        for l in evolving:
            layer = self.layers[l]
            one = layer.second is None  # one state array: carried by the kernels
            state = layer.velocity if one else np.arange(1, layer.W.nnz + 1)
            if regrow == "gradient":
                if candidates[l] is None:
                    continue
                W, state, _ = _regrowth.grow(layer.W, state, candidates[l], gradients[l])
            else:
                W, state = _set.prune_and_regrow(layer.W, state, zeta, rng,
                                                 layer_init(init, l), regrow)
            layer.W = W
            if one:
                layer.velocity = state
            else:  # the old positions (+1, 0 = new) select every state array
                layer.select_state(state - 1)

    def importance_prune(self, percentile):
        """Remove the least important neurons of every hidden layer.

        Returns the number of neurons removed per hidden layer.
        """
        removed = []
        for l in range(len(self.layers) - 1):
            drop = _pruning.importance_prune_mask(self.layers[l].W, percentile)
            removed.append(int(drop.sum()))
            if drop.any():
                self.remove_neurons(l + 1, ~drop)
        return removed

    def remove_neurons(self, hidden_layer, keep):
        """Remove the neurons ``~keep`` of hidden layer ``hidden_layer`` (1-based).

        A neuron that lost its inputs outputs the constant ``f(b)``; its share
        ``f(b) * W_next[j, :]`` is folded into the next bias, so inference is
        unchanged by the removal.
        """
        inc, out = self.layers[hidden_layer - 1], self.layers[hidden_layer]
        drop = np.flatnonzero(~keep)
        const = inc.bias[drop].reshape(-1, 1).copy()
        hidden_forward(self.activation, const, hidden_layer, self.slope)
        out.bias += (out.W[drop].T @ const[:, 0]).astype(out.bias.dtype)
        inc.W, kept = _pruning.drop_columns(inc.W, keep)
        inc.select_state(kept)
        inc.bias, inc.bias_velocity = inc.bias[keep], inc.bias_velocity[keep]
        if inc.bias_second is not None:
            inc.bias_second = inc.bias_second[keep]
        out.W, kept = _pruning.drop_rows(out.W, keep)
        out.select_state(kept)


def _normalised_weights(sample_weight, n, dtype):
    # sample_weight comes rescaled to mean 1 over the training data by the estimator:
    # a batch of zero weights is a step without data gradient, never skipped
    if sample_weight is None:
        return np.full(n, 1.0 / n, dtype=dtype), float(n)
    return (sample_weight / n).astype(dtype), float(n)


def train_step(net, X, Y, sample_weight, optimizer, config, rng):
    """Forward, backward and one optimizer step on a batch; returns its loss.

    The loss includes the L2 penalty ``0.5 * alpha * ||W||^2 / batch_size``
    as in :class:`sklearn.neural_network.MLPClassifier` (``sample_weight`` comes
    rescaled to mean 1 over the training data).
    """
    weights, total = _normalised_weights(sample_weight, X.shape[0], net.dtype)
    loss, grads = net.loss_and_gradients(X, Y, weights, config.dropout, rng)
    l2 = config.alpha / total
    loss += 0.5 * l2 * net.squared_norm()
    net.apply_gradients(grads, optimizer, l2)
    return loss


def run_epoch(net, X, Y, sample_weight, batch_size, optimizer, config, rng, shuffle=True):
    """One pass over ``(X, Y)`` in mini-batches; returns the mean batch loss."""
    _fastpath.check_supported(net, X, optimizer)
    return _fastpath.run_epoch(net, X, Y, sample_weight, batch_size, optimizer, config, rng,
                               shuffle)


def evolve_topology(net, epochs_done, config, rng, data=None):
    """Topology changes between two epochs: importance pruning, then SET.

    Called before every epoch but the first, so the model a fit returns was
    always trained after its last topology change.  ``data = (X, Y, sample_weight)``,
    the training data, is needed by ``config.regrow == "gradient"``, which scores
    the candidates on :data:`._regrowth.SCORING_ROWS` random rows of it.

    Returns
    -------
    removed : list of int or None
        Neurons removed per hidden layer when importance pruning ran.
    """
    removed = None
    if (config.importance_pruning and epochs_done >= config.pruning_start
            and (epochs_done - config.pruning_start) % config.pruning_interval == 0):
        removed = net.importance_prune(config.pruning_percentile)
    if config.zeta > 0:
        scoring = None
        if config.regrow == "gradient":
            if data is None:
                raise ValueError("regrow='gradient' needs the training data")
            X, Y, sw = data
            n = X.shape[0]
            idx = np.sort(rng.choice(n, size=min(n, _regrowth.SCORING_ROWS), replace=False))
            weights, _ = _normalised_weights(None if sw is None else sw[idx], len(idx),
                                             net.dtype)
            scoring = (X[idx], Y[idx], weights)
        net.prune_and_regrow(config.zeta, rng, config.init, config.regrow, scoring,
                             config.regrow_candidates)
    return removed


_available_memory = _workspace.available_memory


# Largest network (bytes) backed up by an in-memory copy; None: a quarter of the
# available memory.
BACKUP_IN_MEMORY_MAX = None


class NetworkBackup:
    """The state of a network to return to if training on it fails.

    Small networks are copied in memory and training continues on the copy.
    A network larger than ``max_memory_bytes`` (default: a quarter of the
    available memory) is written to an anonymous temporary file instead and
    training continues on the original, so continuing to train a very large
    model (``partial_fit``, ``warm_start``) does not need twice its memory.

    Use :attr:`network` for training and :meth:`restore` for the old state.
    With ``frozen=True`` (a snapshot, such as early stopping's best model)
    :attr:`network` is always ``net`` itself and an in-memory backup is the copy.
    """

    def __init__(self, net, max_memory_bytes=None, frozen=False):
        if max_memory_bytes is None:
            max_memory_bytes = BACKUP_IN_MEMORY_MAX
        if max_memory_bytes is None:
            avail = _available_memory()
            max_memory_bytes = np.inf if avail is None else avail // 4
        self._file = self._old = None
        if net.nbytes > max_memory_bytes:
            try:
                self._file = tempfile.TemporaryFile(prefix="sksparse-mlp-backup-")
                pickle.dump(net, self._file, protocol=5)  # arrays streamed, not copied
                self.network = net
                return
            except OSError:  # no room on disk: fall back to memory
                self._file = None
        self._old, self.network = (net.copy(), net) if frozen else (net, net.copy())

    def restore(self):
        """The network as it was when the backup was made."""
        if self._file is None:
            return self._old
        self._file.seek(0)
        return pickle.load(self._file)

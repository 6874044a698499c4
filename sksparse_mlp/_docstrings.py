"""The estimators' parameters, fitted attributes and method arguments, each described once.

Both estimators' numpydoc sections are made from these entries by
:func:`document` (each with the defaults of its own signature), and the command
line takes the text of every ``train`` flag from the same entries
(:attr:`Entry.summary` and :attr:`Entry.type`): no docstring is parsed at run time.
A new estimator parameter needs an entry here; ``tests/test_docstrings.py`` says so.
The methods' Parameters sections (``fit``, ``partial_fit``, ``predict``, ...) are
made from :data:`ARGUMENTS` and the estimator's :data:`TARGETS` entry the same way.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from typing import NamedTuple


class Entry(NamedTuple):
    """One parameter or attribute: numpydoc type, one-sentence summary, further text."""

    type: str
    summary: str
    details: str = ""


PARAMETERS = {
    "hidden_layer_sizes": Entry(
        "array-like of shape (n_layers - 2,)", "Neurons of each hidden layer."),
    "activation": Entry(
        '{"allrelu", "relu", "leaky_relu", "tanh", "logistic", "identity"}',
        "Hidden activation.",
        "All-ReLU is ``x`` for ``x > 0`` and ``-s x`` / ``+s x`` otherwise in odd / even "
        "hidden layers (``s`` is ``allrelu_slope``)."),
    "allrelu_slope": Entry(
        "float", "Slope magnitude ``s`` of All-ReLU and leaky ReLU for ``x <= 0``."),
    "epsilon": Entry(
        "float or array-like of float",
        "Erdős–Rényi sparsity: a layer gets about ``epsilon * (n_in + n_out)`` connections.",
        "A layer is dense when that exceeds ``n_in * n_out``. One value per weight matrix "
        "(``len(hidden_layer_sizes) + 1``) sets each layer's own. This is the paper's "
        "sparsity parameter; Adam's numerical constant, which scikit-learn calls "
        "``epsilon``, is ``adam_epsilon`` here."),
    "density": Entry(
        "float or array-like of float in (0, 1], or None",
        "Fraction of connections of every layer, or one value per weight matrix.",
        "Overrides ``epsilon`` when given; per layer, a grid search can range over the "
        "first layer's alone. ``density_`` reports what was achieved."),
    "zeta": Entry(
        "float in [0, 1)",
        "Fraction of positive and of negative weights that SET replaces after every epoch.",
        "Only the hidden weight matrices evolve; 0 keeps the topology static."),
    "init": Entry(
        '{"sparse_he", "he", "xavier"}', "Uniform initialisation of the weights.",
        '``"sparse_he"`` uses He\'s bound on the actual mean fan-in of each sparse hidden '
        "and output layer (so training does not sit at chance for the first epochs) and "
        "Glorot's bound on the input layer; ``\"he\"`` and ``\"xavier\"`` are the paper's "
        "dense bounds."),
    "regrow": Entry(
        '{"pruned", "init", "gradient"}', "Where and with which values SET regrows.",
        '``"pruned"``: at random positions, uniform within the largest magnitude SET just '
        "removed from the layer, so new connections start on par with the weakest ones and "
        'evolution does not disturb what was learned; ``"init"``: at random positions, '
        "drawn by ``init`` as in the paper, which perturbs the network after every epoch "
        '(slower, noisier convergence); ``"gradient"``: RigL-style growth at the empty '
        "positions of largest gradient magnitude among ``regrow_candidates`` random "
        "candidates per connection to grow, scored on 256 random training rows and computed "
        "at the candidates only (never a dense gradient), new weights at 0."),
    "regrow_candidates": Entry(
        "float >= 1", 'Candidates scored per connection grown by ``regrow="gradient"``.'),
    "dropout": Entry(
        "float in [0, 1)",
        "Inverted dropout rate on the hidden activations during training.",
        "The paper used 0.3."),
    "importance_pruning": Entry(
        "bool", "Remove the least important hidden neurons during training."),
    "pruning_start": Entry("int", "Epochs before importance pruning starts."),
    "pruning_interval": Entry("int", "Epochs between two importance prunings."),
    "pruning_percentile": Entry(
        "float in (0, 100)",
        "Neurons whose importance is at or below this percentile of their layer are removed.",
        "A neuron's importance is the sum of its ``|incoming weights|``."),
    "alpha": Entry("float", "Strength of the L2 penalty on the weights."),
    "batch_size": Entry(
        'int or "auto"', "Minibatch size.",
        '``"auto"`` is ``min(128, n_samples)``. A larger value than the number of samples '
        "warns and is clipped to it."),
    "learning_rate": Entry(
        '{"constant", "invscaling", "adaptive"}', "Learning-rate schedule.",
        'As in MLPClassifier: ``"invscaling"`` divides ``learning_rate_init`` by '
        '``(t + 1) ** power_t`` (``t``: samples seen); ``"adaptive"`` divides the rate by 5 '
        "instead of stopping when the loss (or the validation score) has not improved for "
        "``n_iter_no_change`` epochs, and stops once it is below 1e-6."),
    "learning_rate_init": Entry("float", "Initial step size (SGD and Adam)."),
    "power_t": Entry("float", 'Exponent of the ``"invscaling"`` schedule.'),
    "max_iter": Entry("int", "Maximum number of epochs."),
    "shuffle": Entry("bool", "Shuffle the samples before every epoch."),
    "random_state": Entry(
        "int, RandomState instance or None",
        "Seed of initialisation, SET regrowth, dropout, shuffling and the validation split.",
        "The MPI workers' seeds derive from it too; a fixed value gives the same model."),
    "tol": Entry(
        "float",
        "Smallest improvement of the loss (or validation score) that counts as progress."),
    "verbose": Entry("bool", "Print the loss (and validation score) after every epoch."),
    "warm_start": Entry(
        "bool", "Continue from the previous solution on the next call to ``fit``.",
        "The classes must be the same; the SET and pruning schedules go on counting epochs."),
    "momentum": Entry("float in [0, 1]", "Momentum of the SGD update."),
    "nesterovs_momentum": Entry("bool", "Use Nesterov's momentum."),
    "solver": Entry(
        '{"sgd", "adam"}', "Momentum SGD (the paper's) or Adam with scikit-learn's rule.",
        "Either runs fused into the backward kernel, its state kept beside the weights "
        "(Adam: two moments per connection) and pruned and regrown with them. "
        "``learning_rate`` schedules and ``momentum`` apply to SGD only."),
    "beta_1": Entry("float in [0, 1)", "Adam's decay rate of the first moment estimate."),
    "beta_2": Entry("float in [0, 1)", "Adam's decay rate of the second moment estimate."),
    "adam_epsilon": Entry(
        "float", "Adam's numerical constant (scikit-learn's ``epsilon``).",
        "Renamed here because ``epsilon`` is the Erdős–Rényi sparsity parameter."),
    "loss": Entry(
        "str", "Loss function.",
        '``"log_loss"`` for the classifier; the regressor takes ``"squared_error"`` or '
        '``"poisson"`` (half Poisson deviance with an exponential output, as in '
        "MLPRegressor; needs ``y >= 0`` with a positive sum)."),
    "early_stopping": Entry(
        "bool",
        "Stop when the score on a held-out validation split stops improving.",
        "Holds out ``validation_fraction`` of the samples (stratified for classification), "
        "scores them after every epoch (weighted by ``sample_weight``) and keeps the best "
        "model. Not supported by ``partial_fit``."),
    "validation_fraction": Entry(
        "float in (0, 1)", "Share of the training data held out for early stopping."),
    "n_iter_no_change": Entry(
        "int or np.inf", "Epochs without progress (see ``tol``) before training stops."),
    "dtype": Entry(
        '{"float32", "float64"}', "Floating-point type of weights and activations."),
    "n_workers": Entry(
        "int", "Number of MPI worker processes that train with WASAP-SGD.",
        "1 trains in the calling process. More spawns that many workers from ``fit`` "
        '(needs ``pip install "sksparse_mlp[mpi]"``).'),
    "worker_mode": Entry(
        '{"async", "sync", "allreduce"}',
        "Asynchronous WASAP-SGD, or synchronous averaged gradients (reproducible).",
        'In phase 1 (see ``phase1_fraction``). ``"sync"`` averages the gradients at the '
        'parameter server, which receives and sends every one; ``"allreduce"`` takes the '
        "same averaged steps with the gradients summed by MPI's ``Allreduce`` among the "
        "workers (no server in the data path, so it scales to many workers); the server "
        "then only evolves the topology after every epoch. Both scale the learning rate "
        "by ``n_workers`` after a 5-epoch warm-up."),
    "phase1_fraction": Entry(
        "float in [0, 1]", "Share of the epochs trained in the parameter-server phase."),
    "worker_timeout": Entry(
        "float or None", "Seconds of silence after which a worker is declared stalled."),
    "mpi_info": Entry(
        "dict or None", "MPI Info keys passed to ``Spawn``.",
        'For example ``{"hosts": "node1,node2"}``.'),
    "callback": Entry(
        "callable or None", "Called as ``callback(estimator)`` after every epoch.",
        "It runs once ``n_iter_``, ``loss_curve_`` and (with early stopping) "
        "``validation_scores_`` include the epoch; training stops when it returns True. "
        "For progress display, logging or a time budget; with ``n_workers > 1`` it runs "
        "in the calling process."),
}

ATTRIBUTES = {
    "classes_": Entry(
        "ndarray of shape (n_classes,)",
        "Class labels; for a multilabel indicator ``y``, its column indices."),
    "coefs_": Entry(
        "list of scipy.sparse.csr_array",
        "Weight matrix of shape ``(n_in, n_out)`` of each layer."),
    "intercepts_": Entry("list of ndarray", "Bias vector of each layer."),
    "loss_": Entry("float", "Training loss of the last epoch."),
    "loss_curve_": Entry("list of float", "Training loss of every epoch."),
    "best_loss_": Entry(
        "float or None", "Lowest training loss seen; None with early stopping."),
    "validation_scores_": Entry(
        "list of float or None",
        "Score on the validation split after every epoch; None without early stopping."),
    "best_validation_score_": Entry(
        "float or None", "Best validation score; None without early stopping."),
    "n_iter_": Entry("int", "Epochs of the last call to ``fit`` or ``partial_fit``."),
    "t_": Entry("int", "Training samples seen, counted over all epochs."),
    "n_layers_": Entry("int", "Number of layers, input and output included."),
    "n_outputs_": Entry("int", "Number of output neurons."),
    "out_activation_": Entry("str", "Activation of the output layer."),
    "n_features_in_": Entry("int", "Number of features seen during ``fit``."),
    "feature_names_in_": Entry(
        "ndarray of shape (n_features_in_,)",
        "Feature names seen during ``fit``, when ``X`` has string column names."),
    "n_connections_": Entry("list of int", "Connections (non-zero weights) of each layer."),
    "density_": Entry(
        "list of float", "Achieved density ``nnz / (n_in * n_out)`` of each layer."),
    "n_neurons_": Entry(
        "list of int", "Neurons of every layer, input first, after importance pruning."),
    "feature_importances_": Entry(
        "ndarray of shape (n_features_in_,)",
        "Strength of each input neuron: the sum of its absolute weights, normalised.",
        "The strengths sum to 1; inputs that SET disconnected score 0."),
    "network_": Entry("SparseMLP", "The trained network."),
}

# The arguments of the estimators' methods; ``y`` is the estimator's TARGETS entry.
ARGUMENTS = {
    "X": Entry("{array-like, sparse matrix} of shape (n_samples, n_features)",
               "The input samples."),
    "classes": Entry(
        "array-like of shape (n_classes,)", "Every class of the whole training run.",
        "Required on the first call, and if given later, it must be the same."),
    "sample_weight": Entry(
        "array-like of shape (n_samples,)", "Non-negative, with a positive sum.",
        "Relative: rescaled to mean 1 over the samples trained on, so a batch of "
        "zero-weight samples is an SGD step without data gradient."),
}

TARGETS = {
    "classifier": Entry(
        "array-like of shape (n_samples,) or (n_samples, n_labels)",
        "Labels, or a binary indicator matrix for multilabel classification."),
    "regressor": Entry(
        "array-like of shape (n_samples,) or (n_samples, n_targets)", "Target values."),
}


def _literal(value) -> str:
    # numpydoc's convention: strings in double quotes
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _wrap(text: str) -> list:
    # never break a line inside a ``literal``: protect its spaces while wrapping
    parts = re.split(r"(``.*?``)", text)
    text = "".join(p.replace(" ", "\0") if p.startswith("``") else p for p in parts)
    lines = textwrap.wrap(text, 76, initial_indent="    ", subsequent_indent="    ",
                          break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def _section(title: str, entries: dict, defaults: dict | None = None) -> str:
    lines = [title, "-" * len(title)]
    for name, entry in entries.items():
        head = f"{name} : {entry.type}"
        if name in (defaults or {}):
            head += f", default={_literal(defaults[name])}"
        lines.append(head)
        lines += _wrap(entry.summary + (" " + entry.details if entry.details else ""))
    return "\n".join(lines)


def _arguments(func) -> dict:
    """The parameters of ``func`` but ``self``, by name."""
    return {n: p for n, p in inspect.signature(func).parameters.items() if n != "self"}


def signature_defaults(cls: type) -> dict:
    """``{name: default}`` of the parameters of ``cls.__init__``."""
    return {n: p.default for n, p in _arguments(cls.__init__).items()}


def document(without: tuple = (), targets: str = "classifier"):
    """Class decorator: put the Parameters and Attributes sections into the docstrings.

    Every entry of :data:`ATTRIBUTES` is listed but those named in ``without``.
    The class docstring names the place with a ``%(sections)s`` line, each of the
    class's own methods that takes arguments with a ``%(parameters)s`` line (its
    arguments from :data:`ARGUMENTS`, ``y`` from ``TARGETS[targets]``). The
    defaults come from the signatures, so they cannot drift from them.
    """
    arguments = {**ARGUMENTS, "y": TARGETS[targets]}

    def decorate(cls):
        # a parameter without an entry is left out (tests/test_docstrings.py
        # reports it) rather than breaking the import
        defaults = {k: v for k, v in signature_defaults(cls).items() if k in PARAMETERS}
        sections = "\n\n".join([
            _section("Parameters", {k: PARAMETERS[k] for k in defaults}, defaults),
            _section("Attributes", {k: v for k, v in ATTRIBUTES.items() if k not in without})])
        cls.__doc__ = inspect.cleandoc(cls.__doc__).replace("%(sections)s", sections)
        for method in vars(cls).values():
            if inspect.isfunction(method) and "%(parameters)s" in (method.__doc__ or ""):
                params = _arguments(method)
                defaults = {n: p.default for n, p in params.items() if p.default is not p.empty}
                section = _section("Parameters", {n: arguments[n] for n in params}, defaults)
                doc = inspect.cleandoc(method.__doc__)
                method.__doc__ = doc.replace("%(parameters)s", section)
        return cls

    return decorate

"""
Sparse evolutionary training versus a static sparse topology versus dense
=========================================================================

SET starts from a random Erdős–Rényi graph and, after every epoch, replaces the
``zeta`` fraction of the weakest positive and negative weights of each hidden
layer by new random connections; with ``zeta=0`` the random topology stays as
it was drawn (a *static* sparse network). We train both, and a dense
:class:`~sklearn.neural_network.MLPClassifier` with the same layers and the
same optimiser (SGD, momentum 0.9, learning rate 0.01, batch 128), on a
Fashion-MNIST-shaped generated set (784 features, 10 classes:
:func:`sksparse_mlp.datasets.make_fashion_like`).
"""

# %%
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 40
N_TRAIN, N_TEST = (400, 200) if SMOKE else (2000, 1000)
HIDDEN = (300, 300)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X_train, X_test, y_train, y_test = make_fashion_like(N_TRAIN, N_TEST, random_state=0)
classes = np.unique(y_train)

# %%
# Three models, trained one epoch at a time with ``partial_fit``.
common = dict(hidden_layer_sizes=HIDDEN, learning_rate_init=0.01, momentum=0.9,
              alpha=1e-4, batch_size=128, random_state=0)
models = {
    "SET (zeta=0.3)": TrulySparseMLPClassifier(zeta=0.3, epsilon=20, **common),
    "static sparse (zeta=0)": TrulySparseMLPClassifier(zeta=0.0, epsilon=20, **common),
    "dense MLPClassifier (sgd)": MLPClassifier(solver="sgd", nesterovs_momentum=True,
                                               **common),
}
curves, summary = {}, {}
for label, model in models.items():
    start, scores = time.perf_counter(), []
    for _ in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=classes)
        scores.append(model.score(X_test, y_test))
    seconds = time.perf_counter() - start
    if hasattr(model, "n_connections_"):
        connections = sum(model.n_connections_)
    else:
        connections = sum(W.size for W in model.coefs_)
    curves[label] = scores
    summary[label] = (connections, seconds)
    print(f"{label:<28} final test accuracy {scores[-1]:.3f} (max {max(scores):.3f}), "
          f"{connections:>7,} connections, {seconds:.1f}s")

# %%
# Test accuracy per epoch, with the connection counts in the legend.
fig, ax = plt.subplots(figsize=(8, 4.8))
for (label, scores), color in zip(curves.items(), ["tab:red", "tab:orange", "black"]):
    connections, seconds = summary[label]
    ax.plot(range(1, EPOCHS + 1), scores, color=color, marker=".",
            label=f"{label}: {connections:,} weights, {seconds:.0f}s")
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title(f"Fashion-MNIST-shaped data, 784-{'-'.join(map(str, HIDDEN))}-10")
ax.legend(loc="lower right")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_set_vs_static_vs_dense.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

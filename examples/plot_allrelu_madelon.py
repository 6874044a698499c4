"""
All-ReLU versus ReLU versus leaky ReLU on Madelon-like data
===========================================================

All-ReLU is ``f(x) = x`` for ``x > 0`` and ``-s x`` in hidden layers 1, 3, ...
(``+s x`` in layers 2, 4, ...) otherwise: a fixed, non-trainable slope whose
sign alternates from one hidden layer to the next, so that negative inputs
still pass a gradient through the very sparse layers. We compare it, on the
paper's Madelon architecture (500-400-100-400-2, ``epsilon=10``, batch 32,
slope 0.5), with ReLU and with a leaky ReLU of the same slope magnitude but no
alternation. The data come from Guyon's Madelon generator
(:func:`sksparse_mlp.datasets.make_madelon`): 500 features of which 20 carry
signal, a problem no linear model solves.

Learning curves are recorded with ``partial_fit``: one call is one epoch, and
the SET topology update happens between calls exactly as in ``fit``.
"""

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_madelon

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 50
N_TRAIN, N_TEST = (300, 100) if SMOKE else (2000, 600)

X_train, X_test, y_train, y_test = make_madelon(N_TRAIN, N_TEST, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# Train the three variants, scoring the test set after every epoch.
activations = {"All-ReLU (slope 0.5, alternating sign)": "allrelu",
               "ReLU": "relu",
               "leaky ReLU (slope 0.5)": "leaky_relu"}
curves = {}
for label, activation in activations.items():
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(400, 100, 400), activation=activation,
                                   allrelu_slope=0.5, epsilon=10, batch_size=32,
                                   random_state=0)
    start, scores = time.perf_counter(), []
    for _ in range(EPOCHS):
        clf.partial_fit(X_train, y_train, classes=[0, 1])
        scores.append(clf.score(X_test, y_test))
    curves[label] = np.array(scores)
    print(f"{label:<40} max test accuracy {max(scores):.3f}, last {scores[-1]:.3f} "
          f"({time.perf_counter() - start:.1f}s, {sum(clf.n_connections_)} connections)")

# %%
# Test accuracy per epoch (thin lines) and its running mean over 5 epochs.
fig, ax = plt.subplots(figsize=(8, 4.8))
epochs = np.arange(1, EPOCHS + 1)
for (label, acc), color in zip(curves.items(), ["tab:red", "tab:blue", "tab:green"]):
    k = min(5, len(acc))
    smooth = np.convolve(acc, np.ones(k) / k, mode="valid")
    ax.plot(epochs, acc, color=color, alpha=0.3, lw=1)
    ax.plot(epochs[k - 1:], smooth, color=color, lw=2, label=f"{label}: max {acc.max():.3f}")
ax.axhline(0.5, color="gray", ls=":", lw=1)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title("Madelon-like data, 500-400-100-400-2, epsilon=10")
ax.legend(loc="lower right")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_allrelu_madelon.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

"""
Learning rate: sparse layers take smaller steps
===============================================

One SGD step changes the pre-activation of a unit by about
``learning_rate * delta * sum(a_i ** 2)`` over its inputs ``i``, so the size of a
step in function space grows with the fan-in. A unit of a sparse layer with
``epsilon=20`` has a few dozen inputs instead of several hundred, so at the
same learning rate plain momentum SGD moves the sparse network more slowly
than the dense one (the ``sparse_he`` initialisation keeps the *signals* at the
dense scale, not the steps). A somewhat larger ``learning_rate_init`` gives
it back its pace: here we train the sparse classifier and a dense
:class:`~sklearn.neural_network.MLPClassifier` with the same layers and the
same optimiser at three learning rates on a Fashion-MNIST-shaped generated set
(:func:`sksparse_mlp.datasets.make_fashion_like`, standardised).
"""

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 15
N_TRAIN, N_TEST = (400, 200) if SMOKE else (3000, 1000)
HIDDEN = (300, 300)
RATES = (0.01, 0.03, 0.1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X_train, X_test, y_train, y_test = make_fashion_like(N_TRAIN, N_TEST, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
classes = np.unique(y_train)

# %%
# Every model trains one epoch at a time with ``partial_fit``; test accuracy after each.
common = dict(hidden_layer_sizes=HIDDEN, momentum=0.9, alpha=1e-4, batch_size=128,
              random_state=0)


def accuracy_per_epoch(model):
    scores = []
    for _ in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=classes)
        scores.append(model.score(X_test, y_test))
    return scores


curves = {}
for lr in RATES:
    curves["sparse", lr] = accuracy_per_epoch(
        TrulySparseMLPClassifier(epsilon=20, learning_rate_init=lr, **common))
    curves["dense", lr] = accuracy_per_epoch(
        MLPClassifier(solver="sgd", nesterovs_momentum=True, learning_rate_init=lr, **common))
for (kind, lr), scores in curves.items():
    print(f"{kind:<6} lr {lr:<5} accuracy after epoch 1, 3, last: {scores[0]:.3f} "
          f"{scores[min(2, EPOCHS - 1)]:.3f} {scores[-1]:.3f}")

# %%
# Solid lines: sparse (``epsilon=20``); dashed: dense. One colour per learning rate.
fig, ax = plt.subplots(figsize=(8, 4.8))
for lr, color in zip(RATES, ["tab:blue", "tab:green", "tab:red"]):
    epochs = range(1, EPOCHS + 1)
    ax.plot(epochs, curves["sparse", lr], color=color, marker=".",
            label=f"sparse, learning_rate_init={lr}")
    ax.plot(epochs, curves["dense", lr], color=color, linestyle="--",
            label=f"dense MLPClassifier, learning_rate_init={lr}")
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title(f"Fashion-MNIST-shaped data, 784-{'-'.join(map(str, HIDDEN))}-10, momentum SGD")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_learning_rate.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

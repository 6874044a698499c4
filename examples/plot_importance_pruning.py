"""
Importance pruning: hidden neurons shrink away during training
==============================================================

The importance of a hidden neuron is the sum of the absolute values of its
incoming weights. With ``importance_pruning=True``, every
``pruning_interval`` epochs from ``pruning_start`` on, the neurons at or below
the ``pruning_percentile``-th percentile of their layer lose all their inputs
and are removed from the weight matrices: the layers really shrink, and so do
memory and training time. We follow the neurons left in each hidden layer
epoch by epoch, and compare the test accuracy with the same network trained
without pruning, on the Fashion-MNIST-shaped generated set.
"""

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 4 if SMOKE else 40
N_TRAIN, N_TEST = (400, 200) if SMOKE else (3000, 1000)
HIDDEN = (500, 300, 200)

X_train, X_test, y_train, y_test = make_fashion_like(N_TRAIN, N_TEST, random_state=0)
classes = np.unique(y_train)

# %%
# Train with and without pruning, one epoch per ``partial_fit`` call, and
# record test accuracy, neurons per hidden layer and connections.
settings = dict(hidden_layer_sizes=HIDDEN, epsilon=20, random_state=0)
START, INTERVAL, PERCENTILE = (2, 1, 10) if SMOKE else (10, 5, 10)
pruned = TrulySparseMLPClassifier(importance_pruning=True, pruning_start=START,
                                  pruning_interval=INTERVAL, pruning_percentile=PERCENTILE,
                                  **settings)
baseline = TrulySparseMLPClassifier(importance_pruning=False, **settings)
history = {"pruned": [], "baseline": []}
for name, model in (("pruned", pruned), ("baseline", baseline)):
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=classes)
        history[name].append(dict(accuracy=model.score(X_test, y_test),
                                  neurons=list(model.n_neurons_[1:-1]),
                                  connections=sum(model.n_connections_)))
    last = history[name][-1]
    print(f"{name:<9} test accuracy {last['accuracy']:.3f}, hidden neurons "
          f"{'-'.join(map(str, last['neurons']))}, {last['connections']:,} connections, "
          f"{time.perf_counter() - start:.1f}s")

# %%
# Neurons left per hidden layer, and test accuracy, over the epochs.
epochs = np.arange(1, EPOCHS + 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
neurons = np.array([h["neurons"] for h in history["pruned"]])
for layer, color in zip(range(neurons.shape[1]), ["tab:blue", "tab:orange", "tab:green"]):
    axes[0].step(epochs, neurons[:, layer], where="post", color=color, lw=2,
                 label=f"hidden layer {layer + 1} ({HIDDEN[layer]} at the start)")
conns = [h["connections"] for h in history["pruned"]]
ax2 = axes[0].twinx()
ax2.plot(epochs, conns, color="gray", ls="--", label="connections (right axis)")
ax2.set_ylabel("connections, all layers")
ax2.set_ylim(0, max(conns) * 1.05)
axes[0].set_ylim(0, max(HIDDEN) * 1.05)
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("neurons left")
axes[0].set_title(f"Importance pruning: {PERCENTILE}th percentile every {INTERVAL} epochs "
                  f"from epoch {START}")
lines = axes[0].get_legend_handles_labels()
lines2 = ax2.get_legend_handles_labels()
axes[0].legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower left")
for name, color in (("baseline", "black"), ("pruned", "tab:red")):
    acc = [h["accuracy"] for h in history[name]]
    axes[1].plot(epochs, acc, color=color, marker=".",
                 label=f"{'with' if name == 'pruned' else 'without'} pruning: "
                       f"final {acc[-1]:.3f}")
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("test accuracy")
axes[1].set_title(f"784-{'-'.join(map(str, HIDDEN))}-10 on Fashion-MNIST-shaped data")
axes[1].legend(loc="lower right")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_importance_pruning.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

"""
Topology of a trained layer: connections per neuron
===================================================

An Erdős–Rényi layer starts with every possible connection present with the
same probability, so every input neuron has about the same number of
connections. Sparse evolutionary training (SET) then removes the weakest
weights after every epoch and regrows as many at random places; with an L2
penalty strong enough to shrink the weights nobody trains, the connections
pile up on the inputs that matter. We watch this on a generated set with the
shape of the Lung microarray data (203 samples x 3312 genes, 5 classes, of
which 300 genes carry class information:
:func:`sksparse_mlp.datasets.make_lung_like`), following the first layer
(3312 -> 200) epoch by epoch: connections per gene, informative or not, and
connections per hidden neuron.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_lung_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 3 if SMOKE else 100

X, y, informative = make_lung_like(random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
is_informative = np.zeros(X.shape[1], dtype=bool)
is_informative[informative] = True


def out_degree(W):
    """Connections leaving each input neuron (a row of the CSR matrix)."""
    return np.diff(W.tocsr().indptr)


def in_degree(W):
    """Connections entering each hidden neuron (a column)."""
    return np.bincount(W.tocsr().indices, minlength=W.shape[1])


# %%
# Train one epoch per ``partial_fit`` call and record the first layer.
# ``alpha=3`` with batches of 16 decays an untrained weight by about 2 % per
# epoch here, so SET's magnitude pruning finds the useless connections.
clf = TrulySparseMLPClassifier(hidden_layer_sizes=(200,), epsilon=10, alpha=3.0,
                               batch_size=16, random_state=0)
classes = np.unique(y_train)
mean_degree = {"informative": [], "other": []}
for epoch in range(EPOCHS):
    clf.partial_fit(X_train, y_train, classes=classes)
    if epoch == 0:
        W_start = clf.coefs_[0].copy()
    d = out_degree(clf.coefs_[0])
    mean_degree["informative"].append(d[is_informative].mean())
    mean_degree["other"].append(d[~is_informative].mean())
W_end = clf.coefs_[0]
print(f"test accuracy {clf.score(X_test, y_test):.3f} (majority class "
      f"{np.bincount(y_test).max() / len(y_test):.3f}); first layer {W_end.shape[0]} x "
      f"{W_end.shape[1]}, {W_end.nnz} connections (density {clf.density_[0]:.3f})")
for name, W in (("after epoch 1", W_start), (f"after epoch {EPOCHS}", W_end)):
    d = out_degree(W)
    print(f"{name:<16} connections per gene: informative {d[is_informative].mean():.1f}, "
          f"other {d[~is_informative].mean():.1f}")
top = np.argsort(clf.feature_importances_)[::-1][:informative.size]
print(f"{is_informative[top].mean():.0%} of the {informative.size} most important inputs "
      f"are informative genes ({informative.size / X.shape[1]:.0%} by chance)")

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
ax = axes[0, 0]
epochs = np.arange(1, EPOCHS + 1)
ax.plot(epochs, mean_degree["informative"], color="tab:red",
        label=f"{informative.size} informative genes")
ax.plot(epochs, mean_degree["other"], color="tab:gray",
        label=f"{X.shape[1] - informative.size} other genes")
ax.set_xlabel("epoch")
ax.set_ylabel("mean connections per gene")
ax.set_title("SET moves connections to the informative genes")
ax.legend()
ax = axes[0, 1]
bins = np.arange(0, out_degree(W_end).max() + 2)
ax.hist(out_degree(W_end)[~is_informative], bins=bins, density=True, alpha=0.6,
        color="tab:gray", label="other genes")
ax.hist(out_degree(W_end)[is_informative], bins=bins, density=True, alpha=0.6,
        color="tab:red", label="informative genes")
ax.set_xlabel(f"connections of a gene after epoch {EPOCHS}")
ax.set_ylabel("share of genes")
ax.set_title("Connections per input neuron")
ax.legend()
ax = axes[1, 0]
bins = np.arange(0, max(in_degree(W_start).max(), in_degree(W_end).max()) + 10, 5)
ax.hist(in_degree(W_start), bins=bins, alpha=0.6, label="after epoch 1")
ax.hist(in_degree(W_end), bins=bins, alpha=0.6, label=f"after epoch {EPOCHS}")
ax.set_xlabel("incoming connections of a hidden neuron")
ax.set_ylabel("hidden neurons")
ax.set_title("Connections per hidden neuron")
ax.legend()
ax = axes[1, 1]
order = np.argsort(~is_informative, kind="stable")  # informative genes first
sub = W_end.tocsr()[order[:600]]
rows, cols = sub.nonzero()
ax.scatter(cols, rows, s=0.5, color="black")
ax.axhline(informative.size - 0.5, color="tab:red", lw=1)
ax.set_ylim(600, 0)
ax.set_xlabel("hidden neuron")
ax.set_ylabel("gene (informative above the red line)")
ax.set_title(f"Sparsity pattern after epoch {EPOCHS} (600 genes)")
fig.suptitle("First layer of a 3312-200-5 SET network on Lung-shaped data "
             "(epsilon=10, alpha=3)")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_topology.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

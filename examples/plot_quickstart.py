"""
Quickstart: a truly sparse MLP in a scikit-learn Pipeline
=========================================================

:class:`~sksparse_mlp.TrulySparseMLPClassifier` is a drop-in replacement for
:class:`~sklearn.neural_network.MLPClassifier`: it takes the same parameters,
fits inside a :class:`~sklearn.pipeline.Pipeline`, and predicts as usual. Its
weight matrices are ``scipy.sparse`` arrays for the whole of training, with an
Erdős–Rényi topology (``epsilon``) that sparse evolutionary training (SET)
rewires after every epoch.
"""

# %%
# Setup: smoke mode (for the test suite) and where the figure goes.
import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 3 if SMOKE else 60

# %%
# Fit a pipeline: scaling, then the sparse network.
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

model = make_pipeline(
    StandardScaler(),
    TrulySparseMLPClassifier(hidden_layer_sizes=(256, 256), epsilon=20, max_iter=EPOCHS,
                             random_state=0),
)
model.fit(X_train, y_train)
print(f"test accuracy: {model.score(X_test, y_test):.3f}")

# %%
# The fitted network reports its sparsity: connections, achieved density and
# neurons per layer. ``coefs_`` are CSR matrices.
mlp = model[-1]
for i, (W, nnz, d) in enumerate(zip(mlp.coefs_, mlp.n_connections_, mlp.density_)):
    print(f"layer {i + 1}: {W.shape[0]:>3} -> {W.shape[1]:<3} {type(W).__name__}, "
          f"{nnz:>6} connections, density {d:.3f}")
dense = sum(W.shape[0] * W.shape[1] for W in mlp.coefs_)
print(f"{sum(mlp.n_connections_)} connections in all, {dense} for the dense network")

# %%
# Training loss and the confusion matrix on the test set.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
axes[0].plot(range(1, len(mlp.loss_curve_) + 1), mlp.loss_curve_)
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss")
axes[0].set_yscale("log")
axes[0].set_title(f"{sum(mlp.n_connections_):,} of {dense:,} possible connections "
                  f"({100 * sum(mlp.n_connections_) / dense:.0f}%)")
ConfusionMatrixDisplay.from_estimator(model, X_test, y_test, ax=axes[1], colorbar=False)
axes[1].set_title(f"test accuracy {model.score(X_test, y_test):.3f}")
fig.suptitle("TrulySparseMLPClassifier(hidden_layer_sizes=(256, 256)) on load_digits")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_quickstart.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

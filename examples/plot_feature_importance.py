"""
Input-feature importance on the digits, as an 8 x 8 image
=========================================================

After training, the strength of an input neuron is the sum of the absolute
values of its outgoing connections; the classifier exposes it, normalised, as
``feature_importances_``. With sparse evolutionary training the first layer
also *moves* its connections: SET removes the weakest weights after every
epoch and regrows as many at random, so pixels that carry no information lose
connections over time while informative ones keep theirs. Shown as 8 x 8
images on ``load_digits``: the importances, the number of connections each
pixel has left, and the pixel standard deviation of the data for reference
(the border pixels are constant).
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 3 if SMOKE else 60

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)

# %%
# A first layer with few connections per pixel (``epsilon=4``: about 1,300 of
# the 16,384 possible ones) makes the rewiring easy to see.
clf = TrulySparseMLPClassifier(hidden_layer_sizes=(256,), epsilon=4, alpha=1.0,
                               batch_size=32, max_iter=EPOCHS, n_iter_no_change=EPOCHS,
                               random_state=0)
clf.fit(scaler.transform(X_train), y_train)
print(f"test accuracy {clf.score(scaler.transform(X_test), y_test):.3f}, "
      f"first layer {clf.n_connections_[0]} connections")

importance = clf.feature_importances_.reshape(8, 8)
degree = np.diff(clf.coefs_[0].indptr).reshape(8, 8)  # connections per input pixel
pixel_std = X_train.std(axis=0).reshape(8, 8)
top = np.argsort(clf.feature_importances_)[::-1][:5]
print("most important pixels (row, column):", [divmod(int(i), 8) for i in top])
print(f"connections left on the always-blank pixels: "
      f"{degree.ravel()[pixel_std.ravel() == 0].tolist()} "
      f"(average over all pixels {degree.mean():.1f})")
print(f"correlation of importance with pixel standard deviation: "
      f"{np.corrcoef(importance.ravel(), pixel_std.ravel())[0, 1]:.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
panels = [(importance, "feature_importances_", "viridis"),
          (degree, "connections per input pixel after SET", "magma"),
          (pixel_std, "pixel standard deviation (data)", "gray")]
for ax, (img, title, cmap) in zip(axes, panels):
    im = ax.imshow(img, cmap=cmap)
    ax.set_title(title)
    ax.set_xticks(range(8))
    ax.set_yticks(range(8))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
fig.suptitle("Input importance of a sparse MLP (64-256-10, epsilon=4, alpha=1) on load_digits")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_feature_importance.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

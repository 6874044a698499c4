"""
Adam versus SGD, and gradient-guided versus random regrowth
===========================================================

Two options that change how a truly sparse network learns:

* ``solver="adam"`` scales every connection's step by its own gradient history,
  so the small fan-in of a sparse unit (which makes plain SGD slow at the same
  learning rate, see ``plot_learning_rate.py``) matters less;
* ``regrow="gradient"`` grows SET's new connections where the loss gradient is
  largest among a random sample of empty positions (RigL-style), the gradient
  being computed at those candidates only, never as a dense matrix.

We train the four combinations on a Fashion-MNIST-shaped generated set
(:func:`sksparse_mlp.datasets.make_fashion_like`) one epoch at a time and plot
the test accuracy per epoch.
"""

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 15
N_TRAIN, N_TEST = (400, 200) if SMOKE else (3000, 1000)
HIDDEN = (300, 300)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X_train, X_test, y_train, y_test = make_fashion_like(N_TRAIN, N_TEST, random_state=0)
classes = np.unique(y_train)

# %%
# ``partial_fit`` trains one epoch (SET runs between two calls). Adam gets
# scikit-learn's default step, 0.001; SGD the paper's, 0.01.
VARIANTS = {
    "SGD, random regrowth (default)": dict(),
    "SGD, gradient regrowth": dict(regrow="gradient"),
    "Adam, random regrowth": dict(solver="adam", learning_rate_init=0.001),
    "Adam, gradient regrowth": dict(solver="adam", learning_rate_init=0.001,
                                    regrow="gradient"),
}
curves = {}
for name, params in VARIANTS.items():
    model = TrulySparseMLPClassifier(hidden_layer_sizes=HIDDEN, epsilon=20, batch_size=128,
                                     random_state=0, **params)
    scores = []
    for _ in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=classes)
        scores.append(model.score(X_test, y_test))
    curves[name] = scores
    print(f"{name:<32} accuracy after epoch 1, 3, last: {scores[0]:.3f} "
          f"{scores[min(2, EPOCHS - 1)]:.3f} {scores[-1]:.3f}")

# %%
# Blue: SGD, red: Adam; solid: random regrowth, dashed: gradient regrowth.
fig, ax = plt.subplots(figsize=(8, 4.8))
styles = {"SGD, random regrowth (default)": ("tab:blue", "-"),
          "SGD, gradient regrowth": ("tab:blue", "--"),
          "Adam, random regrowth": ("tab:red", "-"),
          "Adam, gradient regrowth": ("tab:red", "--")}
for name, scores in curves.items():
    color, line = styles[name]
    ax.plot(range(1, EPOCHS + 1), scores, color=color, linestyle=line, marker=".", label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title(f"Fashion-MNIST-shaped data, 784-{'-'.join(map(str, HIDDEN))}-10, epsilon 20")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_adam_and_regrowth.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

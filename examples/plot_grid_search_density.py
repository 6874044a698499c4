"""
Grid search over the sparsity level: accuracy versus density
============================================================

Because the sparsity of every layer is an ordinary hyper-parameter
(``density`` in (0, 1], or the Erdős–Rényi ``epsilon``), the usual
scikit-learn tools can search it. Here :class:`~sklearn.model_selection.GridSearchCV`
cross-validates a pipeline over seven densities, from 1 % of the connections
to the full dense graph, and we plot accuracy against density. Training time
grows with the number of connections, so the curve also shows how much
accuracy each extra connection buys. (The fit times printed below include
numba's start-up in each of the two worker processes for the first densities.)
"""

# %%
import os
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sksparse_mlp import TrulySparseMLPClassifier

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 30
DENSITIES = [0.02, 0.2, 1.0] if SMOKE else [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
N_JOBS = 1 if SMOKE else 2  # two worker processes cost a few seconds to start
warnings.filterwarnings("ignore", category=ConvergenceWarning)

# %%
# A pipeline and a grid over ``density`` (the same for every layer).
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
pipe = Pipeline([
    ("scale", StandardScaler()),
    ("mlp", TrulySparseMLPClassifier(hidden_layer_sizes=(256, 256), max_iter=EPOCHS,
                                     random_state=0)),
])
search = GridSearchCV(pipe, {"mlp__density": DENSITIES}, cv=3, n_jobs=N_JOBS)
search.fit(X_train, y_train)
print("best:", search.best_params_, f"cv accuracy {search.best_score_:.3f}, "
      f"test accuracy {search.score(X_test, y_test):.3f}")

# %%
# Accuracy against density (log scale); the top axis gives the connections.
res = search.cv_results_
mean, std = res["mean_test_score"], res["std_test_score"]
fit_time = res["mean_fit_time"]
sizes = [64, 256, 256, 10]
dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
for d, m, s, t in zip(DENSITIES, mean, std, fit_time):
    print(f"density {d:<5} connections ~{int(d * dense):>6}  cv accuracy {m:.3f} +- {s:.3f}  "
          f"fit {t:.1f}s")

fig, ax = plt.subplots(figsize=(7.5, 4.8))
ax.errorbar(DENSITIES, mean, yerr=std, marker="o", capsize=3, label="mean +- std over 3 folds")
best = search.best_params_["mlp__density"]
ax.axvline(best, color="tab:red", ls=":", label=f"best density {best}")
ax.set_xscale("log")
ax.set_xlabel("density (fraction of possible connections, log scale)")
ax.set_ylabel("3-fold CV accuracy")
ax.set_title("Accuracy versus density, 64-256-256-10 on load_digits", pad=28)
ax.legend(loc="lower right")
top = ax.secondary_xaxis("top", functions=(lambda d: d * dense, lambda c: c / dense))
top.set_xlabel("connections")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_grid_search_density.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

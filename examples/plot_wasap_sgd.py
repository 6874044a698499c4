"""
WASAP-SGD: data-parallel training over MPI workers (``n_workers=2``)
====================================================================

With ``n_workers > 1``, ``fit`` spawns that many MPI worker processes itself
(mpi4py's ``COMM_SELF.Spawn`` from a plain ``python`` process: no
``mpiexec``) and trains with WASAP-SGD. Each worker holds a shard of the data.
In phase 1 (``phase1_fraction`` of the epochs) the workers send sparse
gradients to a parameter server in the calling process, which owns the
momentum and runs importance pruning and SET at each epoch end; in phase 2
the workers train locally with their own SET, and the server averages their
models over the union of their connections and prunes back to its connection
count. ``worker_mode="sync"`` averages the workers' gradients in lock-step
instead, and is reproducible run to run.

This needs the ``mpi`` extra: ``pip install "sksparse_mlp[mpi]"`` (mpi4py and
MPICH from PyPI). On a 2-core machine two workers plus the server compete for
the cores, so do not expect a speed-up here; the point is that the same
estimator scales out, on more cores or on the nodes of an MPI cluster
(``mpi_info={"hosts": ...}``).
"""

# %%
import os
import time
import warnings

import matplotlib.pyplot as plt
from sklearn.exceptions import ConvergenceWarning

from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.datasets import make_fashion_like

SMOKE = os.environ.get("SKSPARSE_MLP_SMOKE", "0") not in ("", "0")
OUTPUT_DIR = os.environ.get("SKSPARSE_MLP_OUTPUT_DIR", os.path.join("out", "examples"))
EPOCHS = 2 if SMOKE else 20
N_TRAIN, N_TEST = (400, 200) if SMOKE else (4000, 1000)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X_train, X_test, y_train, y_test = make_fashion_like(N_TRAIN, N_TEST, random_state=0)

# %%
# The same estimator, trained locally and over two MPI workers.
runs = {
    "n_workers=1 (local)": dict(n_workers=1),
    "n_workers=2, async WASAP-SGD": dict(n_workers=2, worker_mode="async"),
    "n_workers=2, sync": dict(n_workers=2, worker_mode="sync"),
}
results = {}
for label, extra in runs.items():
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(300, 300), epsilon=20,
                                   max_iter=EPOCHS, random_state=0, **extra)
    start = time.perf_counter()
    try:
        clf.fit(X_train, y_train)
    except (ImportError, RuntimeError) as exc:  # no MPI here: say so and go on
        print(f"{label}: skipped ({exc})")
        continue
    seconds = time.perf_counter() - start
    results[label] = dict(accuracy=clf.score(X_test, y_test), seconds=seconds,
                          loss=list(clf.loss_curve_), connections=sum(clf.n_connections_))
    print(f"{label:<30} test accuracy {results[label]['accuracy']:.3f}, {seconds:.1f}s "
          f"(spawn included), {results[label]['connections']:,} connections")

# %%
# Training loss per epoch, and accuracy / wall time of each run.
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
colors = ["black", "tab:blue", "tab:orange"]
for (label, r), color in zip(results.items(), colors):
    axes[0].plot(range(1, len(r["loss"]) + 1), r["loss"], color=color, label=label)
if len(results) > 1:
    phase2 = TrulySparseMLPClassifier().phase1_fraction * EPOCHS + 0.5
    axes[0].axvline(phase2, color="gray", ls=":", lw=1)
    axes[0].text(phase2 + 0.2, axes[0].get_ylim()[1] * 0.98, "phase 2", color="gray", va="top")
axes[0].set_xlabel("epoch (server epochs for n_workers=2)")
axes[0].set_ylabel("training loss")
axes[0].set_title("Training loss")
axes[0].legend()
labels = list(results)
axes[1].bar(range(len(labels)), [results[k]["accuracy"] for k in labels],
            color=colors[:len(labels)])
for i, k in enumerate(labels):
    axes[1].text(i, results[k]["accuracy"] + 0.01,
                 f"{results[k]['accuracy']:.3f}\n{results[k]['seconds']:.1f}s", ha="center")
axes[1].set_xticks(range(len(labels)), [k.replace(", ", "\n") for k in labels])
axes[1].set_ylim(0, 1.05)
axes[1].set_ylabel("test accuracy (label: accuracy and wall time)")
axes[1].set_title("784-300-300-10 on Fashion-MNIST-shaped data")
fig.tight_layout()

os.makedirs(OUTPUT_DIR, exist_ok=True)
path = os.path.join(OUTPUT_DIR, "plot_wasap_sgd.png")
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")

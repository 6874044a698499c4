"""Writes the saved-model fixtures of this folder; run once, on the released code.

The files were made by sksparse_mlp 0.1.0 (commit c815656) with
``python tests/data/models-0.1.0/make.py``; ``tests/test_saved_models.py``
loads them with today's code and expects the same predictions. Do not
regenerate them with newer code: that would test nothing.
"""
import csv
import os
import pickle
import sys

import numpy as np

import sksparse_mlp
from sksparse_mlp import TrulySparseMLPClassifier, TrulySparseMLPRegressor, cli

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6)).astype(np.float32)
    y_clf = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    y_reg = (X[:, 0] - 2 * X[:, 2]).astype(np.float64)
    # importance pruning and SET have changed the network: the pickle holds an
    # evolved topology, the optimizer's state and the label binarizer
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(12, 8), max_iter=6, epsilon=2,
                                   importance_pruning=True, pruning_start=2,
                                   pruning_interval=2, random_state=0).fit(X, y_clf)
    reg = TrulySparseMLPRegressor(hidden_layer_sizes=(10,), max_iter=6, density=0.5,
                                  random_state=0).fit(X, y_reg)
    for name, model in (("classifier.pkl", clf), ("regressor.pkl", reg)):
        with open(os.path.join(HERE, name), "wb") as f:
            pickle.dump(model, f, protocol=4)
    data = os.path.join(HERE, "toy.csv")
    with open(data, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([f"f{j}" for j in range(X.shape[1])] + ["label"])
        for row, t in zip(X, y_clf):
            w.writerow([f"{v:.5f}" for v in row] + [t])
    bundle = os.path.join(HERE, "cli-model.joblib")
    code = cli.main(["train", data, "-t", "label", "-o", bundle, "-q", "--hidden-layer-sizes",
                     "8", "--max-iter", "4", "--random-state", "0",
                     "--metrics", os.devnull])
    assert code == 0
    np.savez(os.path.join(HERE, "expected.npz"), X=X, clf_predict=clf.predict(X),
             clf_proba=clf.predict_proba(X), reg_predict=reg.predict(X),
             version=sksparse_mlp.__version__)
    sys.stdout.flush()
    code = cli.main(["predict", bundle, data, "--proba", "-o",
                     os.path.join(HERE, "cli-predictions.csv")])
    assert code == 0


if __name__ == "__main__":
    main()

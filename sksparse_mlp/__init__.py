"""Truly sparse multilayer perceptrons for scikit-learn.

Weights are ``scipy.sparse`` matrices for the whole of training: sparse
evolutionary training (SET), the All-ReLU activation, importance pruning of
hidden neurons and WASAP-SGD data-parallel training over MPI.
"""
from ._estimators import TrulySparseMLPClassifier, TrulySparseMLPRegressor
from ._version import __version__

__all__ = ["TrulySparseMLPClassifier", "TrulySparseMLPRegressor", "__version__"]

"""Offline data sets with the shape of the paper's.

Nothing here downloads anything. The generators give data with the *shape*
of the sets used in "Truly Sparse Neural Networks at Scale" (Madelon,
Fashion-MNIST, the Lung gene-expression set), made up on the spot from a seed.
(The command line's loaders of user files live in ``sksparse_mlp.cli``; their
old names here still work, with a DeprecationWarning.)

Generators
----------
make_madelon
    Guyon's Madelon generator (:func:`sklearn.datasets.make_classification`):
    500 features, 5 informative, 15 redundant, 2 classes, 2000 + 600 samples.
make_fashion_like
    28 x 28 "images" in [0, 1] (784 features), 10 classes built from shared
    smooth parts, random shifts and noise: learnable, not trivial.
make_lung_like
    203 samples x 3312 "genes", 5 unbalanced classes (139/17/21/20/6).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

__all__ = [
    "make_fashion_like",
    "make_lung_like",
    "make_madelon",
]


# --------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------
def make_madelon(n_train: int = 2000, n_test: int = 600, *, n_features: int = 500,
                 n_informative: int = 5, n_redundant: int = 15, flip_y: float = 0.01,
                 class_sep: float = 1.0, random_state=None) -> list:
    """Madelon-like two-class problem from Guyon's generator, split into train/test.

    Madelon (NIPS 2003 feature-selection challenge) places 32 Gaussian clusters
    on the vertices of a five-dimensional hypercube, labels them at random
    (16 clusters per class), adds 15 linear combinations of the 5 informative
    features and pads with noise features up to 500. This is exactly what
    :func:`sklearn.datasets.make_classification` generates with the settings
    below, so the problem is XOR-like: no single feature and no linear model
    solves it.

    Parameters
    ----------
    n_train : int, default=2000
        Number of training samples (Madelon's training set has 2000).
    n_test : int, default=600
        Number of test samples (Madelon's validation set has 600).
    n_features : int, default=500
        Total number of features.
    n_informative : int, default=5
        Number of informative features (dimension of the hypercube).
    n_redundant : int, default=15
        Number of random linear combinations of the informative features.
    flip_y : float, default=0.01
        Fraction of labels flipped at random.
    class_sep : float, default=1.0
        Half the side of the hypercube; larger is easier.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    X_train : ndarray of shape (n_train, n_features), float64
    X_test : ndarray of shape (n_test, n_features), float64
    y_train : ndarray of shape (n_train,), int64 in {0, 1}
    y_test : ndarray of shape (n_test,), int64 in {0, 1}

    The split is stratified. Scale the features (e.g. ``StandardScaler``)
    before training a network.

    Examples
    --------
    >>> from sksparse_mlp.datasets import make_madelon
    >>> X_train, X_test, y_train, y_test = make_madelon(random_state=0)
    >>> X_train.shape, X_test.shape
    ((2000, 500), (600, 500))
    >>> sorted(set(y_train.tolist()))
    [0, 1]
    """
    n_train, n_test = _check_count(n_train, "n_train"), _check_count(n_test, "n_test")
    n_clusters = max(1, 2 ** n_informative // 2)
    rs = check_random_state(random_state)
    X, y = make_classification(
        n_samples=n_train + n_test, n_features=n_features,
        n_informative=n_informative, n_redundant=n_redundant, n_repeated=0,
        n_classes=2, n_clusters_per_class=n_clusters, flip_y=flip_y,
        class_sep=class_sep, hypercube=True, shuffle=True, random_state=rs)
    return train_test_split(X, y.astype(np.int64), train_size=n_train,
                            test_size=n_test, stratify=y, random_state=rs)


def make_fashion_like(n_train: int = 6000, n_test: int = 1000, *, n_classes: int = 10,
                      noise: float = 0.08, random_state=None) -> tuple:
    """A generated set with the shape of Fashion-MNIST: 784 features in [0, 1], 10 classes.

    Each class is drawn from a few "styles"; a style is a non-negative mix of
    smooth blob-shaped parts on a 28 x 28 grid, and groups of classes share
    most of their parts (as shirts, T-shirts and pullovers do). Each sample
    jitters the part strengths, shifts the image by up to 2 pixels, rescales
    the brightness and adds pixel noise. The result is learnable but not
    trivial: with 6000 training samples a logistic regression reaches about
    0.78 test accuracy and a one-hidden-layer MLP about 0.83-0.87.

    Parameters
    ----------
    n_train : int, default=6000
        Number of training samples.
    n_test : int, default=1000
        Number of test samples.
    n_classes : int, default=10
        Number of classes.
    noise : float, default=0.08
        Standard deviation of the additive pixel noise (before clipping).
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data (both the class prototypes
        and the samples).

    Returns
    -------
    X_train : ndarray of shape (n_train, 784), float32 in [0, 1]
    X_test : ndarray of shape (n_test, 784), float32 in [0, 1]
    y_train : ndarray of shape (n_train,), int64
    y_test : ndarray of shape (n_test,), int64

    Examples
    --------
    >>> from sksparse_mlp.datasets import make_fashion_like
    >>> X_train, X_test, y_train, y_test = make_fashion_like(500, 100, random_state=0)
    >>> X_train.shape, X_test.shape, X_train.dtype
    ((500, 784), (100, 784), dtype('float32'))
    >>> bool(X_train.min() >= 0 and X_train.max() <= 1)
    True
    >>> len(set(y_train.tolist()))
    10
    """
    n_train, n_test = _check_count(n_train, "n_train"), _check_count(n_test, "n_test")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    rng = np.random.default_rng(_seed_from(random_state))
    n_parts, n_styles, side, shift = 32, 3, 28, 2
    # smooth parts: 1-3 rotated anisotropic Gaussian blobs each
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    parts = np.zeros((n_parts, side, side))
    for k in range(n_parts):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(5, side - 5, 2)
            sy, sx = rng.uniform(1.0, 6.0, 2)
            th = rng.uniform(0, np.pi)
            c, s = np.cos(th), np.sin(th)
            u = c * (xx - cx) + s * (yy - cy)
            v = -s * (xx - cx) + c * (yy - cy)
            parts[k] += np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
        parts[k] /= parts[k].max()
    parts = parts.reshape(n_parts, side * side)
    n_families = max(2, int(n_classes) * 2 // 5)
    family = rng.random((n_families, n_parts)) < 0.25
    styles = np.empty((int(n_classes), n_styles, n_parts))
    for c in range(int(n_classes)):
        for s in range(n_styles):
            base = family[c % n_families] * rng.uniform(0.4, 1.0, n_parts)
            own = (rng.random(n_parts) < 0.16) * rng.uniform(0.3, 0.9, n_parts)
            styles[c, s] = base + own

    n = n_train + n_test
    y = rng.integers(0, int(n_classes), n)
    style = rng.integers(0, n_styles, n)
    Z = styles[y, style] * rng.lognormal(0.0, 0.35, (n, n_parts))
    Z += np.clip(rng.normal(0.0, 0.1, (n, n_parts)), 0, None)
    X = (Z @ parts).reshape(n, side, side)
    offsets = rng.integers(-shift, shift + 1, (n, 2))
    for a in range(-shift, shift + 1):
        for b in range(-shift, shift + 1):
            m = (offsets[:, 0] == a) & (offsets[:, 1] == b)
            if m.any():
                X[m] = np.roll(X[m], (a, b), axis=(1, 2))
    X = X.reshape(n, side * side)
    scale = np.quantile(X, 0.99, axis=1, keepdims=True)
    X = X / np.maximum(scale, 1e-12) * rng.uniform(0.6, 1.0, (n, 1))
    X += rng.normal(0.0, float(noise), X.shape)
    np.clip(X, 0.0, 1.0, out=X)
    X = X.astype(np.float32)
    y = y.astype(np.int64)
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


#: class sizes of the Lung gene-expression set (scikit-feature repository)
LUNG_CLASS_SIZES = (139, 17, 21, 20, 6)


def make_lung_like(n_samples: int = 203, n_features: int = 3312, *, n_informative: int = 300,
                   n_factors: int = 20, effect: float = 1.0, random_state=None) -> tuple:
    """A generated set with the shape of the Lung microarray set: 203 x 3312, 5 classes.

    Samples are log2-expression-like values: a per-gene baseline, a low-rank
    correlated part (``n_factors`` latent factors, as co-regulated genes
    give), a class-specific shift on ``n_informative`` genes and gene-wise
    noise. Classes are unbalanced in the proportions of the real set
    (139 / 17 / 21 / 20 / 6 for 203 samples), which makes it a small-n,
    large-p problem where sparse input layers and feature importance matter.

    Parameters
    ----------
    n_samples : int, default=203
        Number of samples (class sizes scale with it; every class keeps at
        least 2 samples).
    n_features : int, default=3312
        Number of genes.
    n_informative : int, default=300
        Number of genes whose mean differs between classes (each class
        shifts a random third of them).
    n_factors : int, default=20
        Rank of the correlated part shared by all genes.
    effect : float, default=1.0
        Size of the class shifts relative to the gene-wise noise. With the
        defaults a standardised logistic regression reaches about 0.89
        cross-validated accuracy (0.69 is the majority class).
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        Not centred: standardise before training.
    y : ndarray of shape (n_samples,), int64 in {0, ..., 4}
    informative : ndarray of shape (n_informative,), int64
        Indices of the genes that carry class information (for checking
        feature importances).

    Examples
    --------
    >>> import numpy as np
    >>> from sksparse_mlp.datasets import make_lung_like
    >>> X, y, informative = make_lung_like(random_state=0)
    >>> X.shape, np.bincount(y).tolist()
    ((203, 3312), [139, 17, 21, 20, 6])
    """
    n_samples = _check_count(n_samples, "n_samples")
    n_features = _check_count(n_features, "n_features")
    if n_samples < 2 * len(LUNG_CLASS_SIZES):
        raise ValueError(f"n_samples must be >= {2 * len(LUNG_CLASS_SIZES)}, got {n_samples}")
    n_informative = min(int(n_informative), n_features)
    rng = np.random.default_rng(_seed_from(random_state))
    sizes = np.asarray(LUNG_CLASS_SIZES, dtype=float) * n_samples / sum(LUNG_CLASS_SIZES)
    sizes = np.maximum(2, np.floor(sizes)).astype(int)
    sizes[0] += n_samples - sizes.sum()
    y = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(y)

    baseline = rng.normal(7.0, 1.5, n_features)
    gene_sd = rng.uniform(0.3, 1.0, n_features)
    loadings = rng.normal(0.0, 1.0, (n_factors, n_features)) * (gene_sd / np.sqrt(n_factors))
    factors = rng.normal(0.0, 1.0, (n_samples, n_factors))
    informative = np.sort(rng.choice(n_features, n_informative, replace=False))
    shifts = np.zeros((len(sizes), n_features))
    # each class over/under-expresses its own random subset of the informative genes
    for c in range(1, len(sizes)):
        genes = rng.choice(informative, max(1, n_informative // 3), replace=False)
        shifts[c, genes] = rng.choice([-1.0, 1.0], genes.size) * effect * gene_sd[genes] * 3
    X = baseline + factors @ loadings + shifts[y]
    X += rng.normal(0.0, 1.0, X.shape) * gene_sd
    return X, y.astype(np.int64), informative.astype(np.int64)


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed_from(random_state):
    """A numpy Generator seed from a sklearn-style random_state."""
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(0, 2 ** 63 - 1)
    return check_random_state(random_state).randint(0, 2 ** 31 - 1)


# The file loaders moved to the command line (sksparse_mlp.cli._loaders) after 0.1.0;
# code written for 0.1 that imports them from here keeps working for now.
_MOVED_TO_CLI = ("DataError", "Dataset", "load_csv", "load_data", "load_npz", "load_svmlight")


def __getattr__(name):
    if name in _MOVED_TO_CLI:
        warnings.warn(f"sksparse_mlp.datasets.{name} is deprecated: the file loaders are the "
                      "command line's (sksparse_mlp.cli); it will be removed in a later "
                      "release.", DeprecationWarning, stacklevel=2)
        from .cli import _loaders  # imported on demand: the library does not need the CLI

        return getattr(_loaders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Fill numba's on-disk cache with the kernel variants that later tests need.

``conftest.py`` runs this script in a background process at the start of a session:
on a cold cache (a fresh clone, CI) the float64 and int64 specialisations then compile
on the second core while the first tests run (command line, scikit-learn checks),
instead of inside the tests that use them. Only numba's cache is written (atomically,
by numba); nothing here is checked, and a failure here changes no test: a variant this
script did not reach is compiled by the test that needs it, as before. The order is
the order in which the suite needs them (float64 fits from tests/test_estimators.py,
then the int64 index kernels of tests/test_kernels.py and kernels that only
micro-batches under a memory budget reach).
"""
import os
import sys
import warnings


def _fits():
    import numpy as np
    import scipy.sparse as sp

    from sksparse_mlp import TrulySparseMLPClassifier, TrulySparseMLPRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    y = (X[:, 0] > 0).astype(int)
    small = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, dtype="float64")
    clf = TrulySparseMLPClassifier(**small).fit(X, y)
    clf.predict_proba(X[:1])
    TrulySparseMLPRegressor(**small).fit(X, X[:, 0])
    TrulySparseMLPClassifier(**small).fit(sp.csr_matrix(X), y)
    TrulySparseMLPClassifier(solver="adam", regrow="gradient", **small).fit(X, y)


def _int64_kernels():
    import numpy as np
    import scipy.sparse as sp

    from sksparse_mlp import _kernels as K
    from sksparse_mlp import _panels as P

    W = sp.random(7, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    indptr, indices = W.indptr.astype(np.int64), W.indices.astype(np.int64)
    t_indptr, t_indices, t_perm = P.transpose_pattern(indptr, indices, 5)
    A3 = np.ones((1, 7, 16), np.float32)
    Z3 = np.zeros((1, 5, 16), np.float32)
    G3 = np.zeros(Z3.shape, np.uint8)
    bias = np.zeros(5, np.float32)
    K.forward_tiled(t_indptr, t_indices, t_perm, W.data, bias, A3, Z3, G3, K.ACT_PIECEWISE,
                    -0.6, 0, 0, 1.0, 1, np.zeros(1, np.int64), np.zeros((1, 8), np.float32))
    gbuf = np.zeros((1, W.nnz), np.float32)
    bsum = np.zeros((1, 7), np.float32)
    vel = np.zeros_like(W.data)
    K.backward_tiled(indptr, indices, W.data, A3, Z3, np.zeros(A3.shape, np.uint8), gbuf,
                     K.GRAD_WRITE, True, K.ACT_PIECEWISE, -0.6, 1.0, bsum, vel, 0.1, 0.9, 0.0,
                     False, 1, vel, 0.0, 0.0, *K.kernel_scratch(1, 16, np.float32))


def _other_kernels():
    import numpy as np
    import scipy.sparse as sp

    from sksparse_mlp import _kernels as K
    from sksparse_mlp import _scatter as SC
    from sksparse_mlp import _steps as S

    for dt in (np.float32, np.float64):
        W = sp.random(7, 5, density=0.5, format="csr", random_state=0, dtype=dt)
        Z3 = np.zeros((1, 5, 16), dt)
        SC.forward_csr_tiled(W.indptr, W.indices, W.data, np.zeros(5, dt), np.ones((1, 7, 16), dt),
                             Z3, np.zeros(Z3.shape, np.uint8), K.ACT_PIECEWISE, -0.6, 0, 0, 1.0)
        d = np.ones(4, dt)
        S.apply_adam_step(d, np.zeros_like(d), np.zeros_like(d), np.ones((2, 4), dt), 2, 0.1,
                          0.9, 0.999, 0.0, 1e-8)


def main():
    try:
        os.nice(10)                 # the tests themselves come first
    except OSError:
        pass
    warnings.simplefilter("ignore")     # two-epoch fits do not converge; nobody reads them
    for step in (_fits, _int64_kernels, _other_kernels):
        try:
            step()
        except Exception as e:      # pragma: no cover - the tests will say what is wrong
            print("warm_cache: %s: %s" % (step.__name__, e), file=sys.stderr)


if __name__ == "__main__":
    main()

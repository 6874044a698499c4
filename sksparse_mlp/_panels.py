"""Numba kernels that move data into, out of and beside the tiled panel layout.

A batch's rows go into panels ``A3[t, unit, b]`` (:func:`gather_input_tiled`), the
output panels go back to rows (:func:`untile_rows`), and a layer's values are put in
the order of its CSC view for the forward pass (:func:`gather_values`); see
:mod:`._kernels` for the layout.
"""
import numpy as np
from numba import njit, prange

from ._jit import OPTS as _OPTS


@njit(inline="always")
def _gather_block(X, idx, B, A3, q, nblk):
    """Task ``q`` of :func:`gather_input_tiled`: 32 features of one panel."""
    TB = A3.shape[2]
    n = A3.shape[1]
    t = q // nblk
    i0 = (q - t * nblk) * 32
    i1 = min(n, i0 + 32)
    for bb in range(TB):
        b = t * TB + bb
        if b < B:
            r = np.uint64(idx[b])
            for i in range(i0, i1):
                A3[t, np.uint64(i), bb] = X[r, np.uint64(i)]
        else:
            for i in range(i0, i1):
                A3[t, np.uint64(i), bb] = 0


@njit(parallel=True, **_OPTS)
def gather_input_tiled(X, idx, B, A3):
    """``A3[b // TB, :, b % TB] = X[idx[b], :]`` for ``b < B``, zero for padding.

    Parallel over (panel, block of 32 features); each block reads 32 contiguous
    values of a sample row and writes them down a column of the panel.
    """
    nt, n, TB = A3.shape
    nblk = (n + 31) // 32
    for q in prange(nt * nblk):
        _gather_block(X, idx, B, A3, q, nblk)


@njit(parallel=True, **_OPTS)
def gather_values(data, perm, out):
    """``out[:] = data[perm]``: a layer's values in the order of its CSC view.

    A forward pass over several panels reads them this way once instead of through
    ``perm`` at every connection of every panel.  (``np.take`` is serial, about 4x
    slower here on two cores.)
    """
    for k in prange(perm.shape[0]):
        out[k] = data[np.uint64(perm[k])]


@njit(parallel=True, **_OPTS)
def untile_rows(Z3, B, out, start):
    """``out[start + b, :] = Z3[b // TB, :, b % TB]`` for ``b < B`` (outputs back to rows)."""
    nt, n, TB = Z3.shape
    for b in prange(B):
        t = b // TB
        bb = b - t * TB
        for j in range(n):
            out[start + b, j] = Z3[t, j, bb]

"""Numba kernels that move data into, out of and beside the tiled panel layout.

A batch's rows go into panels ``A3[t, unit, b]`` (:func:`gather_input_tiled`), the
output panels go back to rows (:func:`untile_rows`), a layer gets the CSC view its
forward pass gathers through (:func:`transpose_pattern`), and its values are put in
that view's order (:func:`gather_values`); see
:mod:`._kernels` for the layout.  :func:`has_non_finite` checks the input beforehand.
"""
import numpy as np
from numba import njit, prange

from ._jit import OPTS as _OPTS

# samples per task of gather_input_tiled: a panel row's 16 values fill one cache line
_GATHER_SAMPLES = 16


@njit(parallel=True, **_OPTS)
def gather_input_tiled(X, idx, B, A3):
    """``A3[b // TB, :, b % TB] = X[idx[b], :]`` for ``b < B``, zero for padding.

    Parallel over groups of :data:`_GATHER_SAMPLES` samples of a panel; each group
    streams its sample rows side by side and writes every unit's values as one
    contiguous run.  (Tasks of 32 features, each reading a 128-byte piece of every
    sample row, were 2x slower on two threads and 4.8x on one: the rows come from
    memory, and short pieces of them defeat the prefetchers.)
    """
    nt, n, TB = A3.shape
    G = _GATHER_SAMPLES
    groups = -(-TB // G)
    for q in prange(nt * groups):
        t = q // groups
        b0 = (q - t * groups) * G
        g = min(G, TB - b0)
        rows = np.full(G, -1, np.int64)  # -1: padding
        for s in range(g):
            if t * TB + b0 + s < B:
                rows[s] = idx[t * TB + b0 + s]
        if g == G and rows[G - 1] >= 0:
            for i in range(n):
                for s in range(G):
                    A3[t, i, b0 + s] = X[rows[s], i]
        else:  # the batch or the panel ends inside this group
            for i in range(n):
                for s in range(g):
                    A3[t, i, b0 + s] = X[rows[s], i] if rows[s] >= 0 else 0


def transpose_pattern(indptr, indices, n_cols):
    """CSR pattern of ``W.T`` plus the permutation into ``W``'s value order.

    Returns ``(t_indptr, t_indices, t_perm)`` with ``t_perm[q]`` the position in
    ``data`` of the ``q``-th entry of the transposed view, so that
    ``W.T.data == data[t_perm]``.  Within a column, rows are sorted.  Index arrays
    keep the dtype of ``indices`` (``t_perm`` that of ``indptr``).  O(nnz): a
    counting sort over a few row blocks in parallel (each block owns its slots).
    The arrays come from numpy, which asks for huge pages: memory numba allocates
    took 55 against 6 ms to first write 160 MB in its 4 KiB pages.
    """
    n_rows = indptr.shape[0] - 1
    nnz = int(indptr[n_rows])
    n_blocks = 1 if nnz < 65536 else 8
    counts = np.zeros((n_blocks, n_cols), dtype=indptr.dtype)
    t_indptr = np.empty(n_cols + 1, dtype=indptr.dtype)
    t_indices = np.empty(nnz, dtype=indices.dtype)
    t_perm = np.empty(nnz, dtype=indptr.dtype)
    _transpose_into(indptr, indices, counts, t_indptr, t_indices, t_perm)
    return t_indptr, t_indices, t_perm


@njit(parallel=True, **_OPTS)
def _transpose_into(indptr, indices, cnt, t_indptr, t_indices, t_perm):
    """The work of :func:`transpose_pattern`, with ``cnt`` (zeros, one row per block of
    rows) and the outputs allocated by the caller."""
    n_rows = indptr.shape[0] - 1
    C, n_cols = cnt.shape
    nnz = indptr[n_rows]
    rb = np.empty(C + 1, np.int64)
    for c in range(C + 1):
        rb[c] = np.searchsorted(indptr, (nnz * c) // C)
    rb[0] = 0
    rb[C] = n_rows
    for c in prange(C):
        for k in range(np.uint64(indptr[rb[c]]), np.uint64(indptr[rb[c + 1]])):
            cnt[c, np.uint64(indices[k])] += 1
    t_indptr[0] = 0
    for j in range(n_cols):
        run = t_indptr[j]
        for c in range(C):
            m = cnt[c, j]
            cnt[c, j] = run  # becomes block c's next slot in column j
            run += m
        t_indptr[j + 1] = run
    for c in prange(C):
        for i in range(rb[c], rb[c + 1]):
            for k in range(np.uint64(indptr[i]), np.uint64(indptr[i + 1])):
                j = np.uint64(indices[k])
                q = cnt[c, j]
                t_indices[q] = i
                t_perm[q] = k
                cnt[c, j] = q + 1


# Layers of at most this many connections and rows keep their CSC view's rows and
# permutation as uint16: half the bytes the forward pass streams through L2 beside the
# panel it gathers from, once per panel (1000 x 1000 at 4 %, two panels of 64:
# 198 -> 182 us at 2 threads, 366 -> 340 at 1).
NARROW_MAX = 65535


def narrowed(n_rows, nnz):
    """Whether :func:`narrow_pattern` keeps a view of this size as uint16."""
    return nnz <= NARROW_MAX and n_rows <= NARROW_MAX + 1


def narrow_pattern(t_indptr, t_indices, t_perm, n_rows):
    """:func:`transpose_pattern`'s view of a matrix of ``n_rows`` rows, with
    ``t_indices`` and ``t_perm`` as uint16 when it is :func:`narrowed`."""
    if not narrowed(n_rows, t_perm.shape[0]):
        return t_indptr, t_indices, t_perm
    return t_indptr, t_indices.astype(np.uint16), t_perm.astype(np.uint16)


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


def has_non_finite(X):
    """Whether the float32 or float64 2-D array ``X`` holds a NaN or an infinity.

    The input check of every ``partial_fit`` epoch and ``predict`` summed the array with
    ``np.sum`` (a finite sum proves every value finite): 3.7 ms for the benchmark's
    31 MB.  This tests each value's exponent bits instead, on both cores, and cannot
    be fooled by a sum that overflows.
    """
    if X.size <= 1 << 16:  # a parallel launch costs more than numpy here
        return not np.isfinite(X).all()
    if X.dtype == np.float32:
        return _exponent_all_ones(X.view(np.uint32), np.uint32(0x7F800000))
    return _exponent_all_ones(X.view(np.uint64), np.uint64(0x7FF0000000000000))


@njit(parallel=True, **_OPTS)
def _exponent_all_ones(bits, exponent):
    """Whether any item of ``bits`` has all bits of ``exponent`` set (NaN or inf): an
    integer test, which LLVM vectorises."""
    found = 0
    for r in prange(bits.shape[0]):
        row = 0
        for c in range(bits.shape[1]):
            row |= (bits[r, c] & exponent) == exponent
        found += row
    return found > 0

"""The lock around calls into numba's parallel kernels.

numba's workqueue threading layer (what numba falls back to without TBB or an
OpenMP runtime) aborts the process when two threads enter parallel kernels at
once; on that layer every call into the kernels (training, prediction, the MPI
server under ``mpiexec``) holds one process-wide lock. On the other layers
:func:`kernel_guard` does nothing.
"""
import threading
from contextlib import contextmanager

import numba

# Reentrant: a callback may predict during a fit.
_WORKQUEUE_LOCK = threading.RLock()


_NEED_LOCK = None  # known once numba has chosen its layer (it never changes after)


def _kernels_need_lock():
    global _NEED_LOCK
    if _NEED_LOCK is None:
        try:
            _NEED_LOCK = numba.threading_layer() == "workqueue"
        except ValueError:  # not chosen yet: the first parallel call picks the layer
            return True
    return _NEED_LOCK


@contextmanager
def kernel_guard():
    """Serialise calls into numba's parallel kernels on the workqueue layer only."""
    if _kernels_need_lock():
        with _WORKQUEUE_LOCK:
            yield
    else:
        yield

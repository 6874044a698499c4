"""WASAP-SGD data-parallel training over MPI workers spawned from inside ``fit``.

Nothing here imports mpi4py at import time: ``n_workers=1`` never touches MPI.
The estimators call :func:`fit_wasap`; the worker pool lives in ``_pool``, the
parameter server in ``_server`` and the worker entry point in ``_worker``
(``python -m sksparse_mlp.parallel._worker``).
"""

__all__ = ["fit_wasap", "WorkerFailure", "WorkerError", "WorkerDied", "WorkerTimeout",
           "MPIUnusableError"]

# Test hooks (not a public API): the server forwards these to the workers in their setup
# message. ``fault``: dict(rank=int|list, kind="raise"|"exit"|"abort"|"kill"|"stall",
# where="setup"|"step"|"phase2", after=int). ``fail_import``: workers fail to import.
# ``stats``: filled by the last fit_wasap call with timings (benchmarks read it).
_test_hooks = {"fault": None, "fail_import": False}
last_stats = {}


def fit_wasap(*args, **kwargs):
    """Train ``network`` with WASAP-SGD over ``config["n_workers"]`` MPI workers.
    See :func:`sksparse_mlp.parallel._server.fit_wasap`."""
    from ._server import fit_wasap as _fit
    return _fit(*args, **kwargs)


def __getattr__(name):
    if name in ("WorkerFailure", "WorkerError", "WorkerDied", "WorkerTimeout"):
        from . import _pool
        return getattr(_pool, name)
    if name == "MPIUnusableError":
        from . import _mpi
        return _mpi.MPIUnusableError
    raise AttributeError("module %r has no attribute %r" % (__name__, name))

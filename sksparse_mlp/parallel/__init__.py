"""WASAP-SGD data-parallel training over MPI workers spawned from inside ``fit``.

Nothing here imports mpi4py: ``n_workers=1`` never touches MPI, and for ``n_workers > 1``
the MPI world lives in a helper process started for the fit (``_caller`` / ``_helper``).
The estimators call :func:`fit_wasap` with a :class:`TrainingPlan`. Modules: ``_protocol``
(every tag, command, header and error), ``_caller`` (the caller's side), ``_helper`` (the
helper process), ``_start`` (spawning before numpy is imported), ``_server`` (parameter
server), ``_merge`` (the pattern algebra of the phase-2 merge), ``_pool`` (spawn, waits,
failure handling), ``_mpi`` (loading MPI, the launcher shim), ``_worker`` (the generic
worker loop) with ``_wasap_worker`` (its training handlers), ``_wire`` (network <->
buffers), ``_boot`` (process bootstrap), ``_testing`` (test hooks, run statistics).
"""
from ._plan import TrainingPlan
from ._protocol import MPIUnusableError, WorkerDied, WorkerError, WorkerFailure, WorkerTimeout

__all__ = ["fit_wasap", "TrainingPlan", "WorkerFailure", "WorkerError", "WorkerDied",
           "WorkerTimeout", "MPIUnusableError"]


def fit_wasap(plan, network, optimizer, rng, on_epoch_end=None):
    """Train ``network`` with WASAP-SGD as ``plan`` says (see
    :func:`sksparse_mlp.parallel._caller.fit_wasap`)."""
    from ._caller import fit_wasap as _fit
    return _fit(plan, network, optimizer, rng, on_epoch_end)

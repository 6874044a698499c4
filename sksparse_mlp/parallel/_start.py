"""The start of one training run's MPI world: spawn the workers and send them their
set-up command, importing neither numpy nor the model code.

The helper process runs :func:`start` as soon as the caller's first, small message
(``_protocol.start_spec``) has arrived, before it unpickles the plan and the model,
which imports numpy, scipy and numba (1-2 s, more on a busy machine). So the start-up deadline
(``worker_timeout``) runs from about the call to ``fit``, a start-up failure is reported
within it, and the workers' set-up (their own imports, loading the numba kernels) runs
while the helper imports.
"""
import os
import sys
import time

from . import _protocol as P
from ._pool import Pool

SETUP_TIMEOUT = 180.0     # start-up deadline (Spawn + hellos) when worker_timeout is None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # pragma: no cover - not Linux
        return os.cpu_count() or 1


def start(spec):
    """Spawn ``spec["n_workers"]`` workers and send each its set-up command.

    Returns
    -------
    pool : Pool
        Its workers are running their set-up; each answers with one reply
        (``pool.recv(r)``). ``pool.setup_t0`` is when the commands were sent.

    Raises
    ------
    WorkerDied, WorkerTimeout, WorkerError
        The workers did not start (the launcher's own message is quoted).
    """
    hooks = spec["hooks"]
    n, timeout = spec["n_workers"], spec["timeout"]
    flags = ((["--fail-import"] if hooks.get("fail_import") else [])
             + list(hooks.get("worker_flags") or ()))
    # workers send heartbeats while they run set-up commands (imports, numba kernels from
    # the on-disk cache or compiled on a cold cache, data shards), so set-up is watched
    # with the same worker_timeout as training; start-up (Spawn and every worker's hello)
    # must also finish within worker_timeout: a worker that dies while starting, or a
    # launcher that cannot reach a host, is reported then (or as soon as the launcher or
    # a started worker exits)
    pool = Pool(n, timeout=timeout, mpi_info=spec["mpi_info"], worker_flags=flags,
                spawn_timeout=SETUP_TIMEOUT if timeout is None else timeout)
    try:
        pool.setup_t0 = time.perf_counter()
        for r in range(n):
            pool.send((P.CMD_SETUP, {"fault": hooks.get("fault"), "preload": True,
                                     "numba_threads": max(1, _cores() // n)}), r)
    except BaseException:
        pool.__exit__(*sys.exc_info())
        raise
    return pool

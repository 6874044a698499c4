"""Test hooks and run statistics of the MPI backend (not a public API).

``hooks`` travel in the start spec (``_protocol.start_spec``) to the helper process and
from there to the workers in their setup message:

* ``fault``: ``dict(rank=int|list, kind="raise"|"exit"|"abort"|"kill"|"stall",
  where="setup"|"step"|"phase2"|"bye"|"after_bye"|"disconnected", after=int,
  stamp=path)``: a worker fails on purpose (``_worker.Faults``);
* ``fail_import``: the workers fail to import their modules;
* ``worker_flags``: extra command-line flags of the workers (``--die-before-init``, ...).

``last_stats`` is filled by the last completed ``fit_wasap`` with timings and byte
counts (the benchmarks read it): ``phase1_bytes_in`` / ``phase1_bytes_out`` (the phase-1
loop's traffic at the server), ``phase1_received`` / ``phase1_gradients`` /
``phase1_steps`` / ``phase1_structure_replies``, ``phase1_update_s`` / ``phase1_update_cpu_s``
(server time per update, epoch ends apart), ``phase1_epoch_end_s``, ``phase1_evolve_s``,
and per worker ``compute_s`` / ``compute_cpu_s`` / ``step_cpu_s`` / ``comm_s`` / ``steps``.
"""

hooks = {"fault": None, "fail_import": False, "worker_flags": None}
last_stats = {}

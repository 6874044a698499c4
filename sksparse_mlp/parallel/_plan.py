"""The description of one WASAP-SGD training run, from the estimator to the backend."""
import dataclasses
from typing import Any, Optional

from ._protocol import MODES


@dataclasses.dataclass
class TrainingPlan:
    """What to train and how; the model, optimizer and random generator travel beside it.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
        Relative weights (mean 1 over the training samples).
    config : TrainingConfig
    batch_size : int
    max_epochs : int
    shuffle : bool
        Reshuffle each worker's shard every pass.
    n_workers : int
        At least 2.
    mode : {"async", "sync", "allreduce"}
    phase1_fraction : float in [0, 1]
        Share of the epochs in the parameter-server phase.
    timeout : float or None
        Seconds of silence from a worker that owes a message before it is declared
        stalled; also the start-up deadline (180 s when None).
    mpi_info : dict or None
        MPI Info keys passed to Spawn (``{"hosts": "a,b"}``, ``{"hostfile": path}``).
    epochs_done : int
        Epochs trained before this call (warm start): the importance-pruning schedule.
    """

    X: Any
    Y: Any
    sample_weight: Any
    config: Any
    batch_size: int
    max_epochs: int
    shuffle: bool = True
    n_workers: int = 2
    mode: str = "async"
    phase1_fraction: float = 0.7
    timeout: Optional[float] = 60.0
    mpi_info: Optional[dict] = None
    epochs_done: int = 0

    def check(self):
        """Raise ValueError for a plan the backend cannot run."""
        n = self.X.shape[0]
        if int(self.n_workers) < 2:
            raise ValueError("fit_wasap needs n_workers >= 2, got %d" % self.n_workers)
        if n < self.n_workers:
            raise ValueError("n_workers=%d is more than the %d training samples"
                             % (self.n_workers, n))
        if self.mode not in MODES:
            raise ValueError("mode must be one of %s, got %r" % (MODES, self.mode))

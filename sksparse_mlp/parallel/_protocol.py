"""The message format of the MPI backend, in one place (no MPI, no scikit-learn imports).

Three kinds of process talk to each other:

* the **caller** (the user's Python, where ``fit`` runs) and the **helper** process it
  starts for every ``n_workers > 1`` fit: a Unix socket pair carrying pickled messages
  (:class:`Channel`, the ``CALLER_*`` / ``HELPER_*`` kinds below);
* the helper (MPI rank 0 of the parent group, the parameter server) and the spawned
  **workers**: MPI messages with the tags below.  Commands go as pickled tuples
  ``(name, arg...)`` with :data:`TAG_CMD`; bulk data goes as numpy buffers.

Header layouts (numpy buffers, so they travel with upper-case MPI calls):

* gradient header :data:`GRAD_HEADER` (float64): ``version, loss, weight total,
  batch rows, gradient length``; the gradient follows with :data:`TAG_GD` unless its
  length is 0;
* reply header :data:`REPLY_HEADER` (int64): ``kind, version, 0, 0`` with kind
  :data:`VALUES` (values follow), :data:`STRUCTURE` (structure, then values) or
  :data:`END` (phase 1 is over);
* structure: ``meta`` (int64: number of layers ``L``, then ``n_in, n_out, nnz`` per
  layer, :func:`meta_len`), then ``indptr`` and ``indices`` (int64) of every layer;
* values: one flat buffer ``[W_0.data, ..., W_{L-1}.data, b_0, ..., b_{L-1}]``
  (gradients and velocities use the same layout; see ``_wire``).

Mode ``"allreduce"`` keeps the server out of the data path: per epoch the server sends
:data:`CMD_AR_EPOCH` to every worker; each step the workers sum an
:func:`allreduce_len` buffer (``total * gradient``, then ``total, loss * rows, rows``)
with MPI's ``Allreduce`` over their own ``COMM_WORLD`` and all take the same step; at the
epoch's end worker 0 sends its values and optimizer state (``TAG_GD``), the others a
result; after the server's topology change it sends the model to worker 0
(:data:`CMD_MODEL`), which broadcasts it to the others (:data:`CMD_AR_MODEL`).
"""
import os
import pickle
import socket
import struct

# ---------------------------------------------------------------- MPI tags
TAG_HELLO = 1    # worker -> server, once after MPI_Init: {"pid", "host", "import_error"}
TAG_CMD = 2      # server -> worker: a command tuple (below)
TAG_ERR = 3      # worker -> server: {"rank", "tb"}, an exception raised by a command
TAG_RES = 4      # worker -> server: a command's pickled result
TAG_BUF = 5      # either way: a numpy buffer (tests' echo)
TAG_BYE = 6      # worker -> server: last message before Disconnect
TAG_HB = 7       # worker -> server: progress of the test command "work"
TAG_GH = 8       # worker -> server: gradient header (GRAD_HEADER); phase-2 model header
TAG_GD = 9       # worker -> server: gradient data; phase-2 model structure and values
TAG_MH = 10      # server -> worker: reply header (REPLY_HEADER)
TAG_MD = 11      # server -> worker: model structure / values, data shards
TAG_END = 12     # server -> worker: last message of close(): everything before it is drained
TAG_ALIVE = 13   # worker -> server: heartbeat while a set-up command runs

# ---------------------------------------------------------------- commands (TAG_CMD)
# generic (``_worker``): stop, setup, ping, work, echo, getenv
# WASAP-SGD (``_wasap_worker``): init, shard, model, phase1, epoch, stats
CMD_STOP, CMD_SETUP = "stop", "setup"
CMD_INIT, CMD_SHARD, CMD_MODEL = "init", "shard", "model"
CMD_PHASE1, CMD_EPOCH, CMD_STATS = "phase1", "epoch", "stats"
CMD_AR_EPOCH, CMD_AR_MODEL = "ar_epoch", "ar_model"     # mode "allreduce"
MODES = ("async", "sync", "allreduce")

# ---------------------------------------------------------------- headers
GRAD_HEADER = 5                  # float64: version, loss, total, rows, size
REPLY_HEADER = 4                 # int64: kind, version, 0, 0
VALUES, STRUCTURE, END = 0, 1, 2  # reply kinds


def meta_len(n_layers):
    """Length of the structure ``meta`` array of a network of ``n_layers`` layers."""
    return 1 + 3 * n_layers


# ---------------------------------------------------------------- message sizes
# What one phase-1 update puts on the wire, from the layouts above (the benchmarks'
# traffic model; tests check it against the bytes the server counts).
def gradient_bytes(n_values, itemsize):
    """Bytes of one gradient message: header + gradient (``n_values`` entries)."""
    return 8 * GRAD_HEADER + int(n_values) * int(itemsize)


def structure_bytes(shapes_nnz):
    """Bytes of a structure: ``meta`` + ``indptr`` and ``indices`` (int64) of every
    layer; ``shapes_nnz`` is ``[(n_in, n_out, nnz), ...]``."""
    return 8 * (meta_len(len(shapes_nnz)) + sum(n_in + 1 + nnz for n_in, _, nnz in shapes_nnz))


def allreduce_len(n_values):
    """Entries of the buffer the workers sum each step in mode ``"allreduce"``."""
    return int(n_values) + 3


def reply_bytes(n_values, itemsize, shapes_nnz=None):
    """Bytes of one reply: header + values, plus the structure when the worker's copy
    is of an older topology (``shapes_nnz`` given)."""
    return (8 * REPLY_HEADER + int(n_values) * int(itemsize)
            + (structure_bytes(shapes_nnz) if shapes_nnz is not None else 0))


# ---------------------------------------------------------------- caller <-> helper
# caller -> helper: ("start", start_spec(plan, hooks))        first: the helper spawns
#                   ("plan", plan, network, optimizer, rng)   then reads this
#                   ("continue", stop, optimizer, rng)       answer to HELPER_EPOCH
# helper -> caller: ("epoch", loss, network, optimizer, rng) after every epoch
#                   ("done", network, optimizer, rng, stats)
#                   ("error", exception)
CALLER_START, CALLER_PLAN, CALLER_CONTINUE = "start", "plan", "continue"
HELPER_EPOCH, HELPER_DONE, HELPER_ERROR = "epoch", "done", "error"


def start_spec(plan, hooks=None):
    """What ``_start.start`` needs of ``plan``, in plain Python values: the helper can
    spawn the workers before it unpickles anything that imports numpy."""
    return {"n_workers": int(plan.n_workers),
            "timeout": None if plan.timeout is None else float(plan.timeout),
            "mpi_info": None if plan.mpi_info is None else dict(plan.mpi_info),
            "hooks": dict(hooks or {})}


class ChannelClosed(EOFError):
    """The other end of a :class:`Channel` went away (its process ended or closed it)."""


class Channel:
    """Pickled messages over a stream socket; numpy arrays travel as out-of-band
    buffers (pickle protocol 5), so a large model or data set is not copied into
    one big bytes object first."""

    _HEAD = struct.Struct("<QI")

    def __init__(self, sock):
        self.sock = sock

    @classmethod
    def from_fd(cls, fd):
        return cls(socket.socket(fileno=fd))

    def send(self, obj):
        bufs = []
        data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
        raws = [b.raw() for b in bufs]
        head = self._HEAD.pack(len(data), len(raws))
        head += struct.pack("<%dQ" % len(raws), *[r.nbytes for r in raws])
        try:
            self.sock.sendall(head)
            self.sock.sendall(data)
            for r in raws:
                self.sock.sendall(r)
        except OSError as e:
            raise ChannelClosed("the other process closed the channel (%s)" % e) from e

    def _read(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], min(n - got, 1 << 24))
            except OSError as e:
                raise ChannelClosed("the other process closed the channel (%s)" % e) from e
            if k == 0:
                raise ChannelClosed("the other process closed the channel")
            got += k
        return buf

    def recv(self):
        n, k = self._HEAD.unpack(self._read(self._HEAD.size))
        sizes = struct.unpack("<%dQ" % k, self._read(8 * k)) if k else ()
        data = self._read(n)
        return pickle.loads(data, buffers=[self._read(s) for s in sizes])

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- errors
class WorkerFailure(RuntimeError):
    """Base class: training over MPI workers failed."""


class WorkerError(WorkerFailure):
    """A worker raised an exception (its traceback is in the message)."""


class WorkerDied(WorkerFailure):
    """A worker process disappeared (killed, crashed, exited)."""


class WorkerTimeout(WorkerFailure, TimeoutError):
    """A worker stayed silent for longer than the timeout, or Spawn did not return."""


class MPIUnusableError(RuntimeError):
    """MPI cannot be used again in this process (a worker died hard before). Only a
    caller that runs the MPI world itself (one started by ``mpiexec``) can see it."""


# variables by which a launcher (mpiexec) tells a process it is an MPI rank
LAUNCH_VARS = ("PMI_FD", "PMI_PORT", "PMI_RANK", "PMI_SIZE", "PMI_ID", "PMIX_RANK",
               "PMIX_NAMESPACE", "OMPI_COMM_WORLD_SIZE", "HYDI_CONTROL_FD",
               "MPI_LOCALNRANKS", "MPI_LOCALRANKID")


def launched_by_mpiexec(environ=None):
    """True when this process was itself started by mpiexec (not a singleton)."""
    env = os.environ if environ is None else environ
    return any(k in env for k in ("PMI_FD", "PMI_PORT", "PMI_RANK", "PMIX_RANK",
                                  "OMPI_COMM_WORLD_SIZE", "HYDI_CONTROL_FD"))

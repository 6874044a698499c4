"""Worker side of WASAP-SGD: the handlers of the training commands (:data:`HANDLERS`),
loaded by the generic worker loop (``_worker``) on the first command it does not know.

Uses the core's training code: ``SparseMLP.loss_and_gradients`` for the phase-1
gradients, and ``run_epoch`` / ``evolve_topology`` for the phase-2 local epochs.
No scikit-learn is imported here.
"""
import dataclasses
import time

import numpy as np
import scipy.sparse as sp

from .._network import TrainingConfig, _normalised_weights, evolve_topology, run_epoch
from .._optimizers import Adam, MomentumSGD
from . import _protocol as P
from . import _wire
from ._protocol import TAG_GD, TAG_GH, TAG_MD, TAG_MH, TAG_RES


class State:
    """Everything a worker keeps between commands."""

    def __init__(self, cfg):
        self.seed = int(cfg["seed"])
        self.rng = np.random.default_rng(self.seed)
        self.config = TrainingConfig(**cfg["config"])
        # importance pruning runs at the server only (phase 1): it changes layer shapes,
        # which would make the workers' models impossible to average over a union;
        # the engine's memory notes are the caller's to print, not every worker's
        self.local_config = dataclasses.replace(self.config, importance_pruning=False,
                                                verbose=False)
        self.batch_size = int(cfg["batch_size"])
        self.shuffle = bool(cfg["shuffle"])
        self.proto = cfg["proto"]
        self.dtype = np.dtype(self.proto["dtype"])
        self.momentum = float(cfg["momentum"])
        self.nesterov = bool(cfg["nesterov"])
        self.adam = cfg.get("adam")  # [beta_1, beta_2, eps] or None (momentum SGD)
        self.opt = None  # the phase-2 optimizer (Adam's step count goes on)
        self.X = self.Y = self.sw = None
        self.net = None
        self.meta = None
        self.version = -1
        self.flat = None
        self.order = None
        self.pos = 0
        self.compute_s = 0.0
        self.compute_cpu_s = 0.0   # CPU seconds: fair under oversubscription (1 thread)
        self.step_cpu_s = 0.0      # CPU seconds of the optimizer steps ("allreduce")
        self.steps = 0

    def optimizer(self, lr, t=0):
        if self.adam is not None:
            return Adam(lr, *self.adam, t=t)
        return MomentumSGD(lr, "constant", self.momentum, self.nesterov)

    def next_batch(self):
        n = self.X.shape[0]
        if self.order is None or self.pos >= n:
            self.order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            self.pos = 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


def init(w, cfg):
    w.state = State(cfg)
    _warm_up(w.state, cfg.get("sparse_X", False))
    w.ch.send(("ok", w.ch.rank), TAG_RES)


def stats(w):
    s = w.state
    w.ch.send({"compute_s": s.compute_s if s else 0.0,
               "compute_cpu_s": s.compute_cpu_s if s else 0.0,
               "step_cpu_s": s.step_cpu_s if s else 0.0, "comm_s": w.ch.comm_s,
               "steps": s.steps if s else 0}, TAG_RES)


def _warm_up(s, sparse_X):
    """Load (or compile) the numba kernels now, during set-up, on a tiny network with the
    real dtype, so that the first training step is not a long silence for the server."""
    from .._network import SparseMLP, train_step
    rng = np.random.default_rng(0)
    p = s.proto
    net = SparseMLP.random([6, 6, 2], [0.5, 1.0], rng, init=s.config.init,
                           activation=p["activation"], slope=p["slope"],
                           out_activation=p["out_activation"], loss=p["loss"], dtype=s.dtype)
    X = rng.random((3, 6)).astype(s.dtype)
    if sparse_X:
        X = sp.csr_matrix(X)
    Y = np.zeros((3, 2), dtype=s.dtype)
    Y[:, 0] = 1
    train_step(net, X, Y, None, s.optimizer(1e-3), s.local_config, rng)
    if s.config.zeta > 0:
        evolve_topology(net, 1, s.local_config, rng, (X, Y, None))


def recv_shard(w, meta):
    ch, s = w.ch, w.state
    dtype = np.dtype(meta["dtype"])
    if meta["sparse"]:
        n, d = meta["shape"]
        data = np.empty(meta["nnz"], dtype=dtype)
        indices = np.empty(meta["nnz"], dtype=np.dtype(meta["idx_dtype"]))
        indptr = np.empty(n + 1, dtype=np.dtype(meta["idx_dtype"]))
        for a in (data, indices, indptr):
            ch.Recv(a, TAG_MD)
        s.X = sp.csr_matrix((data, indices, indptr), shape=(n, d))
    else:
        s.X = np.empty(meta["shape"], dtype=dtype)
        ch.Recv(s.X, TAG_MD)
    s.Y = np.empty(meta["y_shape"], dtype=np.dtype(meta["y_dtype"]))
    ch.Recv(s.Y, TAG_MD)
    if meta["has_sw"]:
        s.sw = np.empty(meta["shape"][0], dtype=np.float64)
        ch.Recv(s.sw, TAG_MD)
    else:
        s.sw = None
    s.order, s.pos = None, 0
    ch.send(("ok", ch.rank), TAG_RES)


def _recv_structure(ch, n_layers):
    meta = np.empty(P.meta_len(n_layers), dtype=np.int64)
    ch.Recv(meta, TAG_MD)
    arrays = _wire.empty_structure(meta)
    for a in arrays:
        ch.Recv(a, TAG_MD)
    return meta, arrays


def recv_model(w, info):
    """Full model: structure, values and (``with_velocity``) optimizer state."""
    ch, s = w.ch, w.state
    meta, arrays = _recv_structure(ch, info["n_layers"])
    n_vals = int(sum(meta[3::3]) + sum(meta[2::3]))
    s.flat = np.empty(n_vals, dtype=s.dtype)
    ch.Recv(s.flat, TAG_MD)
    vel = None
    if info.get("with_velocity"):
        vel = np.empty(n_vals * (1 if s.adam is None else 2), dtype=s.dtype)  # Adam: 2 moments
        ch.Recv(vel, TAG_MD)
    s.meta, s.arrays = meta, arrays
    s.net = _wire.build_network(meta, arrays, s.flat, s.proto, vel)
    s.version = int(info["version"])
    ch.send(("ok", ch.rank), TAG_RES)


def phase1(w, params):
    """Asynchronous / synchronous phase: gradient out, current model back, until END."""
    ch, s = w.ch, w.state
    cfg = s.config
    L = len(s.net.layers)
    hdr = np.empty(P.GRAD_HEADER, dtype=np.float64)
    rhdr = np.empty(P.REPLY_HEADER, dtype=np.int64)
    gbuf = np.empty(_wire.value_size(s.net), dtype=s.dtype)
    while True:
        w.faults.check("step")
        t0, c0 = time.perf_counter(), time.process_time()
        idx = s.next_batch()
        Xb, Yb = s.X[idx], s.Y[idx]
        swb = None if s.sw is None else s.sw[idx]
        weights, total = _normalised_weights(swb, len(idx), s.dtype)
        net = s.net
        if total > 0:
            loss, grads = net.loss_and_gradients(Xb, Yb, weights, cfg.dropout, s.rng)
            loss += 0.5 * (cfg.alpha / total) * net.squared_norm()
            if gbuf.size != _wire.value_size(net):
                gbuf = np.empty(_wire.value_size(net), dtype=s.dtype)
            _wire.pack_grads(grads, gbuf)
        else:
            loss = 0.0
        hdr[:] = (s.version, loss, total, len(idx), gbuf.size if total > 0 else 0)
        s.compute_s += time.perf_counter() - t0
        s.compute_cpu_s += time.process_time() - c0
        s.steps += 1
        ch.Isend(hdr, TAG_GH)
        if total > 0:
            ch.Isend(gbuf, TAG_GD)
        ch.Recv(rhdr, TAG_MH)          # watches for "stop" while waiting
        ch.flush()                      # the server got our gradient before it replied
        kind, version = int(rhdr[0]), int(rhdr[1])
        if kind == P.END:
            break
        if kind == P.STRUCTURE:
            meta, arrays = _recv_structure(ch, L)
            L = int(meta[0])
            n_vals = int(sum(meta[3::3]) + sum(meta[2::3]))
            s.flat = np.empty(n_vals, dtype=s.dtype)
            ch.Recv(s.flat, TAG_MD)
            s.meta, s.arrays = meta, arrays
            s.net = _wire.build_network(meta, arrays, s.flat, s.proto)
        else:
            ch.Recv(s.flat, TAG_MD)     # W.data and biases are views of s.flat
        s.version = version
    ch.send(("phase1_done", ch.rank), TAG_RES)


def _batch_gradient(s):
    """Loss (with the L2 term) and gradients of the next batch; its weight total, rows."""
    idx = s.next_batch()
    swb = None if s.sw is None else s.sw[idx]
    weights, total = _normalised_weights(swb, len(idx), s.dtype)
    loss, grads = s.net.loss_and_gradients(s.X[idx], s.Y[idx], weights, s.config.dropout, s.rng)
    loss += 0.5 * (s.config.alpha / total) * s.net.squared_norm()
    return loss, grads, total, len(idx)


def allreduce_epoch(w, params):
    """Mode "allreduce": one epoch of synchronous steps without the server. The workers
    sum ``total * gradient`` (and the loss) with MPI's Allreduce and all take the same
    step (learning rate scaled by the workers after the warm-up, as in mode "sync"), so
    their models stay equal; worker 0 then sends its model to the server."""
    ch, s = w.ch, w.state
    net, W = s.net, int(params["n_workers"])
    opt = s.optimizer(params["lr"], int(params.get("t", 0)))
    base, steps, epoch = opt.learning_rate, int(params["steps"]), int(params["epoch"])
    nv = _wire.value_size(net)
    buf = np.empty(P.allreduce_len(nv), dtype=s.dtype)
    loss_sum = rows = 0.0
    beat = time.monotonic()
    for k in range(steps):
        w.faults.check("step")
        t0, c0 = time.perf_counter(), time.process_time()
        loss, grads, total, n = _batch_gradient(s)
        _wire.pack_grads(grads, buf[:nv])
        buf[:nv] *= buf.dtype.type(total)
        buf[nv:] = (total, loss * n, n)
        s.compute_s += time.perf_counter() - t0
        s.compute_cpu_s += time.process_time() - c0
        ch.Allreduce(buf)
        c1 = time.process_time()
        tot = float(buf[nv])
        buf[:nv] /= buf.dtype.type(tot)
        opt.learning_rate = base * (1.0 + (W - 1) * min(1.0, (epoch + k / steps)
                                                        / params["warmup"]))
        net.apply_gradients(_wire.split(buf[:nv], *_wire.sizes(net)), opt,
                            s.config.alpha / tot)
        s.step_cpu_s += time.process_time() - c1
        loss_sum += float(buf[nv + 1])
        rows += float(buf[nv + 2])
        s.steps += 1
        if time.monotonic() - beat > 1.0:   # proof of life: the server hears nothing else
            beat = time.monotonic()
            ch.isend(("alive",), P.TAG_ALIVE)
            ch.trim()
    if ch.rank == 0:
        ch.send({"loss": loss_sum / max(rows, 1.0), "t": getattr(opt, "t", 0)}, TAG_RES)
        ch.Isend(_wire.pack_values(net), TAG_GD)
        ch.Isend(_wire.pack_velocity(net), TAG_GD)
        ch.flush()
    else:
        ch.send(("ok", ch.rank), TAG_RES)


def allreduce_model(w, info):
    """Mode "allreduce": worker 0's model (just received from the server, with its
    optimizer state) broadcast to the other workers."""
    ch, s = w.ch, w.state
    root = ch.rank == 0
    meta = s.meta if root else np.empty(P.meta_len(info["n_layers"]), dtype=np.int64)
    ch.Bcast(meta)
    arrays = s.arrays if root else _wire.empty_structure(meta)
    for a in arrays:
        ch.Bcast(a)
    n_vals = int(sum(meta[3::3]) + sum(meta[2::3]))
    flat = s.flat if root else np.empty(n_vals, dtype=s.dtype)
    vel = (_wire.pack_velocity(s.net) if root
           else np.empty(n_vals * (1 if s.adam is None else 2), dtype=s.dtype))
    ch.Bcast(flat)
    ch.Bcast(vel)
    if not root:
        s.meta, s.arrays, s.flat = meta, arrays, flat
        s.net = _wire.build_network(meta, arrays, flat, s.proto, vel)
        s.version = int(info["version"])
    ch.send(("ok", ch.rank), TAG_RES)


def local_epoch(w, params):
    """Phase 2: one local epoch with the worker's own SET; the model goes back."""
    ch, s = w.ch, w.state
    w.faults.check("phase2")
    t0, c0 = time.perf_counter(), time.process_time()
    if s.opt is None:
        s.opt = s.optimizer(params["lr"], int(params.get("t", 0)))
    s.opt.learning_rate = params["lr"]
    if params["evolve"]:
        evolve_topology(s.net, int(params["epochs_done"]), s.local_config, s.rng,
                        (s.X, s.Y, s.sw))
    loss = run_epoch(s.net, s.X, s.Y, s.sw, s.batch_size, s.opt, s.local_config, s.rng,
                     s.shuffle)
    s.compute_s += time.perf_counter() - t0
    s.compute_cpu_s += time.process_time() - c0
    s.steps += -(-s.X.shape[0] // s.batch_size)
    meta, arrays = _wire.structure_arrays(s.net)
    ch.send({"rank": ch.rank, "loss": float(loss), "n": int(s.X.shape[0])}, TAG_RES)
    ch.Isend(meta, TAG_GD)
    for a in arrays:
        ch.Isend(a, TAG_GD)
    ch.Isend(_wire.pack_values(s.net), TAG_GD)
    ch.Isend(_wire.pack_velocity(s.net), TAG_GD)
    ch.flush()


# command name -> handler(worker, *arguments); the worker loop runs them
HANDLERS = {P.CMD_INIT: init, P.CMD_SHARD: recv_shard, P.CMD_MODEL: recv_model,
            P.CMD_PHASE1: phase1, P.CMD_EPOCH: local_epoch, P.CMD_STATS: stats,
            P.CMD_AR_EPOCH: allreduce_epoch, P.CMD_AR_MODEL: allreduce_model}

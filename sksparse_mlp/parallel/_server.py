"""WASAP-SGD parameter server: runs in the helper process (``_helper``; in the caller itself
when that was started by ``mpiexec``) and drives the spawned workers.

Phase 1 (the first ``phase1_fraction`` of the epochs): every worker computes the gradient
of one batch of its shard on its copy of the model and sends it; the server applies a
momentum-SGD step (it owns the momentum) and sends the current model back. In ``"async"``
mode each gradient is applied as it arrives; a gradient computed on an older topology is
masked to the current pattern (``project_to_pattern``), so it cannot revive removed
connections, and one computed before a neuron removal is dropped. In ``"sync"`` mode the
server waits for all workers, averages their gradients (weighted by their samples), and
takes one step with the learning rate scaled by ``n_workers`` after a 5-epoch linear
warm-up; together with the per-worker seeds derived from ``rng`` this is reproducible.
In ``"allreduce"`` mode the workers take the sync mode's steps without the server: they
sum their gradients with MPI's ``Allreduce`` among themselves and each applies the same
step (they own the momentum); once per epoch worker 0 sends the model back, and the
server's new topology goes to worker 0, which broadcasts it.
One server epoch is ``ceil(n_samples / batch_size)`` gradients (async) or
``ceil(n_samples / (batch_size * n_workers))`` averaged steps (sync, allreduce); at its end
the server calls ``on_epoch_end`` and then runs importance pruning + SET
(``evolve_topology``).

Phase 2 (the remaining epochs): each worker trains locally on its shard with its own SET
(``run_epoch`` / ``evolve_topology``, the same code as the local optimizer), so their
topologies diverge. After every epoch the server averages the worker models over the union
of their connections (a missing connection counts 0) and prunes by magnitude back to its
own connection count: the result is the server model (reported to ``on_epoch_end``, used
for early stopping, and returned after the last epoch). Workers are never reset to the
server model in phase 2.

Between topology changes only ``W.data`` values and biases travel (one flat buffer, with
upper-case MPI calls); the sparsity structure is sent only after it changed.
"""
import dataclasses
import math
import time

import numpy as np
import scipy.sparse as sp

from .._network import SparseLayer, SparseMLP, evolve_topology
from .._topology import _make_csr
from . import _protocol as P
from . import _start, _wire
from ._merge import average_union, project_to_pattern, prune_to_nnz

WARMUP_EPOCHS = 5


class _Server:
    def __init__(self, pool, network, config, optimizer, rng, on_epoch_end, epochs_done):
        self.pool = pool
        self.net = network
        self.config = config
        self.opt = optimizer
        self.rng = rng
        self.on_epoch_end = on_epoch_end
        self.epochs_done = int(epochs_done)   # epochs completed before this fit (warm start)
        self.epochs = 0                      # epochs completed in this fit
        self.version = 0
        self.shape_version = 0
        self.history = {}
        self._record()
        self.worker_version = [0] * pool.n
        self._values = None                  # cached packed values of the current model
        self._struct = None                  # cached structure arrays of the current version
        self.stopped = False
        self.compute_s = 0.0
        # phase-1 statistics (the benchmarks' inputs): gradients received and steps taken,
        # server time from a gradient's arrival to the replies posted (wall, CPU), epoch
        # ends (reporting to the caller + evolution) counted apart
        self.gradients = self.received = self.steps = self.structure_replies = 0
        self.bytes_in = self.bytes_out = 0  # phase-1 loop traffic: gradients and replies
        self.update_s = self.update_cpu_s = 0.0
        self.epoch_end_s = self.epoch_end_cpu_s = self.evolve_s = 0.0
        self.data = None                     # (X, Y, sample_weight): regrow="gradient"

    # ------------------------------------------------------------------ topology versions
    def _record(self):
        self.history[self.version] = [(l.W.indptr, l.W.indices, l.W.shape) for l in self.net.layers]

    def _new_version(self, shapes_changed):
        self.version += 1
        if shapes_changed:
            self.shape_version = self.version
        self._record()
        self._struct = None
        self._values = None
        alive = min(self.worker_version) if self.worker_version else self.version
        for v in [v for v in self.history if v < alive and v != self.version]:
            del self.history[v]

    def _align(self, buf, ver):
        """Gradient buffer computed on version ``ver`` -> per-layer gradients aligned with
        the current model (views when the topology is current), or None to drop it."""
        net = self.net
        if ver == self.version:
            return _wire.split(buf, *_wire.sizes(net))
        if ver < self.shape_version or ver not in self.history:
            return None
        old = self.history[ver]
        parts = _wire.split(buf, [len(ind) for _, ind, _ in old], [s[1] for _, _, s in old])
        out = []
        for (indptr, indices, shape), (gW, gb), layer in zip(old, parts, net.layers):
            W = layer.W
            if indices is W.indices and indptr is W.indptr:
                out.append((gW, gb))
            else:
                src = _make_csr(gW, indices, indptr, shape)
                out.append((project_to_pattern(src, W), gb))
        return out

    # ------------------------------------------------------------------ messages
    def values(self):
        if self._values is None:
            self._values = _wire.pack_values(self.net)
        return self._values

    def send_model(self, r, with_velocity):
        pool = self.pool
        pool.send((P.CMD_MODEL, {"n_layers": len(self.net.layers), "version": self.version,
                             "with_velocity": with_velocity}), r)
        meta, arrays = _wire.structure_arrays(self.net)
        for a in [meta] + arrays:
            pool.isend_async(a, r, P.TAG_MD)
        pool.isend_async(self.values(), r, P.TAG_MD)
        if with_velocity:
            pool.isend_async(_wire.pack_velocity(self.net), r, P.TAG_MD)
        self.worker_version[r] = self.version

    def reply(self, r, end=False):
        pool = self.pool
        if end:
            pool.isend_async(np.array([P.END, self.version, 0, 0], dtype=np.int64), r, P.TAG_MH)
            return
        if self.worker_version[r] == self.version:
            pool.isend_async(np.array([P.VALUES, self.version, 0, 0], dtype=np.int64),
                             r, P.TAG_MH)
        else:
            pool.isend_async(np.array([P.STRUCTURE, self.version, 0, 0], dtype=np.int64),
                             r, P.TAG_MH)
            self.structure_replies += 1
            if self._struct is None:
                self._struct = _wire.structure_arrays(self.net)
            meta, arrays = self._struct
            for a in [meta] + arrays:
                pool.isend_async(a, r, P.TAG_MD)
        pool.isend_async(self.values(), r, P.TAG_MD)
        self.worker_version[r] = self.version

    def recv_gradient(self, ranks):
        """Next gradient from any of ``ranks``: (rank, version, loss, total, n, buffer)."""
        pool = self.pool
        src, _, m = pool.wait_any([P.TAG_GH], ranks)
        hdr = np.empty(P.GRAD_HEADER, dtype=np.float64)
        m.Recv(hdr)
        ver, loss, total, nb, size = int(hdr[0]), float(hdr[1]), float(hdr[2]), int(hdr[3]), int(hdr[4])
        buf = None
        if size:
            buf = np.empty(size, dtype=self.net.dtype)
            pool.Recv(buf, src, P.TAG_GD)
        pool.trim()
        self.received += 1
        return src, ver, loss, total, nb, buf

    # ------------------------------------------------------------------ epochs
    def _timed(self, t0, c0, e0, ec0):
        """Add the time since ``(t0, c0)`` to the update time, but for epoch ends."""
        self.update_s += time.perf_counter() - t0 - (self.epoch_end_s - e0)
        self.update_cpu_s += time.process_time() - c0 - (self.epoch_end_cpu_s - ec0)

    def end_epoch(self, loss, last_epoch_of_phase):
        """Report the epoch; evolve the topology unless training (or the phase) ends."""
        t_end, c_end = time.perf_counter(), time.process_time()
        try:
            return self._end_epoch(loss, last_epoch_of_phase)
        finally:
            self.epoch_end_s += time.perf_counter() - t_end
            self.epoch_end_cpu_s += time.process_time() - c_end

    def _end_epoch(self, loss, last_epoch_of_phase):
        self.epochs += 1
        stop = bool(self.on_epoch_end(loss)) if self.on_epoch_end is not None else False
        if stop:
            self.stopped = True
        if stop or last_epoch_of_phase:
            return True
        t0 = time.perf_counter()
        shapes = [l.W.shape for l in self.net.layers]
        evolve_topology(self.net, self.epochs_done + self.epochs, self.config, self.rng,
                        self.data)
        self._new_version([l.W.shape for l in self.net.layers] != shapes)
        self.compute_s += time.perf_counter() - t0
        self.evolve_s += time.perf_counter() - t0
        return False

    def _traffic(self, start=None):
        """Bytes counted by the pool; with ``start``, add the difference to the phase-1 loop
        traffic."""
        now = (self.pool.stats["bytes_in"], self.pool.stats["bytes_out"])
        if start is not None:
            self.bytes_in += now[0] - start[0]
            self.bytes_out += now[1] - start[1]
        return now

    def phase1_async(self, n_epochs, steps_per_epoch):
        b0 = self._traffic()
        n = self.pool.n
        ended, finished = set(), False
        loss_acc = n_acc = 0.0
        steps = 0
        while len(ended) < n:
            src, ver, loss, total, nb, buf = self.recv_gradient([r for r in range(n) if r not in ended])
            if finished:
                self.reply(src, end=True)
                ended.add(src)
                continue
            t0, c0, e0, ec0 = (time.perf_counter(), time.process_time(), self.epoch_end_s,
                               self.epoch_end_cpu_s)
            self.gradients += 1
            self.steps += 1
            if buf is not None and total > 0:
                grads = self._align(buf, ver)
                if grads is not None:
                    self.net.apply_gradients(grads, self.opt, self.config.alpha / total)
                    self._values = None
            self.compute_s += time.perf_counter() - t0
            loss_acc += loss * nb
            n_acc += nb
            steps += 1
            if steps >= steps_per_epoch:
                finished = self.end_epoch(loss_acc / max(n_acc, 1.0),
                                          self.epochs + 1 >= n_epochs)
                loss_acc = n_acc = 0.0
                steps = 0
            if finished:
                self.reply(src, end=True)
                ended.add(src)
            else:
                self.reply(src)
            self._timed(t0, c0, e0, ec0)
        self.pool.flush()
        self._traffic(b0)

    def phase1_sync(self, n_epochs, steps_per_epoch):
        b0 = self._traffic()
        n = self.pool.n
        finished = False
        loss_acc = n_acc = 0.0
        steps = 0
        base_lr = None
        while not finished:
            got = {}
            while len(got) < n:
                src, ver, loss, total, nb, buf = self.recv_gradient([r for r in range(n) if r not in got])
                got[src] = (ver, loss, total, nb, buf)
            t0 = time.perf_counter()
            t1, c1, e1, ec1 = t0, time.process_time(), self.epoch_end_s, self.epoch_end_cpu_s
            self.gradients += n
            self.steps += 1
            tot = sum(g[2] for g in got.values())
            if tot > 0:
                combined = None
                for r in range(n):                       # rank order: reproducible sums
                    ver, loss, total, nb, buf = got[r]
                    if buf is None or total <= 0:
                        continue
                    if combined is None:
                        combined = buf * buf.dtype.type(total / tot)
                    else:
                        combined += buf * buf.dtype.type(total / tot)
                grads = self._align(combined, got[0][0])
                progress = self.epochs + steps / steps_per_epoch
                factor = 1.0 + (n - 1) * min(1.0, progress / WARMUP_EPOCHS)
                base_lr = self.opt.learning_rate
                self.opt.learning_rate = base_lr * factor
                try:
                    self.net.apply_gradients(grads, self.opt, self.config.alpha / tot)
                finally:
                    self.opt.learning_rate = base_lr
                self._values = None
            self.compute_s += time.perf_counter() - t0
            for r in range(n):
                loss_acc += got[r][1] * got[r][3]
                n_acc += got[r][3]
            steps += 1
            if steps >= steps_per_epoch:
                finished = self.end_epoch(loss_acc / max(n_acc, 1.0),
                                          self.epochs + 1 >= n_epochs)
                loss_acc = n_acc = 0.0
                steps = 0
            for r in range(n):
                self.reply(r, end=finished)
            self._timed(t1, c1, e1, ec1)
        self.pool.flush()
        self._traffic(b0)

    def phase1_allreduce(self, n_epochs, steps_per_epoch):
        """Mode "allreduce": the workers average their gradients among themselves; the
        server hears from them once per epoch (worker 0's model), reports the epoch,
        evolves the topology and sends the new model to worker 0, which broadcasts it."""
        b0 = self._traffic()
        pool, n, net = self.pool, self.pool.n, self.net
        n_state = 2 if net.layers[0].second is not None else 1  # Adam: 2 moments
        finished = False
        while not finished:
            for r in range(n):
                pool.send((P.CMD_AR_EPOCH, {
                    "lr": self.opt.learning_rate, "t": getattr(self.opt, "t", 0),
                    "epoch": self.epochs, "steps": steps_per_epoch, "n_workers": n,
                    "warmup": WARMUP_EPOCHS}), r)
            info = pool.recv(0)
            vals = np.empty(_wire.value_size(net), dtype=net.dtype)
            state = np.empty(n_state * vals.size, dtype=net.dtype)
            pool.Recv(vals, 0, P.TAG_GD)
            pool.Recv(state, 0, P.TAG_GD)
            for r in range(1, n):
                pool.recv(r)
            t0, c0, e0, ec0 = (time.perf_counter(), time.process_time(), self.epoch_end_s,
                               self.epoch_end_cpu_s)
            _wire.unpack_into(net, vals, state)
            self._values = None
            if hasattr(self.opt, "t"):
                self.opt.t = int(info["t"])
            self.steps += steps_per_epoch
            self.gradients += n * steps_per_epoch
            finished = self.end_epoch(info["loss"], self.epochs + 1 >= n_epochs)
            if not finished:
                self.send_model(0, with_velocity=True)
                pool.flush()
                pool.recv(0)
                for r in range(n):
                    pool.send((P.CMD_AR_MODEL, {"n_layers": len(net.layers),
                                                "version": self.version}), r)
                for r in range(n):
                    pool.recv(r)
                    self.worker_version[r] = self.version
            self._timed(t0, c0, e0, ec0)
        self._traffic(b0)

    def phase2(self, n_epochs):
        pool, n = self.pool, self.pool.n
        net = self.net
        for r in range(n):
            self.send_model(r, with_velocity=True)
        pool.flush()
        for r in range(n):
            pool.recv(r)
        target = net.n_connections
        for k in range(n_epochs):
            done = self.epochs_done + self.epochs
            for r in range(n):
                pool.send((P.CMD_EPOCH, {"lr": self.opt.learning_rate, "evolve": done > 0,
                                     "epochs_done": done, "t": getattr(self.opt, "t", 0)}), r)
            results = {}
            L = len(net.layers)
            while len(results) < n:
                src, _, m = pool.wait_any([P.TAG_RES], [r for r in range(n) if r not in results])
                info = m.recv()
                meta = np.empty(P.meta_len(L), dtype=np.int64)
                pool.Recv(meta, src, P.TAG_GD)
                arrays = _wire.empty_structure(meta)
                for a in arrays:
                    pool.Recv(a, src, P.TAG_GD)
                n_vals = int(sum(meta[3::3]) + sum(meta[2::3]))
                vals = np.empty(n_vals, dtype=net.dtype)
                n_state = 2 if net.layers[0].second is not None else 1  # Adam: 2 moments
                vel = np.empty(n_state * n_vals, dtype=net.dtype)
                pool.Recv(vals, src, P.TAG_GD)
                pool.Recv(vel, src, P.TAG_GD)
                results[src] = (info, meta, arrays, vals, vel)
            t0 = time.perf_counter()
            self._merge([results[r] for r in range(n)], target)
            self.compute_s += time.perf_counter() - t0
            loss = (sum(res[0]["loss"] * res[0]["n"] for res in results.values())
                    / sum(res[0]["n"] for res in results.values()))
            self.epochs += 1
            if self.on_epoch_end is not None and self.on_epoch_end(loss):
                self.stopped = True
                break

    def _merge(self, results, target):
        """Average the workers' models over the union of their connections, then prune by
        magnitude back to the server's connection count, layer by layer."""
        net = self.net
        L = len(net.layers)
        per_worker = []
        for info, meta, arrays, vals, vel in results:
            nnzs = [int(meta[3 + 3 * l]) for l in range(L)]
            n_outs = [int(meta[2 + 3 * l]) for l in range(L)]
            shapes = [(int(meta[1 + 3 * l]), n_outs[l]) for l in range(L)]
            second = vel[len(vals):]  # Adam's second moments (empty with SGD)
            per_worker.append((arrays, shapes, _wire.split(vals, nnzs, n_outs),
                               _wire.split(vel, nnzs, n_outs),
                               _wire.split(second, nnzs, n_outs) if len(second) else None))
        new_layers = []
        for l in range(L):
            Ws, Vs, bs, bvs, Ss, bss = [], [], [], [], [], []
            for arrays, shapes, parts, vparts, sparts in per_worker:
                Ws.append(_make_csr(parts[l][0], arrays[2 * l + 1], arrays[2 * l], shapes[l]))
                Vs.append(_make_csr(vparts[l][0], arrays[2 * l + 1], arrays[2 * l], shapes[l]))
                bs.append(parts[l][1])
                bvs.append(vparts[l][1])
                if sparts is not None:
                    Ss.append(_make_csr(sparts[l][0], arrays[2 * l + 1], arrays[2 * l],
                                        shapes[l]))
                    bss.append(sparts[l][1])
            Wavg = average_union(Ws)
            Vavg = average_union(Vs)          # same union pattern, same order as Wavg
            Wnew, kept = prune_to_nnz(Wavg, target[l], return_kept=True)
            dtype = net.dtype
            bias = np.mean(np.stack(bs), axis=0).astype(dtype)
            bvel = np.mean(np.stack(bvs), axis=0).astype(dtype)
            second = ((np.ascontiguousarray(average_union(Ss).data[kept]),
                       np.mean(np.stack(bss), axis=0).astype(dtype)) if Ss else ())
            new_layers.append(SparseLayer(Wnew, bias, np.ascontiguousarray(Vavg.data[kept]), bvel,
                                          *second))
        net.layers[:] = new_layers


def train(plan, network, optimizer, rng, on_epoch_end=None, hooks=None, pool=None):
    """Train ``network`` in place with WASAP-SGD as ``plan`` says; returns run statistics.

    Parameters
    ----------
    plan : TrainingPlan
    network : SparseMLP
        Model to train; it is updated in place (its ``layers`` list) after every server
        step / epoch, so ``on_epoch_end`` sees the current model.
    optimizer : MomentumSGD or Adam
        Used by the server in phase 1 (it owns the momentum, or Adam's moments); its
        current learning rate (and Adam's step count) goes to the workers in phase 2.
        Schedules driven by ``on_epoch_end`` apply.
    rng : numpy.random.Generator
        Drives the shards, the workers' seeds and the server's topology changes.
    on_epoch_end : callable(loss) -> bool or None
        Called after every epoch with its mean training loss; returning True stops.
    hooks : dict or None
        Test hooks (``_testing.hooks``).
    pool : Pool or None
        The run's pool from :func:`_start.start` (the helper starts it before it has
        the plan); started here when None. Closed when training ends, in any case.

    Returns
    -------
    stats : dict
        Timings and byte counts of the run.

    Raises
    ------
    ImportError
        mpi4py or an MPI library is missing (the message says how to install them).
    WorkerError, WorkerDied, WorkerTimeout
        A worker raised, died or stalled; no worker process is left behind.
    """
    hooks = hooks or {}
    plan.check()
    X, Y, sample_weight, config = plan.X, plan.Y, plan.sample_weight, plan.config
    t_start = time.perf_counter()
    n = X.shape[0]
    n_workers, mode, timeout = int(plan.n_workers), plan.mode, plan.timeout
    batch_size, max_epochs = int(plan.batch_size), int(plan.max_epochs)
    n1 = int(round(float(plan.phase1_fraction) * max_epochs))
    n2 = max_epochs - n1
    seeds = rng.integers(0, np.iinfo(np.int64).max, size=n_workers)
    shards = np.array_split(rng.permutation(n), n_workers)
    stats = {"n_workers": n_workers, "mode": mode}
    if pool is None:
        pool = _start.start(P.start_spec(plan, hooks))
    with pool:
        stats["spawn_s"] = pool.stats["spawn_s"]
        stats["worker_hosts"] = [pool.hosts[r] for r in range(n_workers)]
        t_setup = pool.setup_t0
        for r in range(n_workers):
            pool.recv(r)
        cfg = {"config": {f: getattr(config, f) for f in config.__dataclass_fields__},
               "batch_size": batch_size, "shuffle": bool(plan.shuffle),
               "proto": _wire.proto_of(network), "momentum": optimizer.momentum,
               "nesterov": getattr(optimizer, "nesterov", False),
               "adam": ([optimizer.beta_1, optimizer.beta_2, optimizer.eps]
                        if hasattr(optimizer, "beta_2") else None)}
        for r in range(n_workers):
            pool.send((P.CMD_INIT, dict(cfg, seed=int(seeds[r]), sparse_X=sp.issparse(X))), r)
        _warm_up(network, optimizer, config)   # while the workers warm up theirs
        pool.touch()
        for r in range(n_workers):
            pool.recv(r)
        for r in range(n_workers):
            _send_shard(pool, r, X, Y, sample_weight, shards[r])
        for r in range(n_workers):
            pool.recv(r)
        pool.timeout = timeout
        pool.touch()
        server = _Server(pool, network, config, optimizer, rng, on_epoch_end, plan.epochs_done)
        server.data = (plan.X, plan.Y, plan.sample_weight)
        optimizer.prepare(network)  # the server owns the optimizer state (Adam's too)
        stats["setup_s"] = time.perf_counter() - t_setup
        t_train = time.perf_counter()
        wait0, out0, in0 = pool.stats["wait_s"], pool.stats["bytes_out"], pool.stats["bytes_in"]
        if n1 > 0:
            for r in range(n_workers):      # "allreduce": the workers own the momentum
                server.send_model(r, with_velocity=mode == "allreduce")
            pool.flush()
            for r in range(n_workers):
                pool.recv(r)
            if mode == "allreduce":
                server.phase1_allreduce(n1, max(1, math.ceil(n / (batch_size * n_workers))))
            else:
                for r in range(n_workers):
                    pool.send((P.CMD_PHASE1, {}), r)
                if mode == "async":
                    server.phase1_async(n1, max(1, math.ceil(n / batch_size)))
                else:
                    server.phase1_sync(n1, max(1, math.ceil(n / (batch_size * n_workers))))
                for r in range(n_workers):
                    pool.recv(r)                        # phase1_done
        stats["phase1_s"] = time.perf_counter() - t_train
        for k in ("bytes_in", "bytes_out", "gradients", "received", "steps",
                  "structure_replies", "update_s", "update_cpu_s", "epoch_end_s", "evolve_s"):
            stats["phase1_" + k] = getattr(server, k)
        if n2 > 0 and not server.stopped:
            server.phase2(n2)
        stats["train_s"] = time.perf_counter() - t_train
        stats["workers"] = []
        for r in range(n_workers):
            pool.send((P.CMD_STATS,), r)
            stats["workers"].append(pool.recv(r))
        stats["server_compute_s"] = server.compute_s
        stats["server_wait_s"] = pool.stats["wait_s"] - wait0
        stats["bytes_out"] = pool.stats["bytes_out"] - out0
        stats["bytes_in"] = pool.stats["bytes_in"] - in0
        stats["epochs"] = server.epochs
        t_close = time.perf_counter()
    stats["close_s"] = time.perf_counter() - t_close
    stats["total_s"] = time.perf_counter() - t_start
    return stats


def _warm_up(network, optimizer, config):
    """Load (or compile) the server's numba kernels (optimizer step, SET) on a tiny network
    of the real dtype before training: in a fresh helper process the first update
    otherwise took seconds (loading numba's cache), measured as server time per update.
    Copies of the optimizer and its own generator: the real ones are not touched."""
    import copy
    rng = np.random.default_rng(0)
    net = SparseMLP.random([6, 6, 2], [0.5, 1.0], rng, init=config.init, dtype=network.dtype)
    opt = copy.deepcopy(optimizer)
    net.apply_gradients([(np.zeros_like(l.W.data), np.zeros_like(l.bias)) for l in net.layers],
                        opt, 0.0)
    if config.zeta > 0:
        X = rng.random((3, 6)).astype(net.dtype)
        Y = np.eye(2, dtype=net.dtype)[[0, 1, 0]]
        evolve_topology(net, 1, dataclasses.replace(config, importance_pruning=False), rng,
                        (X, Y, None))


def _send_shard(pool, r, X, Y, sample_weight, idx):
    idx = np.sort(idx)
    Xs = X[idx]
    Ys = np.ascontiguousarray(Y[idx])
    meta = {"y_shape": Ys.shape, "y_dtype": Ys.dtype.str, "has_sw": sample_weight is not None}
    if sp.issparse(Xs):
        Xs = sp.csr_matrix(Xs)
        Xs.sort_indices()
        idx_dtype = np.result_type(Xs.indices.dtype, Xs.indptr.dtype)
        arrays = [np.ascontiguousarray(Xs.data), Xs.indices.astype(idx_dtype),
                  Xs.indptr.astype(idx_dtype)]
        meta.update(sparse=True, shape=Xs.shape, dtype=Xs.data.dtype.str, nnz=Xs.nnz,
                    idx_dtype=idx_dtype.str)
    else:
        Xs = np.ascontiguousarray(Xs)
        arrays = [Xs]
        meta.update(sparse=False, shape=Xs.shape, dtype=Xs.dtype.str)
    arrays.append(Ys)
    if sample_weight is not None:
        arrays.append(np.ascontiguousarray(sample_weight[idx], dtype=np.float64))
    pool.send((P.CMD_SHARD, meta), r)
    for a in arrays:
        pool.isend_async(a, r, P.TAG_MD)
    pool.flush()

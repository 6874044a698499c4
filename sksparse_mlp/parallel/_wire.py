"""Packing a sparse network into the buffers of the wire format (``_protocol``) and back.

Between topology changes only the values travel, as one flat buffer; the structure (shape
and CSR ``indptr`` / ``indices`` of every layer) is sent only after it changed. All of it
goes through buffer-based (upper-case) MPI calls. No scikit-learn is imported here.
"""
import numpy as np

from .._network import SparseLayer, SparseMLP
from .._topology import _make_csr


def value_size(net):
    return int(sum(layer.W.nnz + layer.n_out for layer in net.layers))


def pack_values(net, out=None):
    """Concatenate the weight values and biases into one flat buffer."""
    parts = [layer.W.data for layer in net.layers] + [layer.bias for layer in net.layers]
    return np.concatenate(parts, out=out) if out is not None else np.concatenate(parts)


def pack_velocity(net):
    """Optimizer state in the values layout; Adam's second moments follow in a second
    block of the same layout (the buffer is then twice as long)."""
    parts = ([layer.velocity for layer in net.layers]
             + [layer.bias_velocity for layer in net.layers])
    if net.layers[0].second is not None:
        parts += ([layer.second for layer in net.layers]
                  + [layer.bias_second for layer in net.layers])
    return np.concatenate(parts)


def unpack_into(net, values, state):
    """Copy a values buffer and an optimizer-state buffer (:func:`pack_values`,
    :func:`pack_velocity` layouts) into ``net``, whose structure they match."""
    nnz, n_out = sizes(net)
    second = len(state) > len(values)
    for layer, (w, b), (v, bv) in zip(net.layers, split(values, nnz, n_out),
                                      split(state, nnz, n_out)):
        layer.W.data[:], layer.bias[:] = w, b
        layer.velocity[:], layer.bias_velocity[:] = v, bv
    if second:
        for layer, (m, bm) in zip(net.layers, split(state[len(values):], nnz, n_out)):
            layer.second[:], layer.bias_second[:] = m, bm


def pack_grads(grads, out):
    """``grads`` as returned by ``SparseMLP.loss_and_gradients`` -> ``out`` (same layout)."""
    return np.concatenate([g for g, _ in grads] + [b for _, b in grads], out=out)


def split(flat, sizes_W, sizes_b):
    """Views of ``flat`` per layer: ``[(W_values, bias), ...]``."""
    out, k = [], 0
    ws = []
    for n in sizes_W:
        ws.append(flat[k:k + n])
        k += n
    for w, n in zip(ws, sizes_b):
        out.append((w, flat[k:k + n]))
        k += n
    return out


def sizes(net):
    return [layer.W.nnz for layer in net.layers], [layer.n_out for layer in net.layers]


def structure_arrays(net):
    """``meta`` (int64: L, then n_in, n_out, nnz per layer) and the index arrays (int64)."""
    meta = [len(net.layers)]
    arrays = []
    for layer in net.layers:
        W = layer.W
        meta += [W.shape[0], W.shape[1], W.nnz]
        arrays.append(np.ascontiguousarray(W.indptr, dtype=np.int64))
        arrays.append(np.ascontiguousarray(W.indices, dtype=np.int64))
    return np.asarray(meta, dtype=np.int64), arrays


def empty_structure(meta):
    """Receive buffers for the index arrays described by ``meta``."""
    L = int(meta[0])
    arrays = []
    for l in range(L):
        n_in, n_out, nnz = (int(v) for v in meta[1 + 3 * l: 4 + 3 * l])
        arrays.append(np.empty(n_in + 1, dtype=np.int64))
        arrays.append(np.empty(nnz, dtype=np.int64))
    return arrays


def build_network(meta, arrays, flat, proto, velocity=None):
    """A SparseMLP whose ``W.data`` and biases are *views* of ``flat`` (no copy), so that
    receiving a new values buffer into ``flat`` updates the model in place."""
    L = int(meta[0])
    shapes = [(int(meta[1 + 3 * l]), int(meta[2 + 3 * l])) for l in range(L)]
    nnzs = [int(meta[3 + 3 * l]) for l in range(L)]
    parts = split(flat, nnzs, [s[1] for s in shapes])
    vparts = sparts = None
    if velocity is not None:
        vparts = split(velocity, nnzs, [s[1] for s in shapes])
        if velocity.shape[0] == 2 * flat.shape[0]:  # Adam: second moments follow
            sparts = split(velocity[flat.shape[0]:], nnzs, [s[1] for s in shapes])
    layers = []
    for l in range(L):
        W = _make_csr(parts[l][0], arrays[2 * l + 1], arrays[2 * l], shapes[l])
        W.data = parts[l][0]            # scipy copied it: make it a view of ``flat`` again
        if vparts is not None:
            layer = SparseLayer(W, parts[l][1], vparts[l][0].copy(), vparts[l][1].copy(),
                                *((sparts[l][0].copy(), sparts[l][1].copy()) if sparts else ()))
        else:
            layer = SparseLayer(W, parts[l][1])
        layers.append(layer)
    return SparseMLP(layers, proto["activation"], proto["slope"], proto["out_activation"],
                     proto["loss"])


def proto_of(net):
    return {"activation": net.activation, "slope": net.slope,
            "out_activation": net.out_activation, "loss": net.loss,
            "dtype": np.dtype(net.dtype).str}

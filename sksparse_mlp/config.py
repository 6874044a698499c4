"""Tunables of the package, in one place, each with its reason.

Read at call time (``config.NAME``), so a test or a benchmark may change them.
None of them changes a trained model's numbers except where said.
"""
import glob
import os


def _l2_cache_bytes(default=512 << 10):
    """Size of one core's L2 cache, from sysfs (Linux) or sysconf; ``default`` if unknown."""
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(d, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip().upper()
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data") and size:
            unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            try:
                return int(size.rstrip("KMG")) * unit
            except ValueError:
                continue
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
        if size > 0:
            return int(size)
    except (ValueError, OSError, AttributeError):
        pass
    return default


# One core's L2 cache (512 KiB on Zen 3, 1 MiB on Zen 4).
L2_BYTES = _l2_cache_bytes()
# A batch panel of the widest layer may fill this fraction of it: every thread
# gathers rows from the whole panel, which must stay in its L2 next to the
# streamed indices and values (Zen 3, 1000 units: panels of 64 samples).
PANEL_L2_FRACTION = 0.5
# A sparse (CSR) input batch whose dense form takes at most this many bytes is
# densified and trained through the dense kernels: 128 rows of 784 features take
# 400 KB, and the epoch of the benchmark network took 3.2x longer through the
# sparse-input kernels.  Wider inputs (text, millions of features) stay sparse.
DENSE_INPUT_BATCH_BYTES = 16 << 20

# --------------------------------------------------------------- the estimators
# Minibatch size of batch_size="auto", capped at the number of samples: the batch
# size of the authors' runs. Changes the model (it is the SGD batch).
AUTO_BATCH_SIZE = 128
# Rows of the training data whose outputs are checked for overflow after every
# epoch, unless the network's bound on its outputs rules an overflow out (the
# weights themselves are checked in full). At most
# _fastpath._CSR_PREDICT, so a large model needs no transposed copy for the check.
PROBE_ROWS = 32

# --------------------------------------------------------------- the command line
# Held-out rows scored after every epoch for the progress line: scoring is not
# training time; 5000 rows give an accuracy to within about 1 % (binomial
# standard error at most 0.7 %).
PROGRESS_HOLDOUT_ROWS = 5000

# --------------------------------------------------------------- the engine
# The CSC views of the weights (8 bytes per connection) let the forward pass gather;
# without them it scatters from the CSR arrays (about 2x slower per connection).
# None: the engine drops them only when the free memory requires it; False: never
# (the leanest memory); True: always.
CSC_VIEWS = None
# Rows predicted per chunk (every chunk streams all weights once): the two activation
# buffers of 2048 rows of the benchmark network (16 MB) stay in L3 from one layer
# to the next; chunks of 8192 rows went through DRAM and were 1.13x slower.
PREDICT_CHUNK_ROWS = 2048
# Bytes the activations of one micro-batch may take; a larger batch is split into
# micro-batches whose gradients are summed (the same step up to rounding).  None:
# a third of the physical memory, between 512 MiB and 8 GiB.  The engine also keeps
# every buffer within the memory available when it makes them.
ACTIVATION_BUDGET = None
# Training picks its thread count (at most numba's) batch by batch from the batches'
# measured times (see _threads): with a busy process on the other core one thread
# beats two by 2x.  The model is the same for any thread count.  False: always
# numba's thread count.
ADAPTIVE_THREADS = True

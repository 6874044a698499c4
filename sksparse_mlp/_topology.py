"""The topology's functions under one name: sampling, SET and importance pruning.

The work lives in small modules of pure functions over a sparse layer:
:mod:`._sampling` (Erdős–Rényi density, random patterns, initial values),
:mod:`._set` (SET's prune-and-regrow), :mod:`._regrowth` (gradient-guided
regrowth), :mod:`._pruning` (neuron importance, removal of neurons) and
:mod:`._csr` (canonical CSR arrays). This module re-exports their public names
for readers and scripts that want the whole topology API in one import, and the
CSR helpers under the old path that ``parallel/`` still imports them from.
Nothing in the package but ``parallel/`` imports from here.
"""
# the old path of the CSR helpers, for parallel/ (_merge, _server, _wire); the
# redundant aliases mark them as re-exported
from ._csr import _as_canonical_csr as _as_canonical_csr
from ._csr import _idx_dtype as _idx_dtype
from ._csr import _make_csr as _make_csr
from ._csr import _row_counts as _row_counts
from ._pruning import drop_columns, drop_rows, importance_prune_mask, neuron_importance
from ._sampling import erdos_renyi_density, init_values, random_layer, sample_pattern
from ._set import prune_and_regrow

__all__ = [
    "erdos_renyi_density",
    "sample_pattern",
    "init_values",
    "random_layer",
    "prune_and_regrow",
    "neuron_importance",
    "importance_prune_mask",
    "drop_columns",
    "drop_rows",
]

"""Bootstrap of a spawned worker: ``python .../sksparse_mlp/parallel/_boot.py PKG_PARENT_DIR ARGS``.

``from mpi4py import MPI`` runs first (MPI_Init: Spawn returns as early as possible and
later import errors can be reported to the parent). The top-level ``sksparse_mlp/__init__``
(which imports scikit-learn, ~1.4 s) is not executed: the package is registered as a bare
namespace so that only the modules the worker needs are loaded. (The script is passed as a
path rather than with ``-c``: MPICH's PMI cannot carry newlines in Spawn arguments.)
"""
import sys


def _boot():
    from mpi4py import MPI  # noqa: F401  (first: MPI_Init)
    import os
    import types
    del sys.path[0]                  # this directory: its modules are not top-level modules
    if "sksparse_mlp" not in sys.modules:
        pkg = types.ModuleType("sksparse_mlp")
        pkg.__path__ = [sys.argv[1]]
        sys.modules["sksparse_mlp"] = pkg
    sys.path.insert(0, os.path.dirname(sys.argv[1]))
    from sksparse_mlp.parallel._worker import main
    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_boot())

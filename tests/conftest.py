"""Shared fixtures and the test markers.

Markers (``--strict-markers``: an unregistered one is an error):

``mpi``
    spawns MPI workers (needs the ``mpi`` extras); ``-m "not mpi"`` skips them.
``slow``
    takes more than a few seconds on a 2-core machine; ``-m "not slow"`` is the
    quick loop while working, the whole suite is what CI runs.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

_warmer = []


def pytest_configure(config):
    config.addinivalue_line("markers", "mpi: spawns MPI worker processes (mpi4py, mpich)")
    config.addinivalue_line("markers", "slow: more than a few seconds; deselect with "
                                       "-m 'not slow' for a quick loop")


def pytest_collection_finish(session):
    """Start ``warm_cache.py`` in the background when the session runs the tests that need
    its kernel variants (a cold cache compiles them on the second core meanwhile)."""
    files = {item.path.name for item in session.items}
    if {"test_estimators.py", "test_kernels.py"} & files and not session.config.option.collectonly:
        _warmer.append(subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "warm_cache.py")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))


def pytest_sessionfinish(session):
    for proc in _warmer:            # normally long done; never left behind
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def subprocess_env():
    """Environment for a child Python (an entry point, an example script)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    # numba's parallel kernels oversubscribe a busy 2-core CI machine; one
    # thread keeps tiny runs fast and their timing predictable
    env.setdefault("NUMBA_NUM_THREADS", "1")
    return env


@pytest.fixture
def small_classification():
    """60 samples, 5 features, 2 classes that the first feature separates."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    return X, (X[:, 0] > 0).astype(int)


@pytest.fixture
def small_regression():
    """60 samples, 5 features, a target linear in the first two."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    return X, X[:, 0] - 0.5 * X[:, 1]

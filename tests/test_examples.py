"""Every gallery example runs in smoke mode (tiny data, few epochs) and saves its figure."""
import glob
import os
import subprocess
import sys

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")
EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES_DIR, "plot_*.py")))


def test_examples_are_listed():
    assert EXAMPLES, "no examples found"
    readme = open(os.path.join(EXAMPLES_DIR, "README.txt")).read()
    for path in EXAMPLES:
        assert os.path.basename(path) in readme, path


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_smoke(path, tmp_path, subprocess_env):
    source = open(path).read()
    assert source.startswith('"""\n'), "sphinx-gallery needs a title docstring first"
    assert "# %%" in source
    env = dict(subprocess_env, SKSPARSE_MLP_SMOKE="1", SKSPARSE_MLP_OUTPUT_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, path], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    png = tmp_path / (os.path.splitext(os.path.basename(path))[0] + ".png")
    assert png.exists(), r.stdout[-2000:]
    assert png.stat().st_size > 10_000

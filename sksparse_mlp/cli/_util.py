"""What every command shares: the program name, the one-line error, output helpers."""
from __future__ import annotations

import math
import sys

import numpy as np

from .._version import __version__

PROG = "sksparse-mlp"


class CLIError(Exception):
    """An error reported as one line on stderr; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class NullStream:
    """A stream that drops what is written (the quiet mode of the warm-up message)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def fmt_int(n) -> str:
    """``1234567`` as ``1,234,567``."""
    return f"{int(n):,}"


def dense_params(sizes) -> int:
    """Weights of the dense network with these layer sizes (biases excluded)."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def as_tuple(sizes) -> tuple:
    """``hidden_layer_sizes`` as a tuple (it may be one int)."""
    return (sizes,) if isinstance(sizes, (int, np.integer)) else tuple(sizes)


def print_table(rows: list, headers: list, stream=None) -> None:
    """A Markdown table: first column left-aligned, the others right-aligned."""
    stream = stream or sys.stdout
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]

    def fmt(r):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    print(fmt(headers), file=stream)
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|", file=stream)
    for r in cols[1:]:
        print(fmt(r), file=stream)


def json_safe(value):
    """``value`` with numpy types, tuples and non-finite floats made JSON-writable."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)



def package_version() -> str:
    """The installed sksparse_mlp's version, written into model files and ``--version``."""
    return __version__

"""One ``train`` flag per estimator parameter.

The flags come from the estimators' signatures (names, defaults, kinds) and
their help text from :mod:`sksparse_mlp._docstrings`, the entries the estimators'
docstrings are made from; nothing is parsed out of docstring prose.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re

from .. import _docstrings
from .._estimators import TrulySparseMLPClassifier, TrulySparseMLPRegressor
from ._util import CLIError, one_line


def init_params(cls: type) -> list:
    """(name, default) of every ``__init__`` parameter of an estimator class."""
    sig = inspect.signature(cls.__init__)
    # callback takes a Python callable: no flag (the CLI sets its own progress line)
    return [(p.name, p.default) for p in sig.parameters.values()
            if p.name not in ("self", "callback")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def parse_layers(text: str) -> tuple:
    """Layer sizes from ``256,256`` (or ``256x256``, ``(256, 256)``); for argparse."""
    parts = [p for p in re.split(r"[,\sx]+", text.strip().strip("()[]")) if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes like 256,256 (got {text!r})") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one layer size")
    return sizes


def parse_literal(text: str):
    """'none' -> None, 'true'/'false' -> bool, ints, floats, JSON objects, comma-separated
    numbers (per-layer ``density`` / ``epsilon``) as a list, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if "," in text and not text.strip().startswith(("{", "[")):
        try:
            return [float(p) for p in text.split(",")]
        except ValueError:
            pass
    if text.strip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc.msg}") from None
    return text


def flag(name: str) -> str:
    """The flag of a parameter: ``--hidden-layer-sizes`` for ``hidden_layer_sizes``."""
    return "--" + name.replace("_", "-")


def _help(name: str, default, regressor_default) -> str:
    entry = _docstrings.PARAMETERS.get(name, _docstrings.Entry("", ""))
    text = " ".join(p for p in (entry.summary.replace("``", ""),
                                f"[{entry.type}]" if entry.type else "") if p)
    text += f" (default: {default!r}"
    if regressor_default != default:
        text += f"; with --regression: {regressor_default!r}"
    return (text + ")").replace("%", "%%")


def add_estimator_flags(parser: argparse.ArgumentParser) -> list:
    """Add one flag per parameter of the two estimators; returns the names added.

    Flags default to ``argparse.SUPPRESS`` so that a parameter the user does not
    give keeps the estimator's own default (the two cannot drift apart).
    """
    reg_params = dict(init_params(TrulySparseMLPRegressor))
    params = dict(reg_params)
    params.update(init_params(TrulySparseMLPClassifier))
    group = parser.add_argument_group(
        "estimator parameters",
        "Every parameter of TrulySparseMLPClassifier / TrulySparseMLPRegressor "
        "(see their docstrings). Unset flags keep the estimator's default.")
    for name, default in params.items():
        kw = dict(dest=name, default=argparse.SUPPRESS,
                  help=_help(name, default, reg_params.get(name, default)))
        if isinstance(default, bool):
            group.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, (tuple, list)):
            group.add_argument(flag(name), type=parse_layers, metavar="N,N,...", **kw)
        else:
            group.add_argument(flag(name), type=parse_literal, metavar=name.upper(), **kw)
    return list(params)


def estimator_from_args(args: argparse.Namespace, regression: bool):
    """Build the estimator from the flags the user gave; CLIError for a bad value."""
    cls = TrulySparseMLPRegressor if regression else TrulySparseMLPClassifier
    accepted = {name for name, _ in init_params(cls)}
    given = {k: v for k, v in vars(args).items() if k in args._estimator_params}
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise CLIError(f"{flag(unknown[0])} does not apply to {cls.__name__}")
    est = cls(**given)
    try:
        est._validate_params()
    except AttributeError:  # pragma: no cover
        pass
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc)) from None
    return est


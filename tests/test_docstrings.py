"""The estimators document themselves: numpydoc sections that agree with the code.

numpydoc's own validator checks every public method and both classes against
their signatures; the tests below add what it does not look at: defaults in
the docstring equal to the signature's, and the Attributes section equal to
the attributes a fitted model has.
"""
import inspect
import re
import warnings

import pandas as pd
import pytest
from numpydoc.docscrape import ClassDoc
from numpydoc.validate import validate

from sksparse_mlp import TrulySparseMLPClassifier, TrulySparseMLPRegressor, _docstrings

ESTIMATORS = [TrulySparseMLPClassifier, TrulySparseMLPRegressor]

# numpydoc checks left out, as scikit-learn leaves them out: See Also (SA01),
# examples (EX01) and extended summaries (ES01) of every method, the closing
# quotes' line (GL01, GL02), and a name on the Returns line (RT02: "self : X").
IGNORED = {"GL01", "GL02", "SA01", "EX01", "ES01", "RT02"}


def _own_public_methods(cls):
    """Public methods defined by this package (inherited scikit-learn ones document themselves)."""
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_") and member.__module__.startswith("sksparse_mlp"):
            yield name


@pytest.mark.parametrize("name", [
    f"sksparse_mlp.{cls.__name__}" + (f".{m}" if m else "")
    for cls in ESTIMATORS for m in ["", *_own_public_methods(cls)]])
def test_numpydoc_validation(name):
    errors = [f"{code}: {msg}" for code, msg in validate(name)["errors"] if code not in IGNORED]
    assert not errors, "\n".join([name, *errors])


def test_public_methods_are_checked():
    # the list above would pass vacuously if the filter dropped everything
    assert {"fit", "partial_fit", "predict", "predict_proba", "predict_log_proba"} <= set(
        _own_public_methods(TrulySparseMLPClassifier))
    assert {"fit", "partial_fit", "predict"} <= set(_own_public_methods(TrulySparseMLPRegressor))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_documented_defaults_are_the_signature_defaults(cls):
    documented = {p.name: p.type for p in ClassDoc(cls)["Parameters"]}
    signature = _docstrings.signature_defaults(cls)
    assert list(documented) == list(signature)
    for name, default in signature.items():
        m = re.search(r"default=(.*)$", documented[name])
        assert m, f"{name}: no default in {documented[name]!r}"
        literal = m.group(1).replace('"', "'")
        assert literal == repr(default), f"{name}: documented {m.group(1)}, signature {default!r}"


def test_regressor_signature_is_the_classifiers_but_three_defaults():
    clf = inspect.signature(TrulySparseMLPClassifier.__init__).parameters
    reg = inspect.signature(TrulySparseMLPRegressor.__init__).parameters
    assert [(p.name, p.kind) for p in clf.values()] == [(p.name, p.kind) for p in reg.values()]
    differ = {k for k in clf if clf[k].default != reg[k].default}
    assert differ == {"activation", "learning_rate_init", "loss"}
    assert reg["activation"].default == "relu" and reg["learning_rate_init"].default == 0.001
    assert (clf["loss"].default, reg["loss"].default) == ("log_loss", "squared_error")
    # the explicit __init__ stores every argument under its own name
    values = {k: (i if p.default is not False else True) for i, (k, p) in enumerate(reg.items())
              if k != "self"}
    assert TrulySparseMLPRegressor(**values).get_params() == values


def _public_fitted_attributes(est):
    # properties and class attributes (the regressor's out_activation_) count too
    names = set(vars(est)) | {n for n, v in inspect.getmembers(type(est))
                              if not inspect.isroutine(v)}
    return {n for n in names if n.endswith("_") and not n.startswith("_")}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_attributes_section_lists_the_fitted_attributes(cls, small_classification,
                                                       small_regression):
    X, y = small_classification if cls is TrulySparseMLPClassifier else small_regression
    X = pd.DataFrame(X, columns=list("abcde"))  # feature_names_in_ too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = cls(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    documented = {p.name for p in ClassDoc(cls)["Attributes"]}
    assert documented == _public_fitted_attributes(est)
    for attr in ClassDoc(cls)["Attributes"]:
        assert attr.type and attr.desc, attr.name

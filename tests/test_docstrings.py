"""Every docstring example runs, and every public parameter is documented."""

import doctest
import importlib
import inspect
import warnings

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

# Modules with public names (private modules are the implementation): every module
# a name of ``mahal`` comes from, and the public helpers.
PUBLIC_MODULES = sorted({"mahal", "mahal.base", "mahal.constraints", "mahal.linalg",
                         "mahal.reference"}
                        | {f"mahal.{module}" for module in
                           importlib.import_module("mahal")._PUBLIC.values()}
                        | {f"mahal.{module}" for module in
                           importlib.import_module("mahal")._SUBMODULES})


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (e.g. ConvergenceWarning of a short fit)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS
                                 | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_estimators_have_runnable_examples():
    # (the learners' docstrings show their use; doctest runs them above)
    import mahal

    for name in mahal.__all__:
        assert ">>> " in getattr(mahal, name).__doc__, name


def test_public_classes_cite_their_references():
    # every public class of mahal names the paper(s) it implements in a numpydoc
    # References section (load_dataset, a function, describes its sources itself)
    import mahal
    from numpydoc.docscrape import NumpyDocString

    missing = [name for name in mahal.__all__
               if inspect.isclass(getattr(mahal, name))
               and not "".join(NumpyDocString(getattr(mahal, name).__doc__)
                                   ["References"]).strip()]
    assert not missing, missing


def _public_objects():
    """``module.name`` and ``module.Class.method`` of every public class and
    function defined in a public module."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if (name.startswith("_") or getattr(obj, "__module__", None) != module_name
                    or not (inspect.isfunction(obj) or inspect.isclass(obj))):
                continue
            yield f"{module_name}.{name}"
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        yield f"{module_name}.{name}.{attr}"


@pytest.mark.parametrize("name", sorted(_public_objects()))
def test_every_public_parameter_is_documented(name):
    # numpydoc's validation: GL08 no docstring, PR01 a parameter not documented,
    # PR02 a documented parameter that does not exist
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"]
              if code in ("GL08", "PR01", "PR02")]
    assert not errors, f"{name}: {errors}"

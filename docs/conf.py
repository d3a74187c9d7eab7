"""Sphinx configuration for mahal's documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The gallery draws with matplotlib; never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

import mahal  # noqa: E402

project = "mahal"
author = "mahal developers"
copyright = "2026, mahal developers"
version = release = mahal.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]
default_role = "literal"

# --- API reference ----------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
# numpydoc lists the members; autosummary's per-class tables would repeat them.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# scikit-learn's inherited methods carry their own docstrings; don't validate them.
numpydoc_validation_checks = set()

# --- Gallery ------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "min_reported_time": 1,
    # run every example on every build (not only changed ones), so that a change in
    # mahal that breaks an example fails the build
    "run_stale_examples": True,
}

# --- HTML -----------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Classical Mahalanobis metric learners for scikit-learn",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_static_path = []
html_show_sourcelink = False


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document the methods mahal defines (its own and its mixins'), not those a learner
    inherits from scikit-learn (``get_params``, ``set_output``, ``set_fit_request``...):
    their docstrings point into scikit-learn's own documentation."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and callable(obj) and not module.startswith("mahal"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)

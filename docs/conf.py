"""Sphinx configuration of the fastloss documentation.

Build (warnings are errors, as in CI):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference is generated from the docstrings (autodoc + autosummary, numpydoc
format) of the names in ``fastloss.__all__``; ``api.rst`` groups them, and the build
fails when a public name is missing from it.  Without the compiled extension,
``import fastloss`` runs on the NumPy fallback, which has the same docstrings.
"""
import os
import pathlib
import re
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # document the source tree, not an installed copy

with warnings.catch_warnings():
    # "compiled extension is not loaded": the fallback documents the same API
    warnings.simplefilter("ignore")
    import fastloss  # noqa: E402

project = "fastloss"
author = "the fastloss developers"
copyright = "the fastloss developers"
version = release = fastloss.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: anchors for headings down to level 3 ([text](page.md#heading) links),
# and $...$ / ```{math} left alone (not used).
myst_heading_anchors = 3

# autosummary writes one page per function into api/ (generated, not tracked).
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
# The public functions carry the signature of their NumPy twin (functools.wraps).
autodoc_preserve_defaults = True

# numpydoc: no per-class member tables (there are no public classes), no validation
# pass (the docstrings are checked by the tests' own conventions).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# intersphinx: links to NumPy's and SciPy's docs need their inventories from the
# network.  An unreachable inventory is a warning, hence an error under -W, so the
# mapping is opt-in: FASTLOSS_DOCS_INTERSPHINX=1 when the build machine is online.
intersphinx_mapping = {}
if os.environ.get("FASTLOSS_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "python": ("https://docs.python.org/3/", None),
    }
intersphinx_timeout = 10

html_theme = "alabaster"
html_title = f"fastloss {release}"
html_theme_options = {"description": "Fast softmax, cross-entropy and their gradients "
                                     "for NumPy on the CPU"}

# Not documented as functions: the fallback module (described in api.rst) and the
# version string.
_NOT_FUNCTIONS = {"fallback", "__version__"}


def _check_api_page_lists_all(app):
    """Warn (an error under -W) when a name of fastloss.__all__ is not in api.rst."""
    from sphinx.util import logging

    text = (pathlib.Path(app.srcdir) / "api.rst").read_text()
    listed = set(re.findall(r"^\s+(\w+)\s*$", text, flags=re.M))
    missing = sorted(set(fastloss.__all__) - _NOT_FUNCTIONS - listed)
    if missing:
        logging.getLogger(__name__).warning(
            "docs/api.rst does not list these names of fastloss.__all__: %s",
            ", ".join(missing))


def setup(app):
    app.connect("builder-inited", _check_api_page_lists_all)

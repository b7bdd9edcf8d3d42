"""Sphinx configuration for jaxmom's documentation.

Build with ``python3 -m sphinx -W -b html docs docs/_build/html`` (warnings are errors). The API
reference is generated from the package at build time (``_ext/jaxmom_sphinx.py``), so it never
lists a name that is gone or misses a new one. No network is used: no intersphinx.
``tutorial.ipynb`` is stored without outputs and executed at every build (myst-nb, which also
reads the Markdown pages as MyST); an error in it fails the build.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the jaxmom checkout, installed or not
sys.path.insert(0, str(HERE / "_ext"))
# The notebook's kernel is another process: it finds the checkout through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p
)

import jaxmom  # noqa: E402

project = "jaxmom"
author = "the jaxmom authors"
copyright = "the jaxmom authors"
version = release = jaxmom.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "jaxmom_sphinx",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_ext",
    "_generated",  # experiments/gallery.py's numbers, included by pages, not pages themselves
    "jupyter_execute",
    "**.ipynb_checkpoints",
    "Thumbs.db",
    ".DS_Store",
]

# Every reference must resolve: a reference to a jaxmom name that no longer exists is an error
# under -W. Names of other libraries cannot be checked offline (no intersphinx), so they are let be.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!jaxmom\b).*")]

# Docstrings: Google style with jaxmom's extra "Equal to:" section (the twins' exact settings).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Equal to"]
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autosummary_generate = False

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks: run at every build, in the build's own kernel, and fail the build on an error.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_kernel_rgx_aliases = {".*": "python3"}

html_theme = "furo"
html_title = f"jaxmom {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
pygments_style = "friendly"
pygments_dark_style = "monokai"

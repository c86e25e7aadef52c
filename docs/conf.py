"""Sphinx configuration for the oauth-gateway documentation.

Build it from the repository root with the package installed (``pip install '.[docs]'``):

    sphinx-build -W --keep-going -n -b html docs docs/_build/html

The API pages are generated from the INSTALLED package's docstrings, the configuration
reference from its bundled JSON Schemas and the CLI reference from its argparse parser
(``docs/_ext/oauth_gateway_docs.py``). The build needs no network: intersphinx is off.
"""

from __future__ import annotations

import os
import sys

import oauth_gateway

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "oauth-gateway"
author = "The oauth-gateway maintainers"
copyright = "the oauth-gateway maintainers"
release = oauth_gateway.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "oauth_gateway_docs",
]

exclude_patterns = ["_build"]
# The README and CHANGELOG use ``literal`` for code; keep the default role plain too.
default_role = None
highlight_language = "python3"

# --- autodoc: types come from the annotations, shown in the description -------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" sections as fields: the attributes themselves are documented by autodoc.
napoleon_use_ivar = True

# --- cross-references: every one must resolve (sphinx-build -n) ---------------------------
nitpicky = True
# A public class is documented under its package name and, by autodoc, its module's
# (canonical) name; a bare "TokenAuth" in an annotation then matches both. Either is right.
suppress_warnings = ["ref.python"]
# Types from other projects. Without intersphinx (the build must work offline) Sphinx
# cannot link them, so they are named here instead of being reported as broken links.
# Everything in oauth_gateway must resolve; nothing of ours belongs in this list.
nitpick_ignore = [
    ("py:class", "requests.Session"),
    ("py:class", "requests.sessions.Session"),
    ("py:class", "requests.PreparedRequest"),
    ("py:class", "requests.models.PreparedRequest"),
    ("py:class", "requests.Response"),
    ("py:class", "requests.models.Response"),
    ("py:class", "requests.auth.AuthBase"),
    ("py:class", "requests.exceptions.RequestException"),
    ("py:class", "cachetools.TTLCache"),
    ("py:class", "urllib3.util.retry.Retry"),
    # Ours, but not objects of their own: the private helper class gateway_client() returns,
    # and attributes described in their class's "Attributes:" section (napoleon_use_ivar).
    ("py:class", "GatewayClient"),
    ("py:attr", "cert"),
    ("py:attr", "DPoPKey.jkt"),
    # Sphinx 7.1 on Python 3.8 reads TokenProvider.fetch's return annotation as the bare name;
    # the class is documented as oauth_gateway.client.TokenResponse (newer Sphinx links it).
    ("py:class", "TokenResponse"),
]
# Standard-library types: the same reason (no intersphinx to docs.python.org offline).
nitpick_ignore_regex = [
    (
        r"py:(class|exc|obj|func|data)",
        r"(datetime|threading|logging|os|types|io|argparse|itertools|collections\.abc|_thread|abc)\..*",
    ),
    # The integrations' frameworks, documented by their own projects (no intersphinx offline).
    (r"py:(class|exc|obj|func|data|meth)", r"(flask|django|prometheus_client|redis|urllib3|werkzeug)\..*"),
    ("py:exc", r"ImproperlyConfigured"),
    # Python 3.8 renders typing.ContextManager[...] as this name, which typing lacks.
    ("py:obj", r"typing\.AbstractContextManager"),
    # ... and typing.IO[str] as typing.IO, which it does not document as an object.
    ("py:obj", r"typing\.IO"),
]

# --- HTML ---------------------------------------------------------------------------------
html_theme = "furo"
html_title = "oauth-gateway %s" % release
html_static_path = ["_static"]
html_css_files = ["oauth-gateway.css"]

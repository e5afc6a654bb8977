"""Sphinx configuration of the Big Data BBQ documentation (``tox -e docs``).

Build: ``sphinx-build -W -b html docs/source docs/build/html`` from the repository root,
with bake and app/ (bbq) installed (``tools/bootstrap --tests``) and docs/requirements.txt.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE / "_ext"), str(REPO)]  # our directives; bake from this checkout

from bake import resources  # noqa: E402

project = "Big Data BBQ"
author = "The Big Data BBQ authors"
copyright = "the Big Data BBQ authors, Apache License 2.0"
release = resources.version()
version = release

extensions = [
    "bbqdocs",  # spec, elements, CLI and config references (docs/source/_ext/bbqdocs.py)
    "oslo_config.sphinxext",
    "reno.sphinxext",
]
exclude_patterns = ["_build", "_ext"]
nitpicky = False
smartquotes = False  # quotes stay as typed: commands and values are copied from here
html_theme = "alabaster"
html_theme_options = {"description": "Bake, publish, launch and update Big Data BBQ images"}
html_static_path: list[str] = []

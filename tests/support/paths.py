"""The project's paths, defined once for every test and fixture."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
ELEMENTS = REPO / "elements"
SPECS = REPO / "image-specs"
BIN = Path(sys.executable).parent  # the venv's programs: bake, fab, bbq-*
BAKE = BIN / "bake"
FAB = BIN / "fab"

"""Fixtures for the app's tests: real servers on 127.0.0.1, one per test session."""

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.fixtures.browser import browser, chromedriver  # noqa: E402,F401
from tests.fixtures.mongo import mongo_server  # noqa: E402,F401
from tests.fixtures.rest import rest_server  # noqa: E402,F401
from tests.fixtures.spark import spark  # noqa: E402,F401
from tests.fixtures.zaqar import zaqar_server  # noqa: E402,F401

"""Fixtures for the app's tests: real servers on 127.0.0.1, one per test session."""

from tests.fixtures.browser import browser, chromedriver  # noqa: F401
from tests.fixtures.mongo import mongo_server  # noqa: F401
from tests.fixtures.rest import rest_server  # noqa: F401
from tests.fixtures.spark import spark  # noqa: F401
from tests.fixtures.zaqar import zaqar_server  # noqa: F401

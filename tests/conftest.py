"""Fixtures shared by every test directory."""

pytest_plugins = ["tests.fixtures.images"]

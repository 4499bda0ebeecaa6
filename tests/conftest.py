"""Shared fixtures: the real SSH fleet comes from the public test kit."""

pytest_plugins = ["controller.testing.pytest_fleet"]

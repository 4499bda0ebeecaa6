"""Test helpers: a fleet of real Linux nodes and the pytest fixture that starts it."""

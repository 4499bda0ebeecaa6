"""Desired-state documents: kinds and their JSON Schemas, loading, validation, cross-checks."""

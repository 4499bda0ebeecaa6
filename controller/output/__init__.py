"""Renderings of plans: text for people, JSON for machines, markdown for pull requests."""

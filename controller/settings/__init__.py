"""The settings kit: how every section of ``fazai.yaml`` is read.

* :mod:`~controller.settings.durations`: the one duration grammar (``90``, ``90s``,
  ``1h30m``, ``250ms``, ``"5 m"``, ``0``) and its JSON Schema, which section schemas refer
  to by id instead of each writing its own pattern.
* :mod:`~controller.settings.read`: the file itself, read with the documents' hardened
  YAML reader, so every field has its position (``fazai serve`` and ``fazai review
  --config`` both read it here).
* :mod:`~controller.settings.check`: the schema check with one wording, giving
  ``(field path, message)`` pairs that the config loader pins to ``FILE:LINE:COL`` and
  that a section's ``from_config`` raises as :class:`~controller.errors.SettingsError`.

A section is one JSON Schema in its package's ``schemas/`` folder plus a ``from_config``
(see :mod:`controller.settings.sections`); neither parses durations nor words schema
errors itself.
"""

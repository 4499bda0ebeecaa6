"""The CEL library's compiled engine, without the rest of its package.

``import cel`` runs the package's ``__init__``, which imports ``cel.cli``, a REPL, and
with it prompt_toolkit: 0.07 s (0.14 s on a busy machine) of every ``fazai`` command
that reads policies, for a prompt FazAI never shows. What FazAI uses (``compile``,
``Context``) is the compiled extension ``cel.cel``, which this loads on its own and
registers under that name, so that a later ``import cel`` (a test, a benchmark) takes
the same module instead of loading it twice. Where the extension is not where this
expects it (another release's layout), the package is imported as usual.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["engine"]

_EXTENSION = "cel.cel"


def _load() -> ModuleType:
    for name in ("cel", _EXTENSION):
        if name in sys.modules:
            return sys.modules[name]
    package = importlib.util.find_spec("cel")  # finds it without running its __init__
    for folder in (package.submodule_search_locations or ()) if package else ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"cel{suffix}"
            spec = importlib.util.spec_from_file_location(_EXTENSION, path)
            if not path.is_file() or spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[_EXTENSION] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[_EXTENSION]
                raise
            return module
    import cel

    return cel


if TYPE_CHECKING:
    import cel as engine  # the package's stubs describe the extension's names
else:
    engine = _load()

"""The model sits below the providers: loading documents imports no provider, and the
entry point (CLI, loop, test kits) registers the platforms' kinds first."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import sys
from controller.model import loader
from controller.source.open import open_source

assert not [m for m in sys.modules if m.startswith("controller.providers")]
try:
    loader.load(open_source("desired_state"))
except RuntimeError as exc:
    print("refused:", exc)
else:
    raise SystemExit("loaded documents of kinds no platform registered")

from controller import providers
import controller.policy  # the example holds a Policy: its kind registers on import

providers.load_all()
print("loaded", len(loader.load(open_source("desired_state")).resources))
"""


def test_loading_imports_no_provider_and_needs_the_platforms_registered() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused: no document kinds are registered" in done.stdout
    assert "call controller.providers.load_all()" in done.stdout
    assert "loaded " in done.stdout

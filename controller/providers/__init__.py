"""Platform providers: how each platform's live state is read and compared.

Each platform package registers its kinds on import; :func:`load_all` imports them all,
so a new platform is one more import line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.providers.base import Provider

PLATFORMS = ("linux", "opnsense")


def load_all() -> None:
    for platform in PLATFORMS:
        importlib.import_module(f"controller.providers.{platform}")


def for_platform(platform: str) -> Provider:
    module = importlib.import_module(f"controller.providers.{platform}.provider")
    provider: Provider = module.PROVIDER
    return provider

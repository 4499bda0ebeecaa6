"""Platform providers: how each platform's live state is read and compared.

Each platform package registers its kinds on import; :func:`load_all` imports them all,
so a new platform is one more import line here.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.providers.base import Provider

PLATFORMS = ("linux", "opnsense")


def load_all() -> None:
    # Goal belongs to no one platform: each provider reads the checks of its own.
    importlib.import_module("controller.model.goal")
    importlib.import_module("controller.model.tool")
    for platform in PLATFORMS:
        importlib.import_module(f"controller.providers.{platform}")


def for_platform(platform: str) -> Provider:
    module = importlib.import_module(f"controller.providers.{platform}.provider")
    provider: Provider = module.PROVIDER
    return provider


@contextlib.asynccontextmanager
async def kept_connections() -> AsyncIterator[None]:
    """Until the block ends, reads and applies on this event loop reuse the connections
    they open to nodes (host keys still checked at each new one); all are closed at its
    end. Blocks nest."""
    from controller.providers.linux import pool

    async with pool.kept():
        yield

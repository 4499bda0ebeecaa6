"""The Linux kinds, the object on a node each one claims, and their own rules."""

from __future__ import annotations

from controller.model.kinds import NODE_CHECKS, Kind, register
from controller.providers.linux import checks

NODE_CHECKS["linux"] = checks.check_node

PACKAGE = register(Kind("Package", lambda s: str(s["name"]), name_field="name"))
FILE = register(Kind("File", lambda s: str(s["path"]), check=checks.check_file))
SERVICE = register(
    Kind("Service", lambda s: str(s["name"]), name_field="name", check=checks.check_service)
)
USER = register(Kind("User", lambda s: str(s["name"]), name_field="name", check=checks.check_paths))
SYSCTL = register(
    Kind("Sysctl", lambda s: str(s["key"]).replace("/", "."), check=checks.check_sysctl)
)
NFT_TABLE = register(
    Kind(
        "NftTable",
        lambda s: f"{s['family']} {s['name']}",
        name_field="name",
        check=checks.check_nft_table,
    )
)

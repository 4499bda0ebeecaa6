"""The Linux kinds and the object on a node each one claims."""

from __future__ import annotations

from controller.model.kinds import Kind, register

PACKAGE = register(Kind("Package", lambda s: str(s["name"]), name_field="name"))
FILE = register(Kind("File", lambda s: str(s["path"])))
SERVICE = register(Kind("Service", lambda s: str(s["name"]), name_field="name"))
USER = register(Kind("User", lambda s: str(s["name"]), name_field="name"))
SYSCTL = register(Kind("Sysctl", lambda s: str(s["key"]).replace("/", ".")))
NFT_TABLE = register(Kind("NftTable", lambda s: f"{s['family']} {s['name']}", name_field="name"))

"""The remote fact script, run for real on this machine exactly as a node runs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.providers.linux.provider import facts_command


def gather(request: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        ["sh", "-c", facts_command()],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_files_report_digest_mode_owner_and_content_only_when_different(tmp_path: Path) -> None:
    same, other, missing = tmp_path / "same", tmp_path / "other", tmp_path / "missing"
    same.write_bytes(b"a\n")
    other.write_bytes(b"b\n")
    os.chmod(other, 0o640)
    digest = hashlib.sha256(b"a\n").hexdigest()
    answer = gather(
        {
            "files": [
                {"path": str(same), "sha256": digest, "want_content": True},
                {"path": str(other), "sha256": digest, "want_content": True},
                {"path": str(other), "sha256": digest, "want_content": False},
                {"path": str(missing), "sha256": digest, "want_content": True},
                {"path": str(tmp_path), "sha256": digest, "want_content": True},
            ]
        }
    )
    f_same, f_other, f_private, f_missing, f_dir = answer["files"]
    assert f_same["sha256"] == digest and "content_b64" not in f_same
    assert f_other["content_b64"] == "Ygo=" and f_other["mode"] == "0640"
    assert "content_b64" not in f_private
    assert f_missing == {"exists": False}
    assert f_dir["type"] == "directory" and "sha256" not in f_dir


def test_users_sysctl_and_host() -> None:
    answer = gather(
        {"users": ["root", "no-such-user-x"], "sysctls": ["kernel.ostype", "no.such.key"]}
    )
    assert answer["users"]["root"]["uid"] == 0
    assert answer["users"]["no-such-user-x"] == {"exists": False}
    assert answer["sysctls"]["kernel.ostype"]["value"] == "Linux"
    assert answer["sysctls"]["no.such.key"] == {"error": "no such kernel parameter"}
    assert answer["host"]["hostname"]


def test_a_persisted_sysctl_the_kernel_lacks_still_reports_its_line(tmp_path: Path) -> None:
    # An absent Sysctl must be able to take the key of an unloaded module out of the file.
    persisted = tmp_path / "99-fazai.conf"
    persisted.write_text("# Managed by FazAI\nno.such.key = 5  7\nkernel.ostype = Linux\n")
    answer = gather({"sysctls": ["no.such.key", "kernel.ostype"], "sysctl_file": str(persisted)})
    assert answer["sysctls"]["no.such.key"] == {
        "error": "no such kernel parameter",
        "persisted": "5 7",
    }
    assert answer["sysctls"]["kernel.ostype"] == {"value": "Linux", "persisted": "Linux"}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft needs root")
def test_nft_definition_is_canonicalized_without_touching_the_live_ruleset() -> None:
    definition = (
        "chain input {\n  type filter hook input priority 0; policy accept\n"
        "  tcp dport 22 accept # ssh\n}"
    )
    answer = gather(
        {
            "nft": [
                {"family": "inet", "name": "fazai_unit_probe", "definition": definition},
                {"family": "inet", "name": "fazai_unit_bad", "definition": "chain c { nonsense }"},
            ]
        }
    )
    good, bad = answer["nft"]
    assert good["exists"] is False
    assert "tcp dport 22 accept" in good["desired"]["text"]
    assert "priority filter" in good["desired"]["text"]  # nft's own rendering, not ours
    assert bad["desired"]["error"].startswith("nft rejects the definition")
    live = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert "fazai_unit_probe" not in live.stdout

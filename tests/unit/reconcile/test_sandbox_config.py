"""``fazai serve --sandbox --config FILE``: a copy of the sandbox's own file loads on a
first start, before the sandbox's working copy exists."""

from __future__ import annotations

from pathlib import Path

import git

from controller.reconcile import config
from controller.reconcile import sandbox as sandboxing
from controller.reconcile.handle import Mode


def test_a_copy_of_the_sandbox_config_loads_on_a_first_start(tmp_path: Path) -> None:
    text = (
        sandboxing.default_config_text().decode().replace("/var/lib/fazai/sandbox", str(tmp_path))
    )
    # The person's copy: another node switched to detect, notifications added.
    text = text.replace("db-1: detect", "web-1: detect")
    text += "notifications:\n  - {type: webhook, urlRef: {env: HOOK_URL}}\n"
    mine = tmp_path / "etc" / "fazai.yaml"
    mine.parent.mkdir()
    mine.write_text(text)
    assert not (tmp_path / "infra").exists()

    loaded = sandboxing.load_config(mine, config.Overrides(), workdir=tmp_path)

    (source,) = loaded.sources
    assert source.watch == tmp_path / "infra"
    assert source.mode_for("web-1") is Mode.DETECT and source.mode_for("db-1") is Mode.AUTO
    assert "notifications" in loaded.sections
    assert git.Repo(tmp_path / "infra").head.commit.message == "The example desired state"

"""`fazai plan --base --head`: a pull request planned against the live state of a real SSH
node and an emulated firewall, each change marked against the base, each node read once."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from controller.forges import command
from controller.output import review_markdown, review_text
from controller.plan import plan_json
from controller.plan.diff import Action
from controller.plan.review import Marking, Review
from controller.testing.fleet import Fleet
from controller.testing.opnsense import EmulatorServer
from tests.integration.reviewkit import (
    NODE,
    PullRequest,
    firewall_node,
    opened,
    review_fleet,
)

__all__ = ["review_fleet"]  # the fixture, imported for pytest

EXPECTED = {
    (NODE, "File", "conf"): Marking.INTRODUCED,
    (NODE, "File", "motd"): Marking.PENDING,
    (NODE, "File", "banner"): Marking.CHANGED,
    ("edge-fw", "FirewallRule", "allow-ssh"): Marking.INTRODUCED,
}


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def pull_request(
    review_fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PullRequest, EmulatorServer]]:
    with opened(review_fleet, tmp_path, monkeypatch) as (pr, emu):
        emu.requests.clear()
        yield pr, emu


def review_of(pr: PullRequest, **options: object) -> Review:
    pair = command.load_pair(str(pr.root), "main", "feature", "")
    return command.plan_pair(pair, **options)  # type: ignore[arg-type]


def test_head_changes_are_marked_against_the_base(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    pr, emu = pull_request
    result = review_of(pr)

    assert dict(result.markings) == EXPECTED
    head_items = {(i.node, i.kind, i.name): i for n in result.head.nodes for i in n.items}
    assert head_items[(NODE, "File", "conf")].action is Action.UPDATE
    assert head_items[("edge-fw", "FirewallRule", "allow-ssh")].action is Action.CREATE
    assert head_items[("edge-fw", "FirewallRule", "allow-https")].action is Action.NOOP
    # banner: the base would write v1, the head writes v2, over the same live "old".
    before = result.before[(NODE, "File", "banner")]
    assert before.action is Action.UPDATE
    assert before.changes[0].diff is not None and "+v1" in before.changes[0].diff
    banner = head_items[(NODE, "File", "banner")].changes[0].diff
    assert banner is not None and "+v2" in banner and "-old" in banner
    # The sysctl drift the base would heal, and the head no longer manages.
    assert [(i.kind, i.name, i.action) for i in result.dropped] == [
        ("Sysctl", "fwd", Action.UPDATE)
    ]
    assert result.counts() == {"introduced": 2, "changed": 1, "pending": 1, "dropped": 1}
    assert result.head.revision == pr.head and result.base_revision == pr.base
    assert result.exit_code == 1

    # One live read per node served both plans.
    assert result.reads == {NODE: 1, "edge-fw": 1}
    assert emu.requests.count("GET", r"core/firmware/status") == 1
    assert emu.requests.count("GET", r"firewall/filter/get") == 1


def test_cli_json_markdown_and_exit_code(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    pr, _ = pull_request
    done = fazai("plan", str(pr.root), "--base", "main", "--head", "feature", "-o", "json")
    assert done.returncode == 1, done.stderr
    rendered = json.loads(done.stdout)
    jsonschema.validate(rendered, plan_json.schema())
    marks = {(c["node"], c["kind"], c["name"]): c.get("review") for c in rendered["changes"]}
    assert marks == {k: v.value for k, v in EXPECTED.items()}
    banner = next(c for c in rendered["changes"] if c["name"] == "banner")
    assert banner["base"]["action"] == "update"
    assert rendered["review"]["summary"] == {
        "introduced": 2,
        "changed": 1,
        "pending": 1,
        "dropped": 1,
    }
    assert [(d["kind"], d["name"]) for d in rendered["review"]["dropped"]] == [("Sysctl", "fwd")]
    assert rendered["review"]["base"]["revision"] == pr.base
    assert rendered["revision"] == pr.head

    markdown = fazai("plan", str(pr.root), "--base", "main", "--head", "feature", "-o", "markdown")
    assert markdown.stdout.startswith("### FazAI plan for this pull request: 📝 changes")
    introduced = markdown.stdout.index("#### Introduced or changed by this pull request (3)")
    pending = markdown.stdout.index("#### Already pending on the base")
    assert introduced < markdown.stdout.index("**FirewallRule/allow-ssh** create") < pending
    assert pending < markdown.stdout.index("**File/motd** update")
    assert "#### No longer done" in markdown.stdout


def test_text_rendering(pull_request: tuple[PullRequest, EmulatorServer]) -> None:
    pr, _ = pull_request
    buffer = io.StringIO()
    review_text.render(review_of(pr), Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "File/banner  update  [changed]" in text
    assert "File/motd  update  [pending]" in text
    assert "FirewallRule/allow-ssh  create  [introduced]" in text
    assert f"~ {NODE} Sysctl/fwd  update" in text
    assert (
        "This head: 2 introduced, 1 changed, 1 already pending on the base, 1 no longer done."
        in text
    )


def test_a_head_redirecting_a_node_is_not_read(
    pull_request: tuple[PullRequest, EmulatorServer], tmp_path: Path
) -> None:
    pr, emu = pull_request
    with EmulatorServer(version="26.1", tls=True) as elsewhere:
        # Another firewall that would take the controller's key, as a trap would.
        elsewhere.add_key(emu.api_key, emu.api_secret)
        moved = {**pr.head_docs}
        nodes = list(moved["nodes.yaml"])
        nodes[1] = firewall_node(elsewhere, tmp_path / "fw.key")
        moved["nodes.yaml"] = nodes
        pr.push_head(moved, "point edge-fw somewhere else")
        result = review_of(pr)
        edge = next(n for n in result.head.nodes if n.node == "edge-fw")
        assert edge.error_type == "UntrustedNodeError"
        assert "changes how to reach this node (tls, url)" in (edge.error or "")
        assert elsewhere.requests.records == []  # not one request, so no credential sent
        state, description = command.verdict(result)
        assert (state.value, description) == (
            "failure",
            "not read, the head changes how to reach: edge-fw",
        )
        assert result.exit_code == 2
        # The Linux node is still planned and marked.
        assert result.markings[(NODE, "File", "banner")] is Marking.CHANGED

        trusted = review_of(pr, trust_head=True)
        edge = next(n for n in trusted.head.nodes if n.node == "edge-fw")
        assert edge.error is None
        assert elsewhere.requests.count("GET", r"core/firmware/status") == 1


def test_invalid_base_still_plans_the_head(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    pr, _ = pull_request
    pr.repo.heads["main"].checkout()
    root = pr.root
    (root / "broken.yaml").write_text("apiVersion: fazai.dev/v1alpha1\nkind: File\n")
    pr.repo.index.add(["broken.yaml"])
    pr.repo.index.commit("break main")
    pair = command.load_pair(str(root), "main", "feature", "")
    assert pair.base is None and pair.base_error and "error(s)" in pair.base_error
    # Without a trusted base, no node's connection is vouched for: none is read...
    result = command.plan_pair(pair)
    assert {n.error_type for n in result.head.nodes} == {"UntrustedNodeError"}
    # ... unless the head is trusted; then nothing is marked, and the comment says why.
    result = command.plan_pair(pair, trust_head=True)
    assert result.markings == {} and result.base_error
    assert [n.error for n in result.head.nodes] == [None, None]
    comment = review_markdown.render(result)
    assert "The base could not be planned" in comment


async def test_a_shared_linux_read_observes_what_the_provider_does(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    # observe.py builds one fact request from the provider's own pieces; this keeps the
    # two from drifting apart.
    from controller.forges.observe import read_together
    from controller.providers.linux.provider import PROVIDER

    pr, _ = pull_request
    pair = command.load_pair(str(pr.root), "main", "feature", "")
    node = pair.head.nodes[NODE]
    parts = [(s.resources_for(NODE), s.source) for s in (pair.base, pair.head) if s]
    together = await read_together(node, parts)
    for (resources, tree), shared in zip(parts, together, strict=True):
        assert shared == await PROVIDER.observe(node, resources, tree)

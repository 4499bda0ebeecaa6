"""A pull request to review: a real git repository with a base and a head branch,
describing a real SSH node (on the forges engineer's subnet, 10.231.22.0/24) and an
emulated OPNsense firewall, with live state put in place by hand.

The base (``main``) and the head (``feature``) differ so that every marking shows:

| resource | live | base | head | head's marking |
|---|---|---|---|---|
| File conf | as base | in sync | new content | introduced (update) |
| File motd | drifted | update | same as base | pending |
| File banner | drifted | update to v1 | update to v2 | changed |
| Sysctl fwd | drifted | update | document removed | dropped |
| FirewallRule allow-ssh | absent | not described | create | introduced (create) |
| FirewallAlias, FirewallRule allow-https | as base | in sync | in sync | none |
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import httpx
import pytest
import yaml

from controller.model import loader
from controller.providers.opnsense import payload
from controller.providers.opnsense.identity import object_uuid
from controller.source.open import open_source
from controller.testing.fleet import Fleet, NodeSpec
from controller.testing.opnsense import EmulatorServer
from tests.integration.statekit import node_doc, resource

SUBNET = "10.231.22.0/24"
NODE = "rv-web"
AUTHOR = git.Actor("Reviewer", "reviewer@example.invalid")
SECRET_ENV = "FAZAI_REVIEW_FW_SECRET"
BASE_DIR = "/etc/fazai-review"


@pytest.fixture(scope="module")
def review_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from controller.testing.fleet import fleet_available

    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    fleet = Fleet(
        (NodeSpec(NODE, "10.231.22.11"),),
        workdir=tmp_path_factory.mktemp("review-fleet"),
        subnet=SUBNET,
        subnet_wait=600,
    )
    with fleet as started:
        yield started


def firewall_node(emu: EmulatorServer, key_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "edge-fw"},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key_file)},
            "apiSecretRef": {"env": SECRET_ENV},
            "tls": {"caBundle": str(emu.certificate)},
            "requestTimeout": 5,
        },
    }


def fw_doc(kind: str, doc_name: str, **spec: Any) -> dict[str, Any]:
    return resource(kind, doc_name, {"node": "edge-fw"}, **spec)


def base_documents(fleet: Fleet, emu: EmulatorServer, key_file: Path) -> dict[str, list[Any]]:
    on = {"node": NODE}
    return {
        "nodes.yaml": [node_doc(fleet, NODE), firewall_node(emu, key_file)],
        "linux.yaml": [
            resource("File", "conf", on, path=f"{BASE_DIR}/conf", content="listen 443\n"),
            resource("File", "motd", on, path=f"{BASE_DIR}/motd", content="managed motd\n"),
            resource("File", "banner", on, path=f"{BASE_DIR}/banner", content="v1\n"),
            resource("Sysctl", "fwd", on, key="net.ipv4.ip_forward", value=0),
        ],
        "firewall.yaml": [
            fw_doc("FirewallAlias", "web-servers", name="web_servers", type="host",
                   content=["10.0.10.11", "10.0.10.12"]),
            fw_doc("FirewallRule", "allow-https", interface="lan", protocol="TCP",
                   destination={"net": "web_servers", "port": 443}, sequence=100),
        ],
    }  # fmt: skip


def head_documents(base: dict[str, list[Any]]) -> dict[str, list[Any]]:
    head = {name: [dict(d) for d in docs] for name, docs in base.items()}
    linux = []
    for doc in head["linux.yaml"]:
        if doc["metadata"]["name"] == "fwd":
            continue  # the head stops managing the sysctl
        if doc["metadata"]["name"] == "conf":
            doc = {**doc, "spec": {**doc["spec"], "content": "listen 8443\n"}}
        if doc["metadata"]["name"] == "banner":
            doc = {**doc, "spec": {**doc["spec"], "content": "v2\n"}}
        linux.append(doc)
    head["linux.yaml"] = linux
    head["firewall.yaml"] = [
        *head["firewall.yaml"],
        fw_doc("FirewallRule", "allow-ssh", interface="lan", protocol="TCP",
               destination={"net": "web_servers", "port": 22}, sequence=110),
    ]  # fmt: skip
    return head


def commit(repo: git.Repo, files: dict[str, list[Any]], message: str) -> str:
    root = Path(str(repo.working_tree_dir))
    for name, docs in files.items():
        (root / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    repo.index.add(list(files))
    return str(repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha)


class PullRequest:
    """The repository: ``main`` (the base) and ``feature`` (the head) on top of it."""

    def __init__(self, root: Path, fleet: Fleet, emu: EmulatorServer, key_file: Path) -> None:
        self.root = root
        self.repo = git.Repo.init(root, initial_branch="main")
        self.base_docs = base_documents(fleet, emu, key_file)
        self.base = commit(self.repo, self.base_docs, "base")
        self.repo.create_head("feature", self.base).checkout()
        self.head_docs = head_documents(self.base_docs)
        self.head = commit(self.repo, self.head_docs, "feature: ssh rule, new conf")
        self.repo.heads["main"].checkout()

    def push_head(self, files: dict[str, list[Any]], message: str) -> str:
        """Another commit on the head branch (a later push to the pull request)."""
        self.repo.heads["feature"].checkout()
        self.head = commit(self.repo, files, message)
        self.repo.heads["main"].checkout()
        return self.head


@contextlib.contextmanager
def opened(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PullRequest, EmulatorServer]]:
    """A pull request on ``fleet`` and a fresh emulated firewall, the live state set as
    the base describes it (but for the drift ``set_linux_live_state`` makes)."""
    with EmulatorServer(version="26.1", tls=True) as emu:
        key_file = tmp_path / "fw.key"
        key_file.write_text(emu.api_key + "\n")
        monkeypatch.setenv(SECRET_ENV, emu.api_secret)
        pr = PullRequest(tmp_path / "infra", fleet, emu, key_file)
        converge_firewall_by_hand(emu, pr.root)
        set_linux_live_state(fleet)
        yield pr, emu


def converge_firewall_by_hand(emu: EmulatorServer, root: Path) -> None:
    """Put the base's firewall objects on the emulator the way an apply would."""
    state = loader.load(open_source(str(root), "main"))
    tls = ssl.create_default_context(cafile=str(emu.certificate))
    with httpx.Client(base_url=emu.url + "/api/", auth=emu.auth, verify=tls) as api:
        for doc in state.resources:
            if doc.kind == "FirewallAlias":
                answer = api.post("firewall/alias/addItem", json=payload.alias(doc.spec)).json()
            elif doc.kind == "FirewallRule":
                uuid = object_uuid("edge-fw", doc.kind, doc.name)
                body = payload.rule(doc.spec)
                answer = api.post(f"firewall/filter/setRule/{uuid}", json=body).json()
            else:
                continue
            assert answer["result"] == "saved", (doc.subject, answer)


def set_linux_live_state(fleet: Fleet) -> None:
    """conf as the base says; motd, banner and the sysctl drifted."""
    node = fleet.nodes[NODE]
    node.run(f"mkdir -p {BASE_DIR}")
    node.run(f"printf 'listen 443\\n' > {BASE_DIR}/conf")
    node.run(f"printf 'hacked\\n' > {BASE_DIR}/motd")
    node.run(f"printf 'old\\n' > {BASE_DIR}/banner")
    node.run("sysctl -qw net.ipv4.ip_forward=1")

"""Checks across documents: selectors, conflicts, File.source lookups, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.state import DesiredState, target_nodes
from controller.source.open import open_source

NODES = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1, labels: {role: web, site: lisbon}}
spec: {platform: linux, address: 10.0.0.1}
---
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-2, labels: {role: web, site: porto}}
spec: {platform: linux, address: 10.0.0.2}
---
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: db-1, labels: {role: db, site: lisbon}}
spec: {platform: linux, address: 10.0.0.3}
"""


def _file(name: str, target: str, path: str = "/etc/motd", body: str = "content: x") -> str:
    return (
        f"apiVersion: fazai.dev/v1alpha1\nkind: File\nmetadata: {{name: {name}}}\n"
        f"spec:\n  target: {target}\n  path: {path}\n  {body}\n"
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in {"nodes.yaml": NODES, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _load(root: Path) -> DesiredState:
    return loader.load(open_source(str(root)))


def _errors(root: Path) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        _load(root)
    return [str(d) for d in info.value.diagnostics]


@pytest.mark.parametrize(
    ("labels", "nodes"),
    [
        ("{role: web}", ["web-1", "web-2"]),
        ("{site: lisbon}", ["db-1", "web-1"]),
        ("{role: web, site: lisbon}", ["web-1"]),
        ("{role: db, site: porto}", []),
        ("{role: Web}", []),  # values compare exactly
    ],
)
def test_match_labels_resolution(tmp_path: Path, labels: str, nodes: list[str]) -> None:
    _write(tmp_path, {"f.yaml": _file("motd", f"{{matchLabels: {labels}}}")})
    state = _load(tmp_path)
    (file,) = state.resources
    assert target_nodes(file, state.nodes) == nodes
    assert [r.name for n in nodes for r in state.resources_for(n)] == ["motd"] * len(nodes)
    assert bool(state.warnings) == (not nodes)


def test_target_node_resolution(tmp_path: Path) -> None:
    _write(tmp_path, {"f.yaml": _file("motd", "{node: db-1}")})
    state = _load(tmp_path)
    assert state.resources_for("db-1")[0].name == "motd"
    assert state.resources_for("web-1") == []


def test_no_conflict_when_selectors_hit_different_nodes(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": _file("motd-web", "{matchLabels: {role: web}}"),
            "b.yaml": _file("motd-db", "{matchLabels: {role: db}}"),
            "c.yaml": _file("motd-porto", "{node: web-2}", path="/etc/issue"),
        },
    )
    state = _load(tmp_path)
    assert sorted(r.name for r in state.resources) == ["motd-db", "motd-porto", "motd-web"]


def test_conflict_when_selectors_overlap_on_one_node(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": _file("motd-web", "{matchLabels: {role: web}}"),
            "b.yaml": _file("motd-lisbon", "{matchLabels: {site: lisbon}}"),
        },
    )
    # Only web-1 is both web and lisbon; db-1 and web-2 are fine. One error, naming both.
    assert _errors(tmp_path) == [
        "b.yaml:4:1: File/motd-lisbon: spec: conflicts with File/motd-web at a.yaml:4:1: "
        "both manage File '/etc/motd' on node 'web-1'"
    ]


def test_conflict_is_per_kind_and_per_instance(tmp_path: Path) -> None:
    pkg = (
        "apiVersion: fazai.dev/v1alpha1\nkind: Package\nmetadata: {name: motd}\n"
        "spec: {target: {node: web-1}, name: x}\n"
        "---\n"
        "apiVersion: fazai.dev/v1alpha1\nkind: Package\nmetadata: {name: also-x}\n"
        "spec: {target: {matchLabels: {site: lisbon}}, name: x}\n"
    )
    _write(tmp_path, {"a.yaml": _file("motd", "{node: web-1}"), "p.yaml": pkg})
    # File/motd and Package/motd share a name but claim different things; the two
    # packages named x both land on web-1.
    assert _errors(tmp_path) == [
        "p.yaml:9:1: Package/also-x: spec: conflicts with Package/motd at p.yaml:4:1: "
        "both manage Package 'x' on node 'web-1'"
    ]


def test_sysctl_slash_and_dot_keys_conflict(tmp_path: Path) -> None:
    sysctl = (
        "apiVersion: fazai.dev/v1alpha1\nkind: Sysctl\nmetadata: {{name: {n}}}\n"
        "spec: {{target: {{node: web-1}}, key: {k}, value: 1}}\n"
    )
    _write(
        tmp_path,
        {
            "a.yaml": sysctl.format(n="a", k="net.ipv4.ip_forward"),
            "b.yaml": sysctl.format(n="b", k="net/ipv4/ip_forward"),
        },
    )
    assert _errors(tmp_path) == [
        "b.yaml:4:1: Sysctl/b: spec: conflicts with Sysctl/a at a.yaml:4:1: both manage "
        "Sysctl 'net.ipv4.ip_forward' on node 'web-1'"
    ]


def test_file_source_resolved_relative_to_document_folder(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "linux/web/motd.yaml": _file("motd", "{node: web-1}", body="source: motd.txt"),
            "linux/web/issue.yaml": _file(
                "issue", "{node: web-1}", path="/etc/issue", body="source: ../../files/issue"
            ),
            "linux/web/motd.txt": "hello\n",
            "files/issue": "issue\n",
            # Same names at the root: must not be what the documents find.
            "motd.txt": "wrong\n",
        },
    )
    state = _load(tmp_path)
    assert sorted(r.name for r in state.resources) == ["issue", "motd"]


def test_file_source_is_not_looked_up_at_the_root(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "linux/motd.yaml": _file("motd", "{node: web-1}", body="source: motd.txt"),
            "motd.txt": "at the root, not beside the document\n",
        },
    )
    assert _errors(tmp_path) == [
        "linux/motd.yaml:7:3: File/motd: spec.source: source file 'linux/motd.txt' does not "
        "exist in the repository"
    ]


def test_file_source_may_not_leave_the_repository(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret\n")
    root = tmp_path / "repo"
    _write(root, {"motd.yaml": _file("motd", "{node: web-1}", body="source: ../outside.txt")})
    assert _errors(root) == [
        "motd.yaml:7:3: File/motd: spec.source: source '../outside.txt' points outside the "
        "repository"
    ]


def test_yaml_under_files_folder_is_data_not_documents(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "f.yaml": _file(
                "cfg", "{node: web-1}", path="/etc/x.yaml", body="source: files/x.yaml"
            ),
            "files/x.yaml": "not: [a document\n",
        },
    )
    assert [r.name for r in _load(tmp_path).resources] == ["cfg"]


def test_duplicate_within_one_file_and_across_files(tmp_path: Path) -> None:
    node = NODES.split("---\n")[0]
    _write(tmp_path, {"more.yaml": node, "same.yaml": node + "---\n" + node})
    # Files load in path order, so the first is the one in more.yaml.
    first = "first defined at more.yaml:3:12"
    assert _errors(tmp_path) == [
        f"nodes.yaml:3:12: Node/web-1: metadata.name: duplicate Node/web-1; {first}",
        f"same.yaml:3:12: Node/web-1: metadata.name: duplicate Node/web-1; {first}",
        f"same.yaml:8:12: Node/web-1: metadata.name: duplicate Node/web-1; {first}",
    ]


def test_every_problem_of_a_run_is_reported(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": _file("a", "{node: nowhere}"),
            "b.yaml": _file("b", "{node: web-1}", path="/etc//b"),
            "c.yaml": _file("c", "{node: web-1}", path="/etc/c", body="source: missing"),
        },
    )
    errors = _errors(tmp_path)
    assert [e.split(": ")[2] for e in errors] == ["spec.target.node", "spec.path", "spec.source"]

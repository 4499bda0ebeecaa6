"""Other tools' YAML beside FazAI's is skipped and counted; FazAI documents with a
mistake are still reported. Through the loader and the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.errors import InvalidInputError
from controller.model import loader
from controller.source.open import open_source

NODE = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
"""

FOREIGN = {
    "k8s/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    "spec: {replicas: 'two', template: {spec: {containers: []}}}\n---\n"
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
    "k8s/node.yaml": "apiVersion: v1\nkind: Node\nmetadata: {name: worker-1}\n",
    "compose.yaml": "services:\n  web: {image: nginx, ports: ['80:80']}\n",
    "playbook.yml": "- hosts: all\n  tasks:\n    - name: ping\n      ping: {}\n",
    "argo/app.yaml": "apiVersion: argoproj.io/v1alpha1\nkind: Application\n"
    "metadata: {name: x}\nspec: {project: default, source: {repoURL: x}}\n",
    "cfn/stack.yaml": "AWSTemplateFormatVersion: '2010-09-09'\n"
    "Resources:\n  B: {Type: 'AWS::S3::Bucket', Properties: {BucketName: !Ref Name}}\n",
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_other_tools_yaml_is_skipped_and_counted(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo", {"nodes.yaml": NODE, **FOREIGN})
    state = loader.load(open_source(str(root)))
    assert list(state.nodes) == ["web-1"]
    assert [str(s) for s in state.skipped] == [
        "argo/app.yaml:1:1",
        "cfn/stack.yaml:1:1",
        "compose.yaml:1:1",
        "k8s/deploy.yaml:1:1",
        "k8s/deploy.yaml:6:1",
        "k8s/node.yaml:1:1",
        "playbook.yml:1:1",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "apiVersion: fazia.dev/v1alpha1\nkind: Node\n",
            "unsupported apiVersion 'fazia.dev/v1alpha1'",
        ),
        ("apiVersion: fazai.dev/v1\nkind: Node\n", "unsupported apiVersion 'fazai.dev/v1'"),
        (
            "apiVersion: fazai.io/v1alpha1\nkind: Node\n",
            "unsupported apiVersion 'fazai.io/v1alpha1'",
        ),
        ("apiVersion: v1alpha1\nkind: File\n", "unsupported apiVersion 'v1alpha1'"),
        ("kind: Package\nmetadata: {name: curl}\n", "apiVersion: missing"),
        ("metadata: {name: curl}\nspec: {}\n", "apiVersion: missing"),
    ],
)
def test_a_fazai_document_with_a_typo_is_still_an_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = _tree(tmp_path / "repo", {"nodes.yaml": NODE, "typo.yaml": text, **FOREIGN})
    with pytest.raises(InvalidInputError) as caught:
        loader.load(open_source(str(root)))
    errors = [str(d) for d in caught.value.diagnostics if d.is_error]
    assert len(errors) == 1 and errors[0].startswith("typo.yaml:1:1: ")
    assert expected in errors[0]
    (note,) = [str(d) for d in caught.value.diagnostics if not d.is_error]
    assert "warning: skipped 7 YAML documents in 6 files" in note


def test_only_foreign_yaml_is_an_error_that_says_so(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo", FOREIGN)
    with pytest.raises(InvalidInputError) as caught:
        loader.load(open_source(str(root)))
    (error,) = [str(d) for d in caught.value.diagnostics]
    assert "no FazAI documents found" in error and "skipped 7 YAML documents in 6 files" in error


def _fazai(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_validate_without_path_says_the_default_and_the_count(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo", {"nodes.yaml": NODE, **FOREIGN})
    result = _fazai(root, "validate")
    assert result.returncode == 0, result.stderr
    assert "current directory (.)" in result.stderr
    assert "valid: 1 node, 0 resources; 7 YAML documents skipped" in result.stderr
    assert "skipped 7 YAML documents in 6 files that are not FazAI's" in result.stderr
    helped = _fazai(root, "plan", "--help")
    assert "(default: the current directory)" in " ".join(helped.stdout.split())


# FazAI documents with one mistake each, that an earlier rule skipped as another tool's:
# with `prune: true` a skipped document is no longer desired, and FazAI deletes it.
MISTAKES = [
    "apiVersion: v1alpha1\nkind: Service\nmetadata: {name: nginx}\nspec: {state: running}\n",
    "apiVersion: v1alpha1\nkind: Node\nmetadata: {name: web-2}\n"
    "spec: {platform: linux, address: 10.0.0.2}\n",
    "apiVersion: v1alpha1\nkind: file\nmetadata: {name: motd}\n",
    "apiVersion: v1beta1\nkind: Sysctl\nmetadata: {name: fwd}\n",
    "apiVersion: v1alpha1/fazai.dev\nkind: File\nmetadata: {name: motd}\n",
    "apiVersion: faz.ai/v1alpha1\nkind: File\nmetadata: {name: motd}\n",
    "apiVersion: dev.fazai/v1alpha1\nkind: File\nmetadata: {name: motd}\n",
    "apiVersion: linux/v1alpha1\nkind: File\nmetadata: {name: motd}\n",
    "apiVersion: opnsense/v1alpha1\nkind: FirewallRule\nmetadata: {name: r}\n",
    "apiVersion: example.org/v1\nkind: Sysctl\nmetadata: {name: fwd}\n",
    "apiVersion: v1\nkind: Service\nmetadata: {name: sshd}\n"
    "spec: {state: running, enabled: true}\n",
    "apiVersion: v1\nkind: Service\nmetadata: {name: sshd}\nspec: {runing: true}\n",
    "apiVersion: v1\nkind: File\nmetadata: {name: motd}\n",
    "apiversion: fazai.dev/v1alpha1\nKind: File\nmetadata: {name: x}\nSpec: {}\n",
    "api_version: fazai.dev/v1alpha1\nKind: File\nmetadata: {name: motd}\n",
    "apiVersion: fazai.dev/v1alpha1\nKind: File\nmetadata: {name: motd}\n",
    "metadata: {name: motd}\nspecs: {path: /etc/motd}\n",
    "METADATA: {name: motd}\nSPEC: {path: /etc/motd}\n",
    "APIVERSION: fazai.dev/v1alpha1\nKIND: File\n",
    "- apiVersion: v1alpha1\n  kind: Service\n",
]


@pytest.mark.parametrize("text", MISTAKES)
def test_a_fazai_document_with_any_one_mistake_is_an_error_not_skipped(
    tmp_path: Path, text: str
) -> None:
    root = _tree(tmp_path / "repo", {"nodes.yaml": NODE, "typo.yaml": text, **FOREIGN})
    with pytest.raises(InvalidInputError) as caught:
        loader.load(open_source(str(root)))
    errors = [str(d) for d in caught.value.diagnostics if d.is_error]
    assert errors and all(e.startswith("typo.yaml:") for e in errors), errors
    (note,) = [str(d) for d in caught.value.diagnostics if not d.is_error]
    assert "skipped 7 YAML documents in 6 files" in note  # only the other tools' files


def test_nothing_is_skipped_in_a_file_that_holds_a_fazai_document(tmp_path: Path) -> None:
    """The reviewer's file: a Node, then two documents under a wrong apiVersion. Through
    the real command line: `validate` must fail and name both, not say 'valid'."""
    mixed = (
        NODE + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
        "---\napiVersion: v1alpha1\nkind: Service\nmetadata: {name: nginx}\n"
        "spec: {target: {node: web-1}, state: running, enabled: true}\n"
        "---\napiVersion: opnsense/v1alpha1\nkind: Sysctl\nmetadata: {name: fwd}\n"
        "spec: {target: {node: web-1}, key: net.ipv4.ip_forward, value: '0'}\n"
    )
    root = _tree(tmp_path / "repo", {"all.yaml": mixed})
    result = _fazai(root, "validate", ".")
    assert result.returncode == 2, result.stderr
    assert "all.yaml:6:1: ConfigMap/c: apiVersion: unsupported apiVersion 'v1'" in result.stderr
    assert "all.yaml:10:1: Service/nginx: apiVersion: unsupported" in result.stderr
    assert "all.yaml:15:1: Sysctl/fwd: apiVersion: unsupported" in result.stderr
    assert "skipped" not in result.stderr


OTHER_TOOLS = {
    "ci/workflows/ci.yml": "name: ci\non: [push]\njobs:\n  t: {runs-on: ubuntu-latest}\n",
    "docker-compose.yml": "version: '3'\nservices:\n  web: {image: nginx}\n",
    "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "ci/dependabot.yml": "version: 2\nupdates: []\n",
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\nresources: [deploy.yaml]\n",
    "knative.yaml": "apiVersion: serving.knative.dev/v1\nkind: Service\n"
    "metadata: {name: hello}\nspec: {template: {spec: {containers: []}}}\n",
    "svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {type: ClusterIP, selector: {app: web}, ports: [{port: 80}]}\n",
}


def test_plainly_other_tools_yaml_is_still_skipped_and_every_place_listed(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "repo", {"nodes.yaml": NODE, **FOREIGN, **OTHER_TOOLS})
    state = loader.load(open_source(str(root)))
    assert list(state.nodes) == ["web-1"]
    assert len(state.skipped) == 14
    note = loader.skip_note(state.skipped)
    assert "skipped 14 YAML documents in 13 files" in note
    named = [str(s) for s in state.skipped[:5]]
    assert ": " + ", ".join(named) + " and 9 more" in note


def test_a_fazai_document_is_told_ours_without_near_miss_ratios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The near-miss key tests (difflib) are for documents that do not say fazai.dev: on
    a FazAI document they cost 0.08 s of loading 300, and can only keep it ours."""
    import difflib

    from controller.model import foreign

    ratios = 0
    real = difflib.SequenceMatcher

    def counting(junk: None, a: str, b: str) -> difflib.SequenceMatcher[str]:
        nonlocal ratios
        ratios += 1
        return real(junk, a, b)

    monkeypatch.setattr(difflib, "SequenceMatcher", counting)
    document = {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {}, "spec": {}}
    assert not foreign.is_foreign(document)
    assert not foreign.is_foreign({**document, "Kind": "x"})  # a typo'd key: still ours
    assert ratios == 0
    assert foreign.is_foreign({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}})

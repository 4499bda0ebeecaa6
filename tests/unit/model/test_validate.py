"""Schema validation: defaults, and valid documents of every kind accepted."""

from __future__ import annotations

import pytest

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller import providers
from controller.model import kinds
from controller.model.document import Document
from controller.model.validate import to_document
from controller.model.yamlsource import read_documents

providers.load_all()

TARGET = "  target: {node: web-1}\n"


def _doc(kind: str, name: str, spec: str, metadata: str = "") -> str:
    return (
        f"apiVersion: fazai.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n{metadata}"
        f"spec:\n{spec}"
    )


def _validate(text: str) -> tuple[Document | None, list[str]]:
    raws, problems = read_documents("x.yaml", text.encode())
    assert problems == []
    assert len(raws) == 1
    document, found = to_document(raws[0])
    return document, [str(p) for p in found]


def _valid(text: str) -> Document:
    document, problems = _validate(text)
    assert problems == []
    assert document is not None
    return document


KNOWN = (
    "File, FirewallAlias, FirewallRule, Goal, HostOverride, NftTable, Node, Package, Policy, "
    "Service, Sysctl, Tool, User"
)

VALID = {
    "Node": _doc(
        "Node",
        "web-1",
        "  platform: linux\n  address: 10.0.0.1\n  port: 2222\n  user: admin\n"
        "  auth: {privateKeyFile: ~/.ssh/id_ed25519, agent: false}\n"
        "  knownHostsFile: /etc/ssh/known\n  hostKeyChecking: false\n"
        "  connectTimeout: 2.5\n  commandTimeout: 30\n",
        "  labels: {role: web, example.com/site: lisbon}\n  annotations: {note: any text}\n",
    ),
    "Package": _doc(
        "Package", "nginx", TARGET + "  name: nginx-light\n  version: 1.22.1-9+deb12u1\n"
    ),
    "File": _doc(
        "File",
        "motd",
        TARGET + "  path: /etc/motd\n  content: hi\n  mode: '0644'\n  owner: root\n"
        "  group: adm\n  sensitive: true\n",
    ),
    "Service": _doc(
        "Service", "ssh", TARGET + "  name: ssh@1.service\n  running: true\n  enabled: false\n"
    ),
    "User": _doc(
        "User",
        "deploy",
        "  target: {matchLabels: {role: web}}\n  uid: 2001\n  shell: /bin/bash\n"
        "  groups: [adm, sudo]\n  home: /home/deploy\n  comment: Deploy user\n  state: present\n",
    ),
    "Sysctl": _doc("Sysctl", "fwd", TARGET + "  key: net/ipv4/ip_forward\n  value: '1'\n"),
    "NftTable": _doc(
        "NftTable",
        "filter",
        TARGET + "  family: ip6\n  name: fazai_filter\n  definition: 'chain input {}'\n",
    ),
    "FirewallAlias": _doc(
        "FirewallAlias",
        "web-servers",
        TARGET + "  name: web_servers\n  type: host\n  content: [10.0.10.11, 10.0.10.12]\n",
    ),
    "FirewallRule": _doc(
        "FirewallRule",
        "allow-https",
        TARGET + "  interface: [lan]\n  protocol: TCP\n  destination: {net: web_servers, "
        "port: 443}\n  sequence: 100\n",
    ),
    "HostOverride": _doc(
        "HostOverride",
        "www",
        TARGET + "  hostname: www\n  domain: example.net\n  server: 10.0.10.11\n",
    ),
    "Goal": _doc(
        "Goal",
        "nginx-serves",
        TARGET + "  description: nginx answers on port 80\n  checks:\n"
        "    - name: active\n      command: [systemctl, is-active, nginx]\n"
        "      timeout: 5\n      expect: {exitCode: 0, stdoutContains: active}\n"
        "  budget: {iterations: 8, tokens: 20000, seconds: 300}\n",
    ),
    "Tool": _doc(
        "Tool",
        "nginx-started",
        "  platform: linux\n  description: start nginx\n"
        "  params: {type: object, properties: {unit: {type: string, default: nginx}}}\n"
        "  check: {command: [systemctl, is-active, -q, '${unit}']}\n"
        "  apply: {script: 'systemctl start \"$FAZAI_PARAM_unit\"', timeout: 60}\n"
        "  snapshot: {services: [nginx]}\n",
    ),
    "Policy": _doc(
        "Policy",
        "guard",
        "  match: {kinds: [User], actions: [delete]}\n  rules:\n    - name: keep-admin\n"
        "      effect: deny\n      message: admin stays\n"
        '      expression: item.name == "admin"\n',
    ),
}


def test_every_registered_kind_has_a_valid_example() -> None:
    assert sorted(VALID) == kinds.names()


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_document_of_every_kind(kind: str) -> None:
    document = _valid(VALID[kind])
    assert document.kind == kind
    assert document.raw is not None
    assert document.location(("spec",)).line > 0


def test_node_defaults_are_the_platforms() -> None:
    from controller.providers.linux.ssh import SshTarget

    node = _valid(_doc("Node", "n1", "  platform: linux\n  address: n1.example\n"))
    # The schema applies no SSH defaults (they would land on OPNsense nodes too); the
    # Linux provider does.
    assert "port" not in node.spec
    target = SshTarget.from_node(node)
    assert (target.port, target.user, target.connect_timeout) == (22, "root", 10.0)
    assert target.known_hosts_file is not None
    assert str(target.known_hosts_file).endswith("/.ssh/known_hosts")
    assert node.labels == {}


def test_explicit_values_beat_defaults() -> None:
    node = _valid(VALID["Node"])
    assert node.spec["port"] == 2222
    assert node.spec["user"] == "admin"
    assert node.labels == {"role": "web", "example.com/site": "lisbon"}


@pytest.mark.parametrize("kind", ["Package", "File", "User", "NftTable"])
def test_state_defaults_to_present(kind: str) -> None:
    text = VALID[kind].replace("  state: present\n", "")
    assert "state:" not in text
    assert _valid(text).spec["state"] == "present"


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("Package", TARGET),
        ("Service", TARGET),
        ("User", TARGET),
        ("NftTable", TARGET + "  definition: x\n"),
    ],
)
def test_spec_name_defaults_to_metadata_name(kind: str, spec: str) -> None:
    document = _valid(_doc(kind, "thing", spec))
    assert document.spec["name"] == "thing"


def test_spec_name_given_is_kept() -> None:
    assert _valid(VALID["Package"]).spec["name"] == "nginx-light"


def test_file_has_no_name_field_default() -> None:
    file = _valid(VALID["File"])
    assert "name" not in file.spec
    assert file.spec["sensitive"] is True


def test_nfttable_family_defaults_to_inet() -> None:
    table = _valid(_doc("NftTable", "t", TARGET + "  definition: x\n"))
    assert table.spec["family"] == "inet"
    assert table.spec["name"] == "t"


def test_sysctl_value_may_be_int_or_string() -> None:
    assert _valid(VALID["Sysctl"].replace("'1'", "1")).spec["value"] == 1
    assert _valid(VALID["Sysctl"]).spec["value"] == "1"


def test_identity_is_kind_and_name_only() -> None:
    a = _valid(VALID["Package"])
    b = _valid(VALID["Package"].replace("nginx-light", "other"))
    assert a == b
    assert hash(a) == hash(b)
    assert a.subject == "Package/nginx"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "x.yaml:1:1: a document must be a mapping, got a list"),
        ("42", "x.yaml:1:1: a document must be a mapping, got a number"),
        (
            "kind: Node\nmetadata: {name: a}\n",
            "x.yaml:1:1: Node/a: apiVersion: missing; expected 'fazai.dev/v1alpha1'",
        ),
        (
            "apiVersion: fazai.dev/v1alpha1\nmetadata: {name: a}\n",
            "x.yaml:1:1: kind: missing; known kinds: " + KNOWN,
        ),
        (
            "apiVersion: fazai.dev/v1alpha1\nkind: [Node]\n",
            "x.yaml:2:1: kind: unknown kind ['Node']; known kinds: " + KNOWN,
        ),
    ],
)
def test_envelope_errors(text: str, expected: str) -> None:
    document, problems = _validate(text)
    assert document is None
    assert problems == [expected]


def test_all_schema_errors_of_a_document_at_once() -> None:
    text = _doc("File", "m", "  target: {node: web-1}\n  path: etc\n  mode: 0755\n  color: red\n")
    document, problems = _validate(text)
    assert document is None
    # The loader sorts every diagnostic of a run; one document's come in any order.
    assert sorted(problems) == [
        "x.yaml:7:3: File/m: spec.path: 'etc' is not a valid absolute path",
        "x.yaml:8:3: File/m: spec.mode: expected string, got number (quote the mode, like "
        "'0644': unquoted, YAML reads it as the number 493)",
        "x.yaml:9:3: File/m: spec.color: unknown field 'color'; allowed: content, group, mode, "
        "owner, path, sensitive, source, state, target",
    ]


def test_missing_required_spec_field_names_it() -> None:
    document, problems = _validate(_doc("Sysctl", "s", TARGET + "  value: 1\n"))
    assert document is None
    assert problems == ["x.yaml:5:1: Sysctl/s: spec: required field 'key' is missing"]


def test_type_list_names_yaml_words() -> None:
    _, problems = _validate(_doc("Sysctl", "s", TARGET + "  key: a.b\n  value: [1]\n"))
    assert problems == ["x.yaml:8:3: Sysctl/s: spec.value: expected string or integer, got list"]


def test_list_item_error_points_at_the_item() -> None:
    _, problems = _validate(_doc("User", "u", TARGET + "  groups:\n    - adm\n    - 'bad group'\n"))
    assert problems == ["x.yaml:9:7: User/u: spec.groups[1]: 'bad group' is not a valid group name"]


@pytest.mark.parametrize(
    ("kind", "name", "spec"),
    [
        ("Package", '"curl"', '  name: "curl\\n"\n' + TARGET),
        ("Package", '"curl\\n"', TARGET),
        ("User", '"deploy"', '  name: "deploy\\n"\n' + TARGET),
        ("Node", '"web-1\\n"', "  platform: linux\n  address: 10.0.0.1\n"),
        ("Node", '"web-1"', '  platform: linux\n  address: "10.0.0.1\\n"\n'),
    ],
)
def test_a_trailing_newline_does_not_slip_past_a_pattern(kind: str, name: str, spec: str) -> None:
    """Python's `$` matches before a final newline; the schema's dialect (ECMA) does not."""
    document, problems = _validate(_doc(kind, name, spec))
    assert document is None
    assert any("U+000A is not allowed" in p for p in problems), problems

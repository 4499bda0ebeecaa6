"""Reading YAML with positions: every field path keeps its line and column."""

from __future__ import annotations

import pytest

from controller.diagnostics import Location
from controller.model.yamlsource import MAX_VALUES, read_documents

DOC = """\
apiVersion: fazai.dev/v1alpha1
kind: User
metadata:
  name: deploy
  labels: {role: web, site: lisbon}
spec:
  target:
    matchLabels:
      role: web
  groups:
    - adm
    -   sudo
  home: /home/deploy
"""


def _one(
    text: str | bytes, file: str = "x.yaml"
) -> tuple[object, dict[tuple[str | int, ...], Location]]:
    data = text.encode() if isinstance(text, str) else text
    docs, problems = read_documents(file, data)
    assert problems == []
    assert len(docs) == 1
    return docs[0].value, docs[0].positions


def test_positions_of_nested_fields() -> None:
    _, pos = _one(DOC)
    assert pos[("apiVersion",)] == Location("x.yaml", 1, 1)
    assert pos[("metadata", "name")] == Location("x.yaml", 4, 3)
    assert pos[("spec", "target", "matchLabels", "role")] == Location("x.yaml", 9, 7)
    assert pos[("spec", "home")] == Location("x.yaml", 13, 3)


def test_positions_in_flow_mappings() -> None:
    _, pos = _one(DOC)
    assert pos[("metadata", "labels")] == Location("x.yaml", 5, 3)
    assert pos[("metadata", "labels", "role")] == Location("x.yaml", 5, 12)
    assert pos[("metadata", "labels", "site")] == Location("x.yaml", 5, 23)


def test_positions_of_list_items() -> None:
    value, pos = _one(DOC)
    assert value["spec"]["groups"] == ["adm", "sudo"]  # type: ignore[index]
    assert pos[("spec", "groups", 0)] == Location("x.yaml", 11, 7)
    assert pos[("spec", "groups", 1)] == Location("x.yaml", 12, 9)


def test_location_falls_back_to_deepest_existing_ancestor() -> None:
    docs, _ = read_documents("x.yaml", DOC.encode())
    assert docs[0].location(("spec", "target", "node")) == Location("x.yaml", 7, 3)
    assert docs[0].location(("nope", "deeper")) == Location("x.yaml", 1, 1)


def test_duplicate_key_is_refused_and_first_value_kept() -> None:
    docs, problems = read_documents("x.yaml", b"kind: Node\nspec:\n  a: 1\n  b: 2\n  a: 3\n")
    assert [str(p) for p in problems] == [
        "x.yaml:5:3: Node: spec.a: duplicate key 'a' (first at line 3, column 3)"
    ]
    assert docs[0].value["spec"] == {"a": 1, "b": 2}


def test_duplicate_key_in_flow_mapping() -> None:
    _, problems = read_documents("x.yaml", b"a: {x: 1, x: 2}\n")
    assert [str(p) for p in problems] == [
        "x.yaml:1:11: a.x: duplicate key 'x' (first at line 1, column 5)"
    ]


def test_merge_keys_are_expanded_and_overridable() -> None:
    text = """\
base: &base {port: 22, user: root, auth: {agent: true}}
node:
  <<: *base
  user: admin
"""
    value, pos = _one(text)
    assert value["node"] == {"port": 22, "user": "admin", "auth": {"agent": True}}  # type: ignore[index]
    # A merged field is found where it was written; an overriding one where it overrides.
    assert pos[("node", "port")] == Location("x.yaml", 1, 14)
    assert pos[("node", "auth", "agent")] == Location("x.yaml", 1, 43)
    assert pos[("node", "user")] == Location("x.yaml", 4, 3)


def test_merge_of_several_mappings_first_wins() -> None:
    value, _ = _one("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n")
    assert value["c"] == {"x": 1, "y": 1, "z": 2}  # type: ignore[index]


def test_overriding_a_merged_mapping_forgets_its_positions() -> None:
    _, pos = _one("a: &a {auth: {agent: true}}\nb:\n  <<: *a\n  auth: {}\n")
    assert ("b", "auth", "agent") not in pos
    assert pos[("b", "auth")] == Location("x.yaml", 4, 3)


def test_merge_of_a_scalar_is_reported_at_the_merge_key() -> None:
    docs, problems = read_documents("x.yaml", b"a: &a 1\nb:\n  c: 2\n  <<: *a\n")
    assert [str(p) for p in problems] == [
        "x.yaml:4:3: b: merge key '<<': expected a mapping or list of mappings for merging, "
        "but found scalar"
    ]
    assert docs == []


def test_multiple_documents_and_empty_ones_between() -> None:
    text = "---\n# nothing\n---\na: 1\n---\n---\n\n---\nb: 2\n...\n---\n"
    docs, problems = read_documents("x.yaml", text.encode())
    assert problems == []
    assert [d.value for d in docs] == [{"a": 1}, {"b": 2}]
    # index is the position in the file, counting the empty documents
    assert [d.index for d in docs] == [1, 4]
    assert docs[1].location(("b",)) == Location("x.yaml", 9, 1)


def test_bom_is_skipped_and_columns_unchanged() -> None:
    value, pos = _one("\ufeffa: 1\nb: 2\n".encode())
    assert value == {"a": 1, "b": 2}
    assert pos[("a",)] == Location("x.yaml", 1, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "x.yaml: file holds no YAML documents"),
        (b"# only\n# comments\n", "x.yaml: file holds no YAML documents"),
        (b"---\n---\n", "x.yaml: file holds no YAML documents"),
        (b"a: \x00", "x.yaml: binary file (contains NUL bytes); expected YAML text"),
        (b"a: 1\nb: \xff\n", "x.yaml:2:4: invalid UTF-8 (byte 0xff); YAML files must be UTF-8"),
        (
            b"a: [1\n",
            "x.yaml:2:1: YAML syntax error: while parsing a flow sequence started at "
            "line 1, column 4, expected ',' or ']', but got '<stream end>'",
        ),
        (b"a: *nope\n", "x.yaml:1:4: YAML syntax error: found undefined alias 'nope'"),
        (
            b"a: b\n\x07\n",
            "x.yaml:2:1: control character U+0007 is not allowed in YAML text; "
            "remove it, or write it as an escape inside double quotes",
        ),
        (b"a: !!int x\n", "x.yaml:1:4: a: 'x' is not a valid !!int"),
        (b"a: !!float x\n", "x.yaml:1:4: a: 'x' is not a valid !!float"),
        (b"a: !foo x\n", "x.yaml:1:4: a: unsupported tag '!foo'"),
        (
            b"a: !!python/object:os.system {}\n",
            "x.yaml:1:4: a: unsupported tag '!!python/object:os.system'",
        ),
        (b"a: .nan\n", "x.yaml:1:4: a: '.nan' is not a usable number"),
    ],
)
def test_refusals(data: bytes, message: str) -> None:
    docs, problems = read_documents("x.yaml", data)
    assert [str(p) for p in problems] == [message]
    assert docs == []


def test_non_string_key_is_reported_and_dropped() -> None:
    docs, problems = read_documents("x.yaml", b"a:\n  ? [1]\n  : 2\n  b: 3\n")
    assert [str(p) for p in problems] == ["x.yaml:2:5: a: mapping keys must be strings"]
    assert [d.value for d in docs] == [{"a": {"b": 3}}]


def test_good_document_survives_a_broken_sibling() -> None:
    docs, problems = read_documents("x.yaml", b"a: 1\n---\nb: !!int x\n---\nc: 3\n")
    assert [d.value for d in docs] == [{"a": 1}, {"c": 3}]
    assert len(problems) == 1


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    docs, problems = read_documents("x.yaml", ("\n".join(lines) + "\n").encode())
    assert docs == []
    assert len(problems) == 1
    assert f"more than {MAX_VALUES} values after expanding aliases" in problems[0].message
    assert problems[0].location.line > 0


def test_shared_alias_within_limits_is_expanded() -> None:
    value, _ = _one("a: &a [1, 2]\nb: [*a, *a]\n")
    assert value == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_keys_are_strings_even_when_yaml_reads_numbers() -> None:
    value, _ = _one("1: a\n2.5: b\n")
    assert value == {"1": "a", "2.5": "b"}


def test_octal_looking_scalars_follow_yaml_1_1() -> None:
    # The reason the File schema asks for a quoted mode.
    value, _ = _one("a: 0644\nb: '0644'\n")
    assert value == {"a": 420, "b": "0644"}

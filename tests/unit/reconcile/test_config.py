"""fazai.yaml: typed values, every problem at once with file, line and field, sections."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from controller.errors import InvalidInputError
from controller.reconcile import config
from controller.reconcile import sandbox as sandboxing
from controller.reconcile.handle import Mode
from controller.settings import sections


def write(tmp_path: Path, text: str, name: str = "fazai.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, overrides: config.Overrides | None = None) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        config.load(path, overrides)
    return [str(d) for d in caught.value.diagnostics]


@pytest.fixture
def working_copy(tmp_path: Path) -> Path:
    wc = tmp_path / "infra"
    git.Repo.init(wc, initial_branch="main")
    return wc


def test_a_full_config_is_typed_with_paths_relative_to_the_file(
    tmp_path: Path, working_copy: Path
) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "allowed_signers").write_text("a@b ssh-ed25519 AAAA\n")
    (tmp_path / "keys" / "alice.asc").write_text("key\n")
    path = write(
        tmp_path,
        """\
        apiVersion: fazai.dev/v1alpha1
        kind: ControllerConfig
        state: state/fazai.db
        driftCheck: 1h30m
        settle: 250ms
        backoff: {initial: 1s, max: 2m}
        shutdownGrace: 45s
        sources:
          - name: infra
            url: https://user:pw@git.example/acme/infra.git
            branch: refs/heads/prod
            path: /desired_state/
            mode: auto
            nodeModes: {edge-fw: manual, db-1: detect}
            poll: 0
            prune: true
            signatures:
              allowedSigners: keys/allowed_signers
              gpgKeys: [keys/alice.asc]
          - name: local
            watch: infra
        """,
    )
    loaded = config.load(path)
    assert loaded.file == path
    assert loaded.state == tmp_path / "state" / "fazai.db"
    assert (loaded.drift_check, loaded.settle, loaded.shutdown_grace) == (5400.0, 0.25, 45.0)
    assert (loaded.backoff_initial, loaded.backoff_max) == (1.0, 120.0)
    infra, local = loaded.sources
    assert infra.url == "https://user:pw@git.example/acme/infra.git"
    assert (infra.branch, infra.path, infra.poll, infra.prune) == ("prod", "desired_state", 0, True)
    assert infra.mode_for("edge-fw") is Mode.MANUAL
    assert infra.mode_for("db-1") is Mode.DETECT
    assert infra.mode_for("web-1") is Mode.AUTO
    assert infra.signatures is not None
    assert infra.signatures.allowed_signers == tmp_path / "keys" / "allowed_signers"
    assert infra.signatures.gpg_keys == (tmp_path / "keys" / "alice.asc",)
    # Defaults, and a watched working copy is the source when no url is given.
    assert local.url == str(working_copy)
    assert local.watch == working_copy
    assert (local.branch, local.mode, local.poll) == ("main", Mode.DETECT, 60.0)


def test_every_problem_is_reported_at_once_with_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        apiVersion: fazai.dev/v1alpha1
        kind: ControllerConfig
        driftCheck: 10x
        sources:
          - name: Infra
            url: /srv/infra
            mode: yolo
            nodeModes: {edge-fw: manul}
            pol: 60s
        """,
    )
    file = str(path)
    assert problems(path) == [
        f"{file}:3:1: ControllerConfig: driftCheck: is not a valid duration "
        "(like 90s, 10m, 1h30m, or 0)",
        f"{file}:5:5: ControllerConfig: sources[0].name: 'Infra' is not a valid DNS-1123 name "
        "(lowercase letters, digits and '-')",
        f"{file}:7:5: ControllerConfig: sources[0].mode: must be one of: auto, detect, manual",
        f"{file}:8:17: ControllerConfig: sources[0].nodeModes.edge-fw: must be one of: "
        "auto, detect, manual",
        f"{file}:9:5: ControllerConfig: sources[0].pol: unknown field 'pol'; allowed: branch, "
        "mode, name, nodeModes, path, poll, prune, signatures, timeout, url, watch",
    ]


def test_rules_the_schema_cannot_say(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        apiVersion: fazai.dev/v1alpha1
        kind: ControllerConfig
        backoff: {initial: 10s, max: 1s}
        sources:
          - name: infra
            url: /srv/infra
            signatures: {allowedSigners: missing_signers}
          - name: infra
            watch: /nonexistent/wc
          - name: other
        """,
    )
    file = str(path)
    assert problems(path) == [
        f"{file}:3:25: ControllerConfig: backoff.max: must be at least backoff.initial",
        f"{file}:7:18: ControllerConfig: sources[0].signatures.allowedSigners: no such file: "
        f"{tmp_path / 'missing_signers'}",
        f"{file}:8:5: ControllerConfig: sources[1].name: duplicate source name 'infra' "
        "(first at sources[0])",
        f"{file}:9:5: ControllerConfig: sources[1].watch: /nonexistent/wc is not a git working "
        "copy",
        f"{file}:10:5: ControllerConfig: sources[2]: give url (a git URL or repository path) or "
        "watch (a working copy)",
    ]


def test_yaml_syntax_errors_and_wrong_documents(tmp_path: Path) -> None:
    broken = write(tmp_path, "apiVersion: [\n", "broken.yaml")
    assert problems(broken)[0].startswith(f"{broken}:2:1: YAML syntax error")
    wrong = write(tmp_path, "apiVersion: fazai.dev/v1alpha1\nkind: Node\n", "wrong.yaml")
    assert problems(wrong) == [
        f"{wrong}:1:1: ControllerConfig: required field 'sources' is missing",
        f"{wrong}:2:1: ControllerConfig: kind: must be 'ControllerConfig'",
    ]
    assert problems(tmp_path / "absent.yaml") == [
        f"{tmp_path / 'absent.yaml'}: ControllerConfig: cannot read: No such file or directory"
    ]


MINIMAL = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
sources:
  - {name: infra, url: /srv/infra, mode: auto, nodeModes: {edge-fw: manual}, poll: 5m}
"""


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server: {listen: 127.0.0.1:8080}\n")
    loaded = config.load(
        path,
        config.Overrides(
            listen="127.0.0.1:9999", state=tmp_path / "x.db", mode=Mode.DETECT, poll=0.0
        ),
    )
    (source,) = loaded.sources
    assert source.mode_for("edge-fw") is Mode.DETECT  # --mode detect means nothing writes
    assert source.mode_for("web-1") is Mode.DETECT
    assert source.poll == 0.0
    assert loaded.state == tmp_path / "x.db"
    server = loaded.sections["server"]
    listen = server["listen"] if isinstance(server, dict) else server.listen
    assert listen == "127.0.0.1:9999"


def test_schema_defaults_are_the_code_defaults() -> None:
    schema = config.base_schema()
    props, source = schema["properties"], schema["$defs"]["source"]["properties"]
    from controller.settings.durations import parse

    assert parse(props["driftCheck"]["default"]) == config.DEFAULT_DRIFT_CHECK
    assert parse(props["settle"]["default"]) == config.DEFAULT_SETTLE
    assert parse(props["shutdownGrace"]["default"]) == config.DEFAULT_SHUTDOWN_GRACE
    backoff = props["backoff"]["properties"]
    assert parse(backoff["initial"]["default"]) == config.DEFAULT_BACKOFF_INITIAL
    assert parse(backoff["max"]["default"]) == config.DEFAULT_BACKOFF_MAX
    assert props["concurrency"]["default"] == config.DEFAULT_CONCURRENCY
    assert source["branch"]["default"] == config.DEFAULT_BRANCH
    assert source["mode"]["default"] == config.DEFAULT_MODE.value
    assert parse(source["poll"]["default"]) == config.DEFAULT_POLL
    assert parse(source["timeout"]["default"]) == config.DEFAULT_TIMEOUT


@pytest.fixture
def widgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package that owns a ``widgets`` section: its schema and its from_config."""
    package = tmp_path / "pkgs" / "fazai_widgets"
    (package / "schemas").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "schemas" / "widgets.schema.json").write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "https://example.invalid/widgets.schema.json",
                "type": "object",
                "additionalProperties": False,
                "properties": {"size": {"$ref": "#/$defs/size"}, "colour": {"type": "string"}},
                "$defs": {"size": {"type": "integer", "minimum": 1}},
            }
        )
    )
    (package / "settings.py").write_text(
        "class WidgetError(ValueError):\n"
        "    def __init__(self, path, message):\n"
        "        self.path, self.message = path, message\n"
        "        super().__init__(message)\n"
        "def from_config(value):\n"
        "    if value.get('colour') == 'plaid':\n"
        "        raise WidgetError(('colour',), 'plaid is not a colour')\n"
        "    if value['size'] > 100:\n"
        "        error = WidgetError(('size',), 'too big')\n"
        "        error.problems = [(('size',), 'too big'), (('colour',), 'clashes')]\n"
        "        raise error\n"
        "    return ('Widgets', value['size'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    owner = importlib.import_module("fazai_widgets.settings")
    monkeypatch.setattr(sections, "ORDER", (*sections.ORDER, "widgets"))
    # What the owner's settings module does when it is imported.
    monkeypatch.setitem(
        sections._registered,
        "widgets",
        sections.Section("widgets", "fazai_widgets", owner.from_config),
    )
    config._validator.cache_clear()
    yield
    config._validator.cache_clear()
    sys.modules.pop("fazai_widgets.settings", None)
    sys.modules.pop("fazai_widgets", None)


def test_a_section_is_validated_by_its_package_schema_and_parsed_by_it(
    tmp_path: Path, widgets: None
) -> None:
    good = write(tmp_path, MINIMAL + "widgets: {size: 3}\n", "good.yaml")
    assert config.load(good).sections["widgets"] == ("Widgets", 3)
    assert "widgets" in config.config_schema()["properties"]
    bad = write(tmp_path, MINIMAL + "widgets:\n  size: 0\n", "bad.yaml")
    assert problems(bad) == [
        f"{bad}:6:3: ControllerConfig: widgets.size: must be at least 1, got 0"
    ]
    plaid = write(tmp_path, MINIMAL + "widgets:\n  size: 2\n  colour: plaid\n", "plaid.yaml")
    assert problems(plaid) == [
        f"{plaid}:7:3: ControllerConfig: widgets.colour: plaid is not a colour"
    ]
    huge = write(tmp_path, MINIMAL + "widgets:\n  size: 101\n  colour: red\n", "huge.yaml")
    assert problems(huge) == [
        f"{huge}:6:3: ControllerConfig: widgets.size: too big",
        f"{huge}:7:3: ControllerConfig: widgets.colour: clashes",
    ]


def test_a_section_no_owner_registered_is_refused_not_passed_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sections._registered, "reports")
    config._validator.cache_clear()
    try:
        path = write(tmp_path, MINIMAL + "reports: {dir: reports/, anything: [1, 2]}\n")
        with pytest.raises(RuntimeError, match="'reports' section has no registered owner"):
            config.load(path)
    finally:
        config._validator.cache_clear()


def test_the_sandbox_config_shipped_is_valid(tmp_path: Path) -> None:
    text = (
        sandboxing.default_config_text().decode().replace("/var/lib/fazai/sandbox", str(tmp_path))
    )
    assert sandboxing.seed_working_copy(tmp_path / "infra")
    assert not sandboxing.seed_working_copy(tmp_path / "infra")  # kept once made
    loaded = config.parse(text.encode(), "sandbox.fazai.yaml", tmp_path)
    (source,) = loaded.sources
    assert source.watch == tmp_path / "infra"
    assert source.mode is Mode.AUTO
    assert source.mode_for("db-1") is Mode.DETECT
    repo = git.Repo(tmp_path / "infra")
    assert not repo.is_dirty(untracked_files=True)
    assert "nodes/sandbox.yaml" in {str(p) for p, _ in repo.index.entries}

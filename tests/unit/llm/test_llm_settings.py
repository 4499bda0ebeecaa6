"""The ``models`` section: its defaults, a full section, and each bad field refused at
its line by the config loader, never echoing a value that may be a pasted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import SettingsError
from controller.llm import settings
from controller.llm.completion import Role
from controller.llm.settings import (
    EndpointSettings,
    LocalModel,
    ModelsSettings,
    SecretRef,
    from_config,
    parse_size,
)
from controller.reconcile import config
from controller.settings.read import InvalidConfigError

HEAD = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
state: state.db
sources:
  - {name: infra, url: /srv/infra}
models:
"""
KEY = "sk-live-9f8e7d6c5b4a39281706"  # a realistic key, pasted where it does not belong


def load(tmp_path: Path, text: str) -> config.ControllerConfig:
    file = tmp_path / "fazai.yaml"
    file.write_text(HEAD + text)
    return config.load(file)


def refused(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, text)
    prefix = f"{tmp_path / 'fazai.yaml'}:"
    out = []
    for diagnostic in caught.value.diagnostics:
        shown = str(diagnostic)
        assert shown.startswith(prefix)
        out.append(shown[len(prefix) :])
    return out


def test_no_section_gives_the_embedded_models_one_per_role() -> None:
    models = from_config(None)
    assert models == ModelsSettings()
    assert [(b.name, b.role, b.local) for b in models.backends] == [
        (settings.DEFAULT_BRAIN, Role.BRAIN, LocalModel(embedded=settings.DEFAULT_BRAIN)),
        (settings.DEFAULT_EXECUTOR, Role.EXECUTOR, LocalModel(embedded=settings.DEFAULT_EXECUTOR)),
        ("minilm", Role.EMBEDDER, LocalModel(embedded="minilm")),
    ]
    assert {settings.DEFAULT_BRAIN, settings.DEFAULT_EXECUTOR} == {"gemma3-270m", "smollm2-135m"}
    assert models.memory_budget is None and models.worker.queue == 8
    assert (models.circuit.failures, models.circuit.reset) == (3, 30.0)


def test_a_full_section_read_through_the_loader(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "coder.gguf").write_bytes(b"GGUF")
    loaded = load(
        tmp_path,
        """\
  memoryBudget: 1.5GiB
  worker: {socket: run/model.sock, queue: 4}
  circuit: {failures: 2, reset: 500ms}
  backends:
    - name: gemma
      role: brain
      local: {embedded: gemma3-270m}
      contextSize: 4096
      threads: 1
      slots: 2
    - name: qwen2.5
      role: brain
      endpoint:
        url: http://127.0.0.1:11434/v1/
        model: qwen2.5:7b
        apiKeyRef: {env: OLLAMA_KEY}
        connectTimeout: 2s
        tokenTimeout: 1m
        maxRetries: 0
        responseFormat: json_object
    - name: coder
      role: executor
      local: {path: models/coder.gguf}
    - {name: vectors, role: embedder, local: {embedded: minilm}}
""",
    )
    models = loaded.sections["models"]
    assert isinstance(models, ModelsSettings)
    assert models.memory_budget == int(1.5 * 1024**3)
    assert models.worker.socket_path == tmp_path / "run" / "model.sock"
    assert (models.worker.queue, models.circuit.failures, models.circuit.reset) == (4, 2, 0.5)
    assert [b.name for b in models.chain(Role.BRAIN)] == ["gemma", "qwen2.5"]
    assert [b.name for b in models.chain("executor")] == ["coder"]
    gemma = models.backend("gemma")
    assert gemma is not None and (gemma.context_size, gemma.threads, gemma.slots) == (4096, 1, 2)
    qwen = models.backend("qwen2.5")
    assert qwen is not None and qwen.endpoint == EndpointSettings(
        url="http://127.0.0.1:11434/v1",
        model="qwen2.5:7b",
        api_key=SecretRef(env="OLLAMA_KEY"),
        connect_timeout=2.0,
        token_timeout=60.0,
        max_retries=0,
        response_format="json_object",
    )
    coder = models.backend("coder")
    assert coder is not None and coder.local == LocalModel(path=tmp_path / "models" / "coder.gguf")
    assert coder.model == "coder.gguf"


def test_backends_given_are_the_whole_set(tmp_path: Path) -> None:
    models = load(
        tmp_path,
        "  backends:\n"
        "    - {name: o, role: brain, endpoint: {url: 'http://127.0.0.1:1/v1', model: m}}\n",
    ).sections["models"]
    assert [b.name for b in models.backends] == ["o"]
    assert models.chain(Role.EMBEDDER) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "  memoryBudget: lots\n",
            "7:3: ControllerConfig: models.memoryBudget: is not a valid size (bytes, or like "
            "512MiB, 1GiB, 1.5GB)",
        ),
        (
            "  memoryBudget: 1MiB\n",
            "7:3: ControllerConfig: models.memoryBudget: must be at least 64MiB",
        ),
        (
            "  backends:\n    - {name: Big_Name, role: brain, local: {embedded: gemma3-270m}}\n",
            "8:8: ControllerConfig: models.backends[0].name: 'Big_Name' is not a valid model name"
            " (lower-case letters, digits, '-' and '.', at most 63)",
        ),
        (
            "  backends:\n    - {name: a, role: planner, local: {embedded: gemma3-270m}}\n",
            "8:17: ControllerConfig: models.backends[0].role: must be one of: brain, executor, "
            "embedder",
        ),
        (
            "  backends:\n    - {name: a, role: brain}\n",
            "8:7: ControllerConfig: models.backends[0]: give exactly one of local or endpoint",
        ),
        (
            "  backends:\n    - {name: a, role: embedder, local: {embedded: gemma3-270m}}\n",
            "8:41: ControllerConfig: models.backends[0].local.embedded: gemma3-270m serves only: "
            "brain, executor",
        ),
        (
            "  backends:\n    - {name: a, role: brain, local: {embedded: gemma3-270m}}\n"
            "    - {name: a, role: executor, local: {embedded: smollm2-135m}}\n",
            "9:8: ControllerConfig: models.backends[1].name: 'a' names two backends",
        ),
        (
            "  backends:\n    - {name: a, role: brain, local: {path: nowhere.gguf}}\n",
            None,  # names the missing file: checked below
        ),
        (
            "  backends:\n    - {name: a, role: brain, endpoint: {url: 'ftp://h/v1', model: m}}\n",
            "8:41: ControllerConfig: models.backends[0].endpoint.url: is not a valid value here"
            " (see this field's documentation)",
        ),
        (
            "  backends:\n    - {name: a, role: brain, endpoint: {url: 'http://h/v1', model: m,"
            " tokenTimeout: 11m}}\n",
            "8:71: ControllerConfig: models.backends[0].endpoint.tokenTimeout: must be more than 0"
            " and at most 10m",
        ),
        (
            "  circuit: {reset: 10ms}\n",
            "7:13: ControllerConfig: models.circuit.reset: must be at least 100ms and at most 1h",
        ),
        (
            "  worker: {queue: 0}\n",
            "7:12: ControllerConfig: models.worker.queue: must be at least 1, got 0",
        ),
    ],
)
def test_each_bad_field_is_named_at_its_line(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    found = refused(tmp_path, text)
    if expected is None:
        assert found == [
            f"8:38: ControllerConfig: models.backends[0].local.path: no such file or folder: "
            f"{tmp_path / 'nowhere.gguf'}"
        ]
    else:
        assert found == [expected]


@pytest.mark.parametrize(
    "text",
    [
        f"  backends:\n    - {{name: a, role: brain, endpoint: {{url: 'http://h/v1', model: m,"
        f" apiKeyRef: {KEY}}}}}\n",
        f"  backends:\n    - {{name: a, role: brain, endpoint: {{url: 'http://h/v1', model: m,"
        f" apiKey: {KEY}}}}}\n",
        f"  backends:\n    - {{name: a, role: brain, endpoint: {{url: 'http://u:{KEY}@h/v1',"
        " model: m}}\n",
        f"  backends:\n    - {{name: a, role: brain, endpoint: {{url: 'http://h/v1', model: m,"
        f" tokenTimeout: {KEY}}}}}\n",
        f"  memoryBudget: {KEY}\n",
    ],
)
def test_a_key_pasted_inline_is_refused_without_being_repeated(tmp_path: Path, text: str) -> None:
    found = refused(tmp_path, text)
    assert found and all(KEY not in line for line in found)


def test_from_config_on_its_own_raises_settings_error_with_the_path() -> None:
    with pytest.raises(SettingsError) as caught:
        from_config({"backends": [{"name": "a", "role": "brain", "local": {"embedded": "minilm"}}]})
    assert caught.value.problems == (
        (("backends", 0, "local", "embedded"), "minilm serves only: embedder"),
    )


@pytest.mark.parametrize(
    ("value", "size"),
    [(1024, 1024), ("1GiB", 1024**3), ("512 MiB", 512 * 1024**2), ("1.5GB", 1_500_000_000),
     ("2048", 2048), ("10kB", 10_000)],
)  # fmt: skip
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


def test_the_default_socket_follows_the_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert settings.default_socket() == Path("/run/user/1000/fazai-model.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("FAZAI_STATE", "/var/lib/fazai/state.db")
    assert settings.default_socket() == Path("/var/lib/fazai/fazai-model.sock")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://:8080/v1", "is not an http(s) URL with a host"),
        ("http://[::1/v1", "is not an http(s) URL with a host"),
        ("http://h:99999/v1", "has a port outside 1-65535"),
    ],
)
def test_an_endpoint_url_is_read_as_httpx_reads_it_and_the_field_named(
    url: str, problem: str
) -> None:
    """The schema's pattern passes these; httpx would fail on them at the first request,
    far from the config's line."""
    raw = {"name": "a", "role": "brain", "endpoint": {"url": url, "model": "m"}}
    with pytest.raises(SettingsError) as caught:
        from_config({"backends": [raw]})
    assert caught.value.problems[0][0] == ("backends", 0, "endpoint", "url")
    assert caught.value.problems[0][1].startswith(problem)

"""The gateway's exposure rules, as ``fazai serve``'s: beyond loopback only with a token;
without a token, only requests addressed to a loopback host, writes only as JSON; bodies
bounded. No model is needed: the refusals come before the runtime is asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from gatewaykit import TOKEN, gateway

from controller.gateway import settings as gateway_settings
from controller.gateway.app import Model
from controller.llm.completion import Answer, Chunk, Completion, Role
from controller.server.errors import ServerConfigError


class NoRuntime:
    """Refusals must come before the runtime: any call here fails the test."""

    def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        raise AssertionError("the runtime was asked")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise AssertionError("the runtime was asked")


MODELS = [Model("brain", Role.BRAIN)]


@pytest.mark.parametrize("listen", ["0.0.0.0:8081", "[::]:8081", "192.0.2.7:8081", "gw.example:80"])
def test_beyond_loopback_without_a_token_is_refused(listen: str) -> None:
    with pytest.raises(ServerConfigError, match="not a loopback address and no token"):
        gateway_settings.from_options(listen, (), None, None)


def test_beyond_loopback_with_a_token_is_allowed() -> None:
    settings = gateway_settings.from_options("0.0.0.0:8081", ("env:GW_TOKEN",), None, None)
    assert settings.host == "0.0.0.0" and settings.tokens


def test_loopback_is_the_default() -> None:
    settings = gateway_settings.from_options(None, (), None, None)
    assert settings.listen == "127.0.0.1:8081"


async def test_an_open_gateway_answers_only_loopback_hosts_and_json() -> None:
    async with gateway(NoRuntime(), MODELS) as running, httpx.AsyncClient(timeout=10) as http:
        rebound = await http.get(f"{running.url}/models", headers={"Host": "evil.example:8081"})
        assert rebound.status_code == 403
        assert "loopback" in rebound.json()["error"]["message"]
        form = await http.post(
            f"{running.url}/chat/completions",
            content=b"messages=hi",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
        listed = await http.get(f"{running.url}/models")
        assert listed.status_code == 200 and listed.json()["data"][0]["id"] == "brain"


async def test_bad_requests_are_400_in_openai_shape() -> None:
    async with gateway(NoRuntime(), MODELS) as running, httpx.AsyncClient(timeout=10) as http:
        url = f"{running.url}/chat/completions"
        cases = [
            ({"model": "brain"}, "messages"),
            (
                {"model": "brain", "messages": [{"role": "tool", "content": "x"}]},
                "messages[0].role",
            ),
            ({"model": "brain", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
            (
                {"model": "brain", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
                "tools",
            ),
            (
                {
                    "model": "brain",
                    "messages": [{"role": "user", "content": "x"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "x"}},
                },
                "response_format.json_schema.schema",
            ),
        ]
        for body, param in cases:
            got = await http.post(url, json=body)
            assert got.status_code == 400, body
            assert got.json()["error"]["param"] == param
        unknown = await http.post(
            url, json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


async def test_a_body_beyond_the_limit_is_413() -> None:
    async with gateway(NoRuntime(), MODELS) as running, httpx.AsyncClient(timeout=30) as http:
        big = b'{"messages": "' + b"x" * (gateway_settings.MAX_BODY + 10) + b'"}'
        got = await http.post(
            f"{running.url}/chat/completions",
            content=big,
            headers={"Content-Type": "application/json"},
        )
        assert got.status_code == 413


def test_fazai_model_serve_answers_an_openai_client(tmp_path: Path) -> None:
    """The whole command: ``fazai model serve`` with the embedded defaults replaced by a
    small SmolLM2 (fazai.yaml), a real OpenAI client, no network; /metrics after it."""
    import openai

    config = tmp_path / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\n"
        f"sources: [{{name: site, url: {tmp_path}}}]\n"
        f"models:\n  worker: {{socket: {tmp_path / 'm.sock'}}}\n"
        "  backends:\n    - {name: tiny, role: brain, local: {embedded: smollm2-135m}, "
        "contextSize: 1024, threads: 1}\n"
        # An endpoint beside it (never asked here): a chat beside serve builds it too.
        "    - {name: far, role: executor, endpoint: {url: 'http://127.0.0.1:9/v1', model: m}}\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GW_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from controller.cli import run; run()",
            "model",
            "serve",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
            "--token-ref",
            "env:GW_TOKEN",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), proc.stderr.read() if proc.stderr else ""
        url = line.split()[-1]
        client = openai.OpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=120)
        done = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
        )
        assert done.choices[0].message.content
        metrics = httpx.get(
            url.replace("/v1", "/metrics"), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert metrics.status_code == 200
        assert 'backend="tiny"' in metrics.text
        # A chat beside it uses the worker it supervises instead of refusing or starting one.
        chat = subprocess.run(
            [
                sys.executable,
                "-c",
                "from controller.cli import run; run()",
                "model",
                "chat",
                "Say hi.",
                "--max-tokens",
                "6",
                "--config",
                str(config),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stderr
        assert "tiny" in chat.stderr and "tok/s" in chat.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    assert not (tmp_path / "m.sock").exists()  # the worker it started stopped with it

"""controller.server.protocol subclasses uvicorn's H11Protocol and relies on parts of it
that are not uvicorn's public API. These tests pin them: a uvicorn that renames or drops
one fails here, not in production as a connection cap that silently stops working."""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from starlette.applications import Starlette
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from controller.server.protocol import GuardedH11Protocol
from controller.server.run import uvicorn_config
from controller.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[3]


def test_the_installed_uvicorn_is_in_the_range_pyproject_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = next(Requirement(d) for d in project["dependencies"] if d.startswith("uvicorn"))
    assert wanted.specifier.contains(metadata.version("uvicorn"))
    assert any(spec.operator == "<" for spec in wanted.specifier), "no upper bound on uvicorn"


def test_the_server_takes_no_websocket_upgrade() -> None:
    config = uvicorn_config(Starlette(), ServerSettings())
    config.load()
    assert config.ws == "none"  # even once websockets or wsproto is installed
    assert config.ws_protocol_class is None  # an upgrade leaves server_state.connections
    assert issubclass(config.http_protocol_class, GuardedH11Protocol)


async def test_the_h11_protocol_internals_the_guard_uses_exist() -> None:
    config = uvicorn_config(Starlette(), ServerSettings())
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=state, app_state={}, _loop=loop
    )
    assert isinstance(protocol, H11Protocol)
    assert protocol.connections is state.connections  # the cap counts the server's set
    assert protocol.loop is loop
    assert protocol.cycle is None and protocol.transport is None and protocol.flow is None
    for name in ("on_response_complete", "pause_writing", "resume_writing", "data_received"):
        assert callable(getattr(H11Protocol, name)), name
    # A cycle is told to call back on_response_complete, and says when its response is done.
    parameters = inspect.signature(RequestResponseCycle).parameters
    assert "on_response" in parameters
    assert "self.response_complete = " in inspect.getsource(RequestResponseCycle.__init__)
    assert "on_response=self.on_response_complete" in inspect.getsource(H11Protocol)
    # pause_writing/resume_writing drive the flow control whose drain a send awaits.
    flow = FlowControl(None)
    assert flow.write_paused is False and callable(flow.drain)
    assert "await self.flow.drain()" in inspect.getsource(RequestResponseCycle.send)

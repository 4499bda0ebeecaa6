"""A real HTTP server on loopback that records what webhooks POST to it, and answers with
scripted statuses and delays."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    delay: float = 0.0  # seconds before answering, every request
    retry_after: str | None = None


class HookServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts = 0
        self.script = Script()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with server._lock:
                    server.attempts += 1
                    status = server.script.statuses.pop(0) if server.script.statuses else 200
                    delay = server.script.delay
                time.sleep(delay)
                if status == 200:
                    with server._lock:
                        server.received.append(
                            Received(self.path, dict(self.headers), json.loads(raw))
                        )
                self.send_response(status)
                if status != 200 and server.script.retry_after is not None:
                    self.send_header("Retry-After", server.script.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/T000/B000/SECRETTOKEN"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    def __enter__(self) -> HookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

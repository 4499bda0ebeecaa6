"""JSON answers and request bodies, the same way on every route.

Errors are ``{"error": "..."}`` with the status that says what went wrong; a failure
nobody planned for is a 500 that says nothing more than "internal error" (its details go
to the log, whose messages, like every FazAI error, carry no secret).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("fazai.server")

MAX_JSON_BODY = 64 * 1024
MAX_ID = 2**63 - 1  # SQLite's largest integer: every id and count the API takes fits in it
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "²"


def reply(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, dict(headers or {}))


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, dict(headers or {}))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (counted as it arrives,
    so a client that lies in Content-Length, or sends none, cannot make us hold more), and
    with 408 when it has not all arrived within the server's ``body_timeout``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 19 or int(declared) > limit):
        raise HTTPException(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    seconds: float = request.app.state.settings.body_timeout
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"the body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(
            408, f"the body did not arrive within {seconds:g} s", {"Connection": "close"}
        ) from None
    except ClientDisconnect:  # gone, or closed to make room (controller.server.protocol)
        raise HTTPException(400, "the client went away before sending the body") from None
    return b"".join(chunks)


def whole_number(text: str, low: int = 0, high: int = MAX_ID) -> int | None:
    """``text`` as a whole number from ``low`` to ``high``; None for anything else (a sign,
    a fraction, non-ASCII digits, or thousands of digits, which int() refuses to convert)."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


async def read_json_object(request: Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise HTTPException(400, "the body is not UTF-8 JSON") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise HTTPException(400, "the body is nested too deeply") from None
    except ValueError:  # an integer of thousands of digits (sys.get_int_max_str_digits)
        raise HTTPException(400, "the body holds a number too long to read") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return error(exc.status_code, str(exc.detail), headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, "internal error")

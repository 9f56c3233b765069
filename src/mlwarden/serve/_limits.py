"""The request-body cap: a pure ASGI middleware that answers 413 before anything is parsed.

A body declared larger than the cap (``Content-Length``) is refused without reading a byte; a
body without a declared length (chunked) is read only up to the cap. What passes is handed to
the app unchanged. Without the cap a 50 MB body was read and parsed in full before the schema
refused it.
"""

from __future__ import annotations

from typing import Any

from mlwarden.errors import SpecError

__all__ = ["BodyLimit"]


class BodyLimit:
    """Refuse HTTP request bodies over ``max_bytes`` with 413, before the app reads them.

    Parameters
    ----------
    app:
        The ASGI app behind the cap.
    max_bytes:
        Largest body accepted, in bytes.
    hint:
        Appended to the 413 message: what a client should send instead.
    """

    def __init__(self, app: Any, max_bytes: int, hint: str = "") -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise SpecError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        self.app = app
        self.max_bytes = max_bytes
        self.hint = hint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400, "the Content-Length header is not a non-negative integer")
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send, f"{declared} bytes")
            return
        messages: list[Any] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # disconnected: let the app see it
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send, f"more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any, got: str) -> None:
        hint = f"; {self.hint}" if self.hint else ""
        await _answer(
            send, 413, f"the request body is too large: {got}, at most {self.max_bytes}{hint}"
        )


def _content_length(scope: Any) -> int | None:
    """The declared body length, None if undeclared, -1 if unreadable."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else -1
    return None


async def _answer(send: Any, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

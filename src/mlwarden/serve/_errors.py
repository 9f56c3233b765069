"""What the server answers when it refuses a request: bounded, JSON-safe error bodies.

A client error must never become a 500, and an error body must never be bigger than needed:

* a 422 lists at most :data:`MAX_ERRORS` problems, each with at most :data:`MAX_EXCERPT`
  characters of the offending input (a 100,000-row request is not echoed back), and every
  string in it is made encodable (a lone surrogate in a field name or value, a NaN that JSON
  cannot write, raw bytes) so rendering the answer cannot fail;
* a body that is not JSON (or JSON Python cannot read, such as a 5,000-digit integer) is a
  400 naming the parser's complaint, not "There was an error parsing the body";
* more rows than a request may hold is a 413 saying how many may;
* the serving database failing (:class:`~mlwarden.errors.StoreError`) is a 503, the server's
  state, not the client's fault.

The response models here are declared in the OpenAPI document of every operation.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlwarden.errors import StoreError

#: Most validation problems listed in one 422 answer (the rest are counted).
MAX_ERRORS = 20
#: Most characters of the offending input echoed per problem.
MAX_EXCERPT = 200
_MAX_TEXT = 500


class ErrorBody(BaseModel):
    """A refusal: what went wrong and, where it applies, what to do."""

    detail: str


class Problem(BaseModel):
    """One reason the request body was refused: where (``loc``), what, and an excerpt."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ValidationBody(BaseModel):
    """A 422: the first problems found (at most 20) and how many there were in all."""

    detail: list[Problem]
    errors: int


def safe_text(value: object, limit: int = _MAX_TEXT) -> str:
    """``value`` as text that UTF-8 can encode, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def excerpt(value: Any) -> Any:
    """A JSON-safe, bounded stand-in for an offending input value."""
    if value is None or isinstance(value, bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
            return safe_text(f"an integer of {len(str(abs(value)))} digits")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray):
        return safe_text(repr(bytes(value[:MAX_EXCERPT])), MAX_EXCERPT)
    if isinstance(value, str):
        return safe_text(value, MAX_EXCERPT)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) <= MAX_EXCERPT:
        try:
            text.encode("utf-8")
            return json.loads(text) if isinstance(value, list | dict) else text
        except (UnicodeEncodeError, ValueError):
            pass
    size = f" ({len(value)} items)" if isinstance(value, list | dict) else ""
    return safe_text(text, MAX_EXCERPT) + size


def _loc(parts: Any) -> list[str | int]:
    return [p if isinstance(p, int) else safe_text(p, 100) for p in parts]


def problems(errors: list[dict[str, Any]]) -> ValidationBody:
    """The 422 body for pydantic's ``errors``: bounded and JSON-safe."""
    shown = [
        Problem(
            type=safe_text(e.get("type", "value_error"), 100),
            loc=_loc(e.get("loc", ())),
            msg=safe_text(str(e.get("msg", "invalid")).removeprefix("Value error, ")),
            input=excerpt(e.get("input")),
        )
        for e in errors[:MAX_ERRORS]
    ]
    return ValidationBody(detail=shown, errors=len(errors))


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 for a body that does not fit the schema, never echoing more than an excerpt."""
    assert isinstance(exc, RequestValidationError)
    errors = [dict(e) for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = reason.get("ctx") or {}
        where = reason.get("loc", ("body", "?"))[-1]
        detail = f"the body is not valid JSON: {ctx.get('error', 'decode error')} at char {where}"
        return JSONResponse({"detail": safe_text(detail)}, 400)
    for e in errors:
        if e.get("type") == "too_long" and tuple(e.get("loc", ())) == ("body", "rows"):
            most = (e.get("ctx") or {}).get("max_length", "?")
            got = len(e["input"]) if isinstance(e.get("input"), list) else "more"
            detail = f"a request may hold at most {most} rows, got {got}: split it"
            return JSONResponse({"detail": detail}, 413)
    return JSONResponse(problems(errors).model_dump(mode="json"), 422)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's HTTP errors, with the parser's reason for a body it could not read."""
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    if exc.status_code == 400 and exc.__cause__ is not None:
        detail = f"the body is not valid JSON: {exc.__cause__}"
    body = {"detail": safe_text(detail) if isinstance(detail, str) else detail}
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
    """503: the serving database (keys, decision log) is unavailable; retry shortly."""
    return JSONResponse(
        {"detail": safe_text(f"the serving database is unavailable: {exc}")},
        503,
        headers={"Retry-After": "5"},
    )


def install(app: Any) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(StoreError, on_store_error)


_DESCRIPTIONS = {
    400: "The body is not JSON.",
    401: "No API key, or an unknown, wrong or revoked one (send 'Authorization: Bearer KEY').",
    403: "The key's role does not allow this operation, or the client is blocked.",
    404: "Nothing has this id.",
    413: "The body, or the number of rows, is larger than this deployment accepts.",
    422: "The body does not fit the schema: the problems found, each with an excerpt.",
    429: "Rate limited: retry after the seconds in the Retry-After header.",
    501: "The served model cannot do this (an early-exit network has no SHAP explainer).",
    503: "A guard, the model or the decision log failed and this deployment fails closed.",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given status codes, each with its body model."""
    return {
        code: {
            "model": ValidationBody if code == 422 else ErrorBody,
            "description": _DESCRIPTIONS[code],
        }
        for code in codes
    }

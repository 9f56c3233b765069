"""Who may ask, and how much: API-key authentication by role, the per-key rate limit, and the
block or throttle the extraction guard puts on a client after an alarm."""

import logging
import math
from collections.abc import Awaitable, Callable, MutableSet
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import Principal, Role
from mlwarden.serve._state import LocalState
from mlwarden.serve._state_calls import StateCall, settle

_log = logging.getLogger(__name__)
_bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An mlwarden API key (`mlwarden keys create`): 'Authorization: Bearer mlw_...'.",
)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Admission:
    """The checks a request passes before the model sees it, with the buckets they spend."""

    def __init__(self, g: Guarded) -> None:
        self.g = g
        limits = g.deployment.rate_limit
        self.guard = g.deployment.guards.extraction
        self.limiter = g.state.limiter("rate", limits.rate_per_s, limits.burst, g.clock)
        self.slow_lane = g.state.limiter("slow", self.guard.throttle_rate_per_s, 1, g.clock)

    def require(self, role: Role, *, charge: bool = True) -> Callable[..., Awaitable[Principal]]:
        """The dependency checking a key for ``role``; ``charge``: spend one row of its rate
        limit (``/v1/predict`` charges its rows itself).

        A key verified recently is checked on the event loop from the key cache (no thread hop)
        while guard state is in this process; a cache miss, or state in Redis, goes to a worker
        thread, since both do I/O.
        """
        in_memory = isinstance(self.g.state, LocalState)

        def admitted(request: Request, key: str | None, principal: Principal | None) -> Principal:
            allowed = self._check_principal(request, key, principal, role)
            if charge:
                self.admit(allowed.key_id, 1)
            return allowed

        def from_store(request: Request, key: str | None) -> Principal:
            return admitted(request, key, self.g.keys.authenticate(key) if key else None)

        async def check(
            request: Request,
            _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        ) -> Principal:
            key = _bearer(request)
            if in_memory and key is not None:
                known, principal = self.g.keys.cached(key)
                if known:
                    return admitted(request, key, principal)
            return await run_in_threadpool(from_store, request, key)

        return check

    def _check_principal(
        self, request: Request, key: str | None, principal: Principal | None, role: Role
    ) -> Principal:
        """``principal``, or refuse a missing key (401), an unknown or revoked one (401), a
        wrong role (403)."""
        metrics = self.g.metrics
        if key is None:
            metrics.auth_failures.labels(reason="missing").inc()
            raise HTTPException(
                401,
                "missing API key: send 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal is None:
            metrics.auth_failures.labels(reason="invalid").inc()
            raise HTTPException(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if not principal.allows(role):
            metrics.auth_failures.labels(reason="role").inc()
            raise HTTPException(
                403, f"this key has role {principal.role!r}; {request.url.path} needs {role!r}"
            )
        return principal

    def refuse_blocked(self, client: str) -> bool:
        """Refuse with 403 a client the extraction guard has blocked; else return whether it
        is throttled (for :meth:`admit`: on shared state both are asked in one round trip)."""
        g = self.g
        if isinstance(g.state, LocalState):  # two set lookups: no round trip to share
            blocked, throttled = client in g.blocked, client in g.throttled
        else:
            blocked, throttled = settle([_member(g.blocked, client), _member(g.throttled, client)])
        if blocked:
            self.g.metrics.blocked.inc()
            raise HTTPException(
                403, "this client is blocked: its queries look like a model extraction attack"
            )
        return bool(throttled)

    def admit(self, client: str, cost: int, *, throttled: bool | None = None) -> None:
        """Spend ``cost`` rows from the client's buckets, or refuse with 413 or 429.

        ``throttled``: whether the client is throttled, as :meth:`refuse_blocked` found it
        (None: ask)."""
        metrics = self.g.metrics
        lanes = [(self.limiter, False)]
        if throttled if throttled is not None else client in self.g.throttled:
            lanes.append((self.slow_lane, True))
        for bucket, throttled in lanes:
            if cost > bucket.burst:
                metrics.rate_limited.inc()
                if not throttled:
                    raise HTTPException(
                        413,
                        f"a request may hold at most {bucket.burst} rows (rate_limit.burst), "
                        f"got {cost}: split it",
                    )
                retry = retry_after(bucket.wait_s(client, bucket.burst))
                raise HTTPException(
                    429,
                    f"this client is throttled after an extraction alarm to "
                    f"{bucket.rate_per_s:g} rows/s and {bucket.burst} row per request: send "
                    f"one row at a time, the next in {retry} s",
                    headers={"Retry-After": retry},
                )
            decision = bucket.acquire(client, cost=cost)
            if not decision.allowed:
                metrics.rate_limited.inc()
                retry = retry_after(decision.retry_after_s)
                raise HTTPException(
                    429, f"rate limit: retry in {retry} s", headers={"Retry-After": retry}
                )

    def restricts(self, client: str) -> bool:
        """Whether an extraction alarm now would newly block or throttle ``client``."""
        if self.guard.action == "block":
            return True
        return self.guard.action == "throttle" and client not in self.g.throttled

    def refuse_thief(self, client: str, row: int, rows: int, reason: str) -> NoReturn:
        """Block or throttle ``client`` and refuse the request that raised the alarm."""
        _log.warning("extraction alarm: client %s, row %d of %d: %s", client, row, rows, reason)
        what = f"row {row} of this request raised the extraction alarm ({reason}); no row of it "
        if self.guard.action == "block":
            self.g.blocked.add(client)
            self.g.metrics.blocked.inc()
            raise HTTPException(403, f"{what}was answered and this client is now blocked")
        self.g.throttled.add(client)
        self.g.metrics.rate_limited.inc()
        retry = retry_after(self.slow_lane.wait_s(client, 1))
        raise HTTPException(
            429,
            f"{what}was answered and this client is now throttled to "
            f"{self.guard.throttle_rate_per_s:g} rows/s, one row per request",
            headers={"Retry-After": retry},
        )


def _member(clients: MutableSet[str], client: str) -> StateCall[bool]:
    """Whether ``client`` is in ``clients``, as a call (joins a batch on shared state)."""
    call = getattr(clients, "contains_call", None)
    return call(client) if callable(call) else StateCall(lambda: client in clients)

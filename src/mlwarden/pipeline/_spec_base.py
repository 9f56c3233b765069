"""The sections every kind of pipeline spec ends with: the gate and the registration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.audit import GateMode, OnInconclusive


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(_Strict):
    """What the gate does with failing checks, and with inconclusive ones (too few points)."""

    mode: GateMode = "fail-closed"
    on_inconclusive: OnInconclusive = "warn"


class RegisterSpec(_Strict):
    """Under which name a model that passes the gate is registered."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")

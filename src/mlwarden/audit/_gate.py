"""The gate: the policy applied to audit findings decides whether a model may ship."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from mlwarden.audit._checks import Finding

GateMode = Literal["fail-closed", "warn"]
#: What an inconclusive finding does: fail the gate, let the model through flagged, or pass.
OnInconclusive = Literal["fail", "warn", "pass"]


class GateResult(BaseModel):
    """The gate's decision.

    ``passed``: every check passed (and none was inconclusive, unless the policy says
    ``on_inconclusive: pass``). ``allow_registration``: the model ships, flagged when it did not
    pass. ``failures`` name the failing checks (inconclusive ones too under
    ``on_inconclusive: fail``); ``inconclusive`` names every inconclusive check.
    """

    mode: GateMode
    on_inconclusive: OnInconclusive = "warn"
    passed: bool
    allow_registration: bool
    failures: list[str]
    inconclusive: list[str] = []

    @property
    def flagged_because(self) -> str | None:
        """Why a model the gate let through is flagged (None when it passed)."""
        if self.passed:
            return None
        if any(f not in self.inconclusive for f in self.failures):
            return "checks failed, gate mode warn"
        return "inconclusive checks, on_inconclusive: warn"

    def summary(self) -> str:
        """One line per failing or inconclusive check, or that all passed."""
        if self.passed:
            return "all checks passed"
        flagged = [f"inconclusive: {i}" for i in self.inconclusive if i not in self.failures]
        return "; ".join(self.failures + flagged)


def apply_gate(
    findings: list[Finding], mode: GateMode, on_inconclusive: OnInconclusive = "warn"
) -> GateResult:
    """Fail-closed refuses a model with any failing check; warn lets it through, flagged.

    An inconclusive check (its interval straddles the threshold) fails the gate, flags the
    model while letting it through, or counts as passed, as ``on_inconclusive`` says. A gate
    with no findings fails closed too: a policy that checked nothing proves nothing.
    """
    failures = [f"{f.check}: {f.message}" for f in findings if f.verdict == "fail"]
    undecided = [f"{f.check}: {f.message}" for f in findings if f.verdict == "inconclusive"]
    if on_inconclusive == "fail":
        failures += undecided
    if not findings:
        failures.append("no checks ran: the policy must list at least one check")
    passed = not failures and (not undecided or on_inconclusive == "pass")
    return GateResult(
        mode=mode,
        on_inconclusive=on_inconclusive,
        passed=passed,
        allow_registration=not failures or mode == "warn",
        failures=failures,
        inconclusive=undecided,
    )

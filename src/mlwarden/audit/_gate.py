"""The gate: the policy applied to audit findings decides whether a model may ship."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from mlwarden.audit._checks import Finding

GateMode = Literal["fail-closed", "warn"]


class GateResult(BaseModel):
    """The gate's decision: ``passed`` if every check passed, ``allow_registration`` if it ships."""

    mode: GateMode
    passed: bool
    allow_registration: bool
    failures: list[str]

    def summary(self) -> str:
        """One line per failing check, or that all passed."""
        if self.passed:
            return "all checks passed"
        return "; ".join(self.failures)


def apply_gate(findings: list[Finding], mode: GateMode) -> GateResult:
    """Fail-closed refuses a model with any failing check; warn lets it through, flagged.

    A gate with no findings fails closed too: a policy that checked nothing proves nothing.
    """
    failures = [f"{f.check}: {f.message}" for f in findings if not f.passed]
    if not findings:
        failures.append("no checks ran: the policy must list at least one check")
    passed = not failures
    return GateResult(
        mode=mode, passed=passed, allow_registration=passed or mode == "warn", failures=failures
    )

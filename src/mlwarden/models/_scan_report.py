"""What a model-file scan finds, the verdict it reaches, and the policy it applies.

Every scan result is a pydantic model, so the CLI (table, JSON, SARIF), ``mlwarden import`` and
``audit --model FILE`` read the same structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlwarden.errors import ParameterError, SpecError

__all__ = ["Finding", "ScanPolicy", "ScanReport", "Severity", "load_scan_policy"]

Severity = Literal["critical", "high", "medium", "low", "info"]
Verdict = Literal["safe", "unsafe"]

# A finding at or above this severity makes the file unsafe.
_UNSAFE_SEVERITIES: frozenset[str] = frozenset({"critical", "high", "medium"})
_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


class Finding(BaseModel):
    """One thing the scanner saw: where it is, what it is, and how bad it is.

    ``rule`` is a stable identifier (``dangerous-global``, ``global-not-allowed``,
    ``malformed``, ...) that SARIF viewers group results by.
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    severity: Severity
    message: str
    member: str | None = None
    offset: int | None = None
    opcode: str | None = None
    global_name: str | None = Field(default=None, alias="global")

    @property
    def unsafe(self) -> bool:
        """Whether this finding alone makes the file unsafe."""
        return self.severity in _UNSAFE_SEVERITIES


class ScanReport(BaseModel):
    """The scan of one file: its detected format(s), findings and verdict.

    ``formats`` lists what was found by content, outermost first, with the archive member each
    was found in (``zip``, ``torch-zip:archive/data.pkl -> pickle``...); ``verdict`` is
    ``unsafe`` as soon as one finding is critical, high or medium (fail-closed).
    """

    file: str
    format: str
    formats: list[str] = Field(default_factory=list)
    size: int
    findings: list[Finding] = Field(default_factory=list)
    globals: list[str] = Field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """``safe`` only when no finding is medium or worse."""
        return "unsafe" if any(f.unsafe for f in self.findings) else "safe"

    @property
    def safe(self) -> bool:
        """Shorthand for ``verdict == "safe"``."""
        return self.verdict == "safe"

    def worst(self) -> Finding | None:
        """The most severe finding, or None."""
        if not self.findings:
            return None
        return min(self.findings, key=lambda f: _ORDER[f.severity])

    def summary(self) -> dict[str, object]:
        """The report as JSON-ready data, with the verdict included."""
        data = self.model_dump(by_alias=True, mode="json")
        data["verdict"] = self.verdict
        return data


class ScanPolicy(BaseModel):
    """What the scanner accepts beyond its defaults, and the limits it works within.

    ``allow_globals`` adds ``module.name`` entries to the pickle allowlist (never a
    known-dangerous callable: those stay refused). The limits bound archives: nesting depth,
    members per archive, bytes unpacked per file, and the compression ratio of one member.
    """

    model_config = ConfigDict(extra="forbid")

    allow_globals: list[str] = Field(default_factory=list)
    max_depth: int = Field(default=6, ge=1, le=64)  # archive levels, the outermost counted
    max_members: int = Field(default=10_000, ge=1)
    max_unpacked_bytes: int = Field(default=16 * 1024**3, ge=1)
    max_ratio: float = Field(default=200.0, gt=1.0)
    allow_custom_onnx_domains: list[str] = Field(default_factory=list)

    @field_validator("allow_globals")
    @classmethod
    def _dotted(cls, names: list[str]) -> list[str]:
        for name in names:
            module, _, attr = name.rpartition(".")
            if not module or not attr or any(not p.isidentifier() for p in name.split(".")):
                raise ParameterError(
                    f"{name!r} is not a global; expected 'module.name', e.g. "
                    "'mypackage.models.MyEstimator'"
                )
        return names


def load_scan_policy(path: Path) -> ScanPolicy:
    """Read and validate a scan policy YAML file; any mistake is a one-line ``SpecError``."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"scan policy {path}: cannot read it: {exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"scan policy {path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            f"scan policy {path}: expected a mapping of settings "
            f"(allow_globals, max_depth, ...), got {type(raw).__name__}"
        )
    try:
        return ScanPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
            + (f" (given {e['input']!r})" if e["type"] != "extra_forbidden" else "")
            for e in exc.errors()
        )
        raise SpecError(f"scan policy {path}: {problems}") from exc

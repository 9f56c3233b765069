"""The verdict a per-client detector returns after each query: shared by the extraction
detectors and the slowdown monitor, so the server reads one shape whatever raised the alarm."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Verdict"]


class Verdict(BaseModel):
    """What a detector concluded after one query of one client.

    ``statistic`` is the detector's test statistic (Shapiro-Wilk W, or the count of flagged
    queries in the window) compared with ``threshold`` (None while too few queries were
    seen); ``n`` the number of observations the test used. A suite's verdict keeps each
    detector's verdict in ``parts``.
    """

    model_config = ConfigDict(frozen=True)

    detector: str
    client: str
    alarm: bool
    statistic: float | None
    threshold: float | None
    n: int
    reason: str
    parts: tuple[Verdict, ...] = ()

    @classmethod
    def any_of(
        cls, detector: str, client: str, parts: tuple[Verdict, ...], quiet: str = "no alarm"
    ) -> Verdict:
        """One verdict from several: an alarm when any part alarms (``statistic``: how many)."""
        alarming = [p for p in parts if p.alarm]
        return cls(
            detector=detector,
            client=client,
            alarm=bool(alarming),
            statistic=float(len(alarming)),
            threshold=1.0,
            n=max(p.n for p in parts),
            reason="; ".join(f"{p.detector}: {p.reason}" for p in alarming) or quiet,
            parts=parts,
        )

"""Progress display for pipeline runs: a spinner on the running step, a line per finished one."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status

_MARK = {
    "executed": "[green]✓[/]",
    "cached": "[cyan]↺[/]",
    "failed": "[red]✗[/]",
    "rejected": "[red]✗[/]",
    "skipped": "[dim]-[/]",
}


class RichProgress:
    """Implements the executor's ``Progress`` protocol on a rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    def step_started(self, step: str) -> None:
        self._status = self.console.status(f"[bold]{step}[/] ...")
        self._status.start()

    def step_message(self, step: str, message: str) -> None:
        if self._status is not None:
            self._status.update(f"[bold]{step}[/] {message}")
        self.console.print(f"    [dim]{step}: {message}[/]", highlight=False)

    def step_finished(self, step: str, status: str, seconds: float) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        label = "cache hit" if status == "cached" else status
        self.console.print(f"  {_MARK.get(status, '?')} {step:<12} {label:<9} {seconds:7.2f} s")

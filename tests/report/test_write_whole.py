"""Report files appear whole: written aside, renamed into place, nothing else disturbed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlwarden.report import write_report
from tests.report.test_render import _report

REPORT_FILES = {"report.json", "report.html", "report.sarif", "report.junit.xml"}


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_new_folder_holds_the_four_files_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    write_report(_report(), tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert {p.name for p in (tmp_path / "run").iterdir()} == REPORT_FILES


def test_a_reused_folder_keeps_its_other_files_and_gets_new_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.json").write_text("old")
    write_report(_report(), out)
    assert (out / "notes.txt").read_text() == "mine"
    assert {p.name for p in out.iterdir()} == REPORT_FILES | {"notes.txt"}
    assert (out / "report.json").read_text() != "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_killed_writers_temporary_folder_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    dead = tmp_path / f".old.partial-{_dead_pid()}-x1"
    live = tmp_path / f".other.partial-{os.getpid()}-x2"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "report.json").write_text("{}")
    write_report(_report(), tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "run"])


def test_a_relative_folder_is_returned_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    json_path, html_path = write_report(_report(), Path("reports") / "run")
    assert json_path == Path("reports/run/report.json")
    assert html_path.read_text().startswith("<!")

"""Opening one new database from several processes at once creates its tables once, no error."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.exc import OperationalError

from mlwarden._sql import create_tables, open_engine, sqlalchemy_url


def _open_log(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    from mlwarden.serve import DecisionLog

    barrier.wait()
    DecisionLog(path).close()


def test_replicas_opening_a_new_decision_log_together_all_start(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    procs = [
        ctx.Process(target=_open_log, args=(str(tmp_path / "serve.db"), barrier)) for _ in range(6)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * 6


def test_a_table_created_meanwhile_by_another_process_is_not_an_error(tmp_path, monkeypatch):
    metadata = MetaData()
    Table("t", metadata, Column("id", Integer, primary_key=True))
    url, sqlite = sqlalchemy_url(tmp_path / "db.sqlite")
    engine = open_engine(url, sqlite)
    real = MetaData.create_all
    calls = []

    def racing(self, bind, **kwargs):  # the other process wins between check and CREATE
        calls.append(1)
        real(self, bind, **kwargs)
        if len(calls) == 1:
            raise OperationalError("CREATE TABLE t", {}, Exception("table t already exists"))

    monkeypatch.setattr(MetaData, "create_all", racing)
    create_tables(metadata, engine)
    assert len(calls) == 2


def test_other_database_errors_still_raise(tmp_path, monkeypatch):
    metadata = MetaData()
    engine = open_engine(*sqlalchemy_url(tmp_path / "db.sqlite"))

    def broken(self, bind, **kwargs):
        raise OperationalError("CREATE TABLE t", {}, Exception("disk I/O error"))

    monkeypatch.setattr(MetaData, "create_all", broken)
    with pytest.raises(OperationalError):
        create_tables(metadata, engine)

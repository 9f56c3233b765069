"""SQL plumbing shared by the lineage store, the API keys and the decision log."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import DDL, Connection, Engine, MetaData, Table, create_engine, event
from sqlalchemy.exc import OperationalError, ProgrammingError


def sqlalchemy_url(url_or_path: str | Path) -> tuple[str, bool]:
    """A SQLAlchemy URL for ``url_or_path`` and whether it is SQLite; a plain path is a file."""
    text = str(url_or_path)
    if "://" in text:
        return text, text.startswith("sqlite")
    path = Path(text).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}", True


def open_engine(
    url: str, sqlite: bool, begin: Literal["driver", "manual", "immediate"] = "driver"
) -> Engine:
    """An engine; SQLite files get WAL, a 60 s busy timeout and durable commits.

    ``begin``: ``driver`` leaves transactions to the sqlite3 module; ``manual`` turns its
    implicit transactions off (the caller issues ``BEGIN IMMEDIATE`` itself); ``immediate``
    does that and begins every SQLAlchemy transaction with ``BEGIN IMMEDIATE``, which takes the
    write lock up front so two writers never chain records off the same head.
    """
    if not sqlite:
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if begin != "driver":
            dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    if begin == "immediate":

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """Create the tables that do not exist yet, also when another process does it at once.

    ``create_all`` checks, then creates: two processes opening one new database (two server
    replicas starting together) can both find a table missing, and the slower one's CREATE
    fails with "already exists". Then that table is there: check again, create what is left.
    """
    for _ in range(len(metadata.tables)):  # each lost race leaves one table more in place
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError) as exc:
            if "already exists" not in str(exc):
                raise
    metadata.create_all(engine)


def forbid_changes(table: Table, message: str, pg_function: str) -> None:
    """Make ``table`` append-only in the database itself, whoever connects.

    SQLite: row triggers that abort UPDATE and DELETE. PostgreSQL: a statement trigger that
    raises on UPDATE, DELETE and TRUNCATE (``pg_function`` names its trigger function).
    """
    for op in ("UPDATE", "DELETE"):
        event.listen(
            table,
            "after_create",
            DDL(  # type: ignore[no-untyped-call]
                f"CREATE TRIGGER {table.name}_no_{op.lower()} BEFORE {op} ON {table.name} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            ).execute_if(dialect="sqlite"),
        )
    event.listen(
        table,
        "after_create",
        DDL(  # type: ignore[no-untyped-call]
            f"CREATE OR REPLACE FUNCTION {pg_function}() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql; "
            f"CREATE TRIGGER {table.name}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            f"ON {table.name} FOR EACH STATEMENT EXECUTE FUNCTION {pg_function}()"
        ).execute_if(dialect="postgresql"),
    )

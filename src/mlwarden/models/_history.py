"""Rollback and replay checks: each name's versions and each stage's promotions form a chain.

A version number is unique and strictly increasing per name, and a format 2 manifest names the
hash of the manifest before it; a format 2 promotion names the promotion before it to the same
stage. These checks need no key: they find copied, reordered or downgraded records that carry
valid signatures. Signatures themselves are checked when a version or stage is resolved.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.exc import SQLAlchemyError

from mlwarden.lineage import LineageStore, Problem, Record
from mlwarden.models._manifest import (
    MANIFEST_GENESIS,
    PROMOTION_FORMAT,
    ModelVersion,
    promotion_sha256,
    version_of,
)


def check_versions(records: list[Record]) -> tuple[list[ModelVersion], list[Problem]]:
    """Split one name's ``model_version`` records (chain order) into valid versions and problems.

    A record that repeats a version number, goes backwards, names the wrong predecessor, or is a
    legacy manifest after a linked one is reported as tampering and left out of the valid ones.
    """
    valid: list[ModelVersion] = []
    problems: list[Problem] = []
    first_seq: dict[int, int] = {}
    for record in records:
        try:
            version = version_of(record)
        except ValueError as exc:
            problems.append(_problem(record, f"is unreadable: {_first_line(exc)}"))
            continue
        manifest, prev = version.manifest, (valid[-1] if valid else None)
        if manifest.name != record.subject:
            why = f"holds a manifest of {manifest.name!r}, filed under {record.subject!r}"
        elif manifest.version in first_seq:
            why = (
                f"repeats {version.ref} first registered at record "
                f"{first_seq[manifest.version]}: a replayed version"
            )
        elif prev is not None and manifest.version <= prev.manifest.version:
            why = f"registers {version.ref} after {prev.ref}: version out of order"
        elif manifest.legacy and prev is not None and not prev.manifest.legacy:
            why = f"is a legacy (format 1) manifest of {version.ref} after a linked one: downgraded"
        elif not manifest.legacy and manifest.previous_manifest_sha256 != _hash_of(prev):
            before = prev.ref if prev is not None else "none (genesis expected)"
            why = (
                f"({version.ref}) names previous manifest "
                f"{str(manifest.previous_manifest_sha256)[:12]}, but the version before it is "
                f"{before}: a broken previous-manifest link"
            )
        else:
            first_seq[manifest.version] = record.seq
            valid.append(version)
            continue
        problems.append(_problem(record, why))
    return valid, problems


def check_promotions(records: list[Record]) -> list[Problem]:
    """Problems among one stage's ``model_stage`` records (chain order): replays, broken links."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    previous: str = MANIFEST_GENESIS
    linked = False
    for record in records:
        payload = record.payload
        digest = promotion_sha256(payload)
        where = f"promotion of {record.subject}@{record.key} (record {record.seq})"
        if payload.get("name") != record.subject or payload.get("stage") != record.key:
            why = f"claims {payload.get('name')}@{payload.get('stage')}: filed under another name"
        elif payload.get("format") == PROMOTION_FORMAT:
            if digest in seen:
                why = f"repeats the promotion at record {seen[digest]}: a replayed promotion"
            elif payload.get("previous") != previous:
                why = "does not name the promotion before it: replayed or reordered"
            else:
                why = ""
        elif "format" in payload:
            why = f"has unknown promotion format {payload.get('format')!r}"
        elif linked:
            why = "is a legacy (unlinked) promotion after a linked one: replayed or downgraded"
        else:
            why = ""  # legacy: cannot be told from a legitimate re-promotion; flagged on show
        if why:
            problems.append(Problem(seq=record.seq, message=f"{where} {why}"))
            continue
        seen.setdefault(digest, record.seq)
        previous = digest
        linked = linked or payload.get("format") == PROMOTION_FORMAT
    return problems


def model_history_problems(store: LineageStore) -> list[Problem]:
    """Every rollback or replay ``lineage verify`` should report, over all names and stages."""
    by_name: dict[str, list[Record]] = defaultdict(list)
    by_stage: dict[tuple[str, str | None], list[Record]] = defaultdict(list)
    try:
        versions, stages = store.records("model_version"), store.records("model_stage")
    except (ValueError, SQLAlchemyError) as exc:  # the chain walk names the unreadable row
        return [Problem(message=f"model records unreadable: {_first_line(exc)}")]
    for record in versions:
        by_name[record.subject].append(record)
    for record in stages:
        by_stage[(record.subject, record.key)].append(record)
    problems: list[Problem] = []
    for records in by_name.values():
        problems.extend(check_versions(records)[1])
    for records in by_stage.values():
        problems.extend(check_promotions(records))
    return sorted(problems, key=lambda p: p.seq or 0)


def _hash_of(version: ModelVersion | None) -> str:
    return version.manifest.sha256() if version is not None else MANIFEST_GENESIS


def _problem(record: Record, why: str) -> Problem:
    return Problem(seq=record.seq, message=f"model_version record {record.seq} {why}")


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]

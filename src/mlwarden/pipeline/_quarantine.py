"""Which input rows a model never trained on, and why: read back from its quarantine artifacts."""

from __future__ import annotations

import csv
import io
from collections import Counter

from pydantic import BaseModel

from mlwarden.data import REASONS_COLUMN, ROW_COLUMN
from mlwarden.lineage import LineageStore, producer

# Manifest roles of the artifacts that hold rows kept out of training.
KEPT_OUT_ROLES = ("rejected", "label_dropped")


class KeptOut(BaseModel):
    """Rows one step kept out of a model's training data, by input row number, with reasons."""

    step: str
    artifact: str
    artifact_name: str
    rows: list[int]
    reasons: dict[str, int]


def _reason_kinds(text: str) -> list[str]:
    """``age: above max 150; income: missing value`` -> the rule of each part."""
    kinds = []
    for part in text.split("; "):
        column, _, rule = part.partition(": ")
        if column.startswith("likely label error"):
            kinds.append("likely label error")
        else:
            kinds.append(f"{column}: {rule.split(' (self-confidence')[0]}" if rule else column)
    return kinds


def rows_kept_out(store: LineageStore, artifacts: dict[str, str]) -> list[KeptOut]:
    """The quarantine and label-error artifacts among a model's inputs, summarised."""
    found = []
    for role in KEPT_OUT_ROLES:
        sha = artifacts.get(role)
        if sha is None:
            continue
        # The csv module, not pandas: this runs on every report, cached runs included.
        reader = csv.DictReader(io.StringIO(store.read_artifact(sha).decode("utf-8")))
        counts: Counter[str] = Counter()
        rows: list[int] = []
        for line in reader:
            if line.get(REASONS_COLUMN):
                counts.update(_reason_kinds(line[REASONS_COLUMN]))
            if line.get(ROW_COLUMN):
                rows.append(int(line[ROW_COLUMN]))
        made_by = producer(store, sha)
        record = store.artifact_record(sha)
        found.append(
            KeptOut(
                step=made_by.step if made_by else "?",
                artifact=sha,
                artifact_name=record.payload["name"] if record else role,
                rows=rows,
                reasons=dict(counts.most_common()),
            )
        )
    return found

"""The real datasets shipped with mlwarden, loaded offline with a declared schema each."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from mlwarden.data._schema import ColumnSchema, TableSchema
from mlwarden.errors import DatasetNotFoundError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Dataset:
    """A bundled table with its label, positive class, declared schema and provenance."""

    name: str
    frame: pd.DataFrame
    label: str
    positive: str | int | None
    schema: TableSchema
    description: str
    citation: str
    license: str

    @property
    def X(self) -> pd.DataFrame:
        """The feature columns."""
        return self.frame.drop(columns=[self.label])

    @property
    def y(self) -> pd.Series:
        """The label column."""
        return self.frame[self.label]


def _bundled(name: str) -> Any:
    return resources.files("mlwarden.data").joinpath("_bundled", name)


def _cat(values: list[Any], nullable: bool = False) -> ColumnSchema:
    return ColumnSchema(type="category", categories=values, nullable=nullable)


def _int(lo: float | None, hi: float | None, nullable: bool = False) -> ColumnSchema:
    return ColumnSchema(type="integer", min=lo, max=hi, nullable=nullable)


def _phishing() -> Dataset:
    import pandas as pd

    with _bundled("phishing_websites.csv.gz").open("rb") as fh:
        frame = pd.read_csv(fh, compression="gzip").drop(columns=["index"])
    frame["Result"] = frame["Result"].map({-1: "phishing", 1: "legitimate"})
    features = {
        c: ColumnSchema(type="integer", min=-1, max=1, categories=[-1, 0, 1])
        for c in frame.columns
        if c != "Result"
    }
    schema = TableSchema(
        columns={**features, "Result": _cat(["legitimate", "phishing"])}, label="Result"
    )
    return Dataset(
        name="phishing",
        frame=frame,
        label="Result",
        positive="phishing",
        schema=schema,
        description="UCI Phishing Websites: 23 URL, page and domain features coded -1 (phishy), "
        "0 (suspicious) or 1 (legitimate).",
        citation="Mohammad, Thabtah, McCluskey, ICITST 2012; UCI doi:10.24432/C51W2X",
        license="CC BY 4.0",
    )


_ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def _adult_categories() -> dict[str, list[str]]:
    """Category lists as documented in adult.names (the ``name: a, b, c.`` lines)."""
    with _bundled("adult.names.gz").open("rb") as fh:
        text = gzip.decompress(fh.read()).decode("latin-1")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        column = head.strip().replace("-", "_")
        if sep and column in _ADULT_COLUMNS and "continuous" not in rest:
            found[column] = [v.strip() for v in rest.strip().rstrip(".").split(",")]
    return found


def _adult() -> Dataset:
    import pandas as pd

    parts = []
    for name, skip in (("adult.data.gz", 0), ("adult.test.gz", 1)):
        with _bundled(name).open("rb") as fh:
            parts.append(
                pd.read_csv(
                    fh,
                    compression="gzip",
                    header=None,
                    names=_ADULT_COLUMNS,
                    skiprows=skip,
                    skipinitialspace=True,
                    na_values="?",
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    frame["income"] = frame["income"].str.rstrip(".")
    cats = _adult_categories()
    columns: dict[str, ColumnSchema] = {}
    ranges = {
        "age": (0, 150), "fnlwgt": (0, None), "education_num": (1, 16),
        "capital_gain": (0, None), "capital_loss": (0, None), "hours_per_week": (0, 24 * 7),
    }  # fmt: skip
    for column in _ADULT_COLUMNS[:-1]:
        nullable = bool(frame[column].isna().any())
        if column in ranges:
            columns[column] = _int(*ranges[column], nullable=nullable)
        else:
            columns[column] = _cat(cats[column], nullable=nullable)
    columns["income"] = _cat(["<=50K", ">50K"])
    return Dataset(
        name="adult",
        frame=frame,
        label="income",
        positive=">50K",
        schema=TableSchema(columns=columns, label="income"),
        description="UCI Adult census income (train and test files together): does a person "
        "earn more than $50K a year? Carries protected attributes (sex, race).",
        citation="Kohavi, KDD 1996; UCI doi:10.24432/C5XW20",
        license="CC BY 4.0",
    )


_GERMAN_COLUMNS: list[tuple[str, str | None]] = [
    ("checking_status", "status"), ("duration_months", None),
    ("credit_history", "credit_history"), ("purpose", "purpose"), ("credit_amount", None),
    ("savings", "savings"), ("employment_since", "present_employment"),
    ("installment_rate", None), ("personal_status_sex", "status_sex"),
    ("other_debtors", "other_debtors"), ("residence_since", None), ("property", "property"),
    ("age", None), ("other_installment_plans", "installment_plans"), ("housing", "housing"),
    ("existing_credits", None), ("job", "job"), ("dependents", None),
    ("telephone", "telephone"), ("foreign_worker", "foreign_worker"), ("credit", "credit"),
]  # fmt: skip


def _german() -> Dataset:
    import pandas as pd

    maps = json.loads(_bundled("german_values_maps.json").read_text())
    with _bundled("german.data.gz").open("rb") as fh:
        frame = pd.read_csv(
            fh, compression="gzip", sep=" ", header=None, names=[c for c, _ in _GERMAN_COLUMNS]
        )
    columns: dict[str, ColumnSchema] = {}
    for column, map_name in _GERMAN_COLUMNS:
        if map_name is None:
            columns[column] = _int(0, None)
            continue
        words = {code: str(word).strip() for code, word in maps[map_name].items()}
        frame[column] = frame[column].astype(str).map(words)
        columns[column] = _cat(sorted(set(words.values())))
    columns["age"] = _int(18, 150)
    return Dataset(
        name="german",
        frame=frame,
        label="credit",
        positive="bad",
        schema=TableSchema(columns=columns, label="credit"),
        description="UCI Statlog German Credit: is an applicant a good or bad credit risk?",
        citation="Hofmann 1994; UCI doi:10.24432/C5NC77",
        license="CC BY 4.0",
    )


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "digit"})
    columns = {c: _int(0, 16) for c in frame.columns if c != "digit"}
    columns["digit"] = ColumnSchema(type="integer", min=0, max=9, categories=list(range(10)))
    return Dataset(
        name="digits",
        frame=frame,
        label="digit",
        positive=None,
        schema=TableSchema(columns=columns, label="digit"),
        description="Optical recognition of handwritten digits: 8x8 images, 16 grey levels, "
        "ten classes (scikit-learn's bundled copy).",
        citation="Alpaydin, Kaynak 1998; UCI doi:10.24432/C50P49",
        license="CC BY 4.0",
    )


_LOADERS: dict[str, Callable[[], Dataset]] = {
    "phishing": _phishing,
    "adult": _adult,
    "german": _german,
    "digits": _digits,
}


def list_datasets() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(_LOADERS)


def load(name: str) -> Dataset:
    """Load a bundled dataset by name: its table, label, positive class and schema."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DatasetNotFoundError(
            f"no bundled dataset named {name!r}; choose one of {', '.join(list_datasets())}"
        ) from None
    return loader()


#: Bundled text corpora for language models: name -> gzip file under ``_bundled``.
TEXT_CORPORA = {"pydoc": "pydoc_corpus.txt.gz"}


def list_corpora() -> list[str]:
    """Names of the bundled text corpora."""
    return sorted(TEXT_CORPORA)


def load_text(name: str) -> str:
    """A bundled text corpus (``pydoc``: docstrings of Python's standard library; NOTICE.md)."""
    if name not in TEXT_CORPORA:
        known = ", ".join(list_corpora())
        raise DatasetNotFoundError(f"no bundled corpus {name!r}; bundled: {known}")
    with _bundled(TEXT_CORPORA[name]).open("rb") as fh:
        return gzip.decompress(fh.read()).decode("utf-8")

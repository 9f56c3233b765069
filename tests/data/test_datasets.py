"""The bundled datasets load offline with their documented shapes, labels and schemas."""

from __future__ import annotations

import pytest

from mlwarden import datasets
from mlwarden.data import validate_table
from mlwarden.errors import DataError, DatasetNotFoundError


@pytest.mark.parametrize(
    ("name", "rows", "features", "label", "counts"),
    [
        ("phishing", 11_055, 23, "Result", {"legitimate": 6_157, "phishing": 4_898}),
        ("adult", 48_842, 14, "income", {"<=50K": 37_155, ">50K": 11_687}),
        ("german", 1_000, 20, "credit", {"good": 700, "bad": 300}),
        ("digits", 1_797, 64, "digit", None),
    ],
)
def test_each_dataset_has_its_documented_shape_and_labels(
    name: str, rows: int, features: int, label: str, counts: dict[str, int] | None
) -> None:
    d = datasets.load(name)
    assert d.frame.shape == (rows, features + 1)
    assert d.X.shape == (rows, features)
    assert d.label == label == d.schema.label
    assert list(d.schema.columns) == list(d.frame.columns)
    if counts is not None:
        assert d.y.value_counts().to_dict() == counts
    else:
        assert sorted(d.y.unique()) == list(range(10))


@pytest.mark.parametrize("name", datasets.list_datasets())
def test_each_dataset_satisfies_its_own_schema(name: str) -> None:
    d = datasets.load(name)
    accepted, _rejected, report = validate_table(d.frame, d.schema)
    assert report.rows_rejected == 0, report.issues
    assert len(accepted) == len(d.frame)


def test_adult_missing_values_are_missing_not_a_category() -> None:
    d = datasets.load("adult")
    missing = d.frame.isna().sum()
    assert missing["workclass"] == 2_799
    assert missing["occupation"] == 2_809
    assert missing["native_country"] == 857
    for column in ("workclass", "occupation", "native_country"):
        assert "?" not in set(d.frame[column].dropna())
        assert "?" not in d.schema.columns[column].categories
        assert d.schema.columns[column].nullable


def test_adult_test_labels_lose_their_trailing_dot() -> None:
    assert set(datasets.load("adult").y) == {"<=50K", ">50K"}


def test_german_codes_become_words() -> None:
    d = datasets.load("german")
    assert d.frame.loc[0, "checking_status"] == "... < 0 DM"
    assert d.positive == "bad"


def test_schemas_declare_documented_ranges() -> None:
    adult = datasets.load("adult").schema.columns
    assert (adult["hours_per_week"].min, adult["hours_per_week"].max) == (0, 168)
    phishing = datasets.load("phishing").schema.columns
    assert phishing["SSLfinal_State"].categories == [-1, 0, 1]


def test_an_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(DatasetNotFoundError, match="phishing") as info:
        datasets.load("kdd99")
    assert isinstance(info.value, DataError) and isinstance(info.value, LookupError)

"""Tables: bundled datasets, schemas, validation and quarantine, drift, bias and label errors."""

from mlwarden.data._bias import (
    GroupMetrics,
    GroupMetricsReport,
    GroupStats,
    LabelBalance,
    group_metrics,
    group_stats,
    label_balance,
)
from mlwarden.data._datasets import Dataset, list_datasets, load
from mlwarden.data._drift import (
    ColumnDrift,
    ColumnThresholds,
    DriftReport,
    DriftThresholds,
    chi2_test,
    drift_report,
    jensen_shannon_distance,
    ks_test,
    population_stability_index,
)
from mlwarden.data._rules import Rule
from mlwarden.data._schema import ColumnSchema, TableSchema, infer_column, infer_schema
from mlwarden.data._validate import ColumnIssue, MissingPolicy, ValidationReport, validate_table

__all__ = [
    "ColumnDrift",
    "ColumnIssue",
    "ColumnSchema",
    "ColumnThresholds",
    "Dataset",
    "DriftReport",
    "DriftThresholds",
    "GroupMetrics",
    "GroupMetricsReport",
    "GroupStats",
    "LabelBalance",
    "MissingPolicy",
    "Rule",
    "TableSchema",
    "ValidationReport",
    "chi2_test",
    "drift_report",
    "group_metrics",
    "group_stats",
    "infer_column",
    "infer_schema",
    "jensen_shannon_distance",
    "ks_test",
    "label_balance",
    "list_datasets",
    "load",
    "population_stability_index",
    "validate_table",
]

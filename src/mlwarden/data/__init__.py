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
from mlwarden.data._csv import csv_batches, detect_separator, read_csv_table
from mlwarden.data._datasets import Dataset, list_corpora, list_datasets, load, load_text
from mlwarden.data._drift import (
    ColumnDrift,
    ColumnThresholds,
    DriftReport,
    DriftThresholds,
    chi2_test,
    drift_of_columns,
    drift_report,
    jensen_shannon_distance,
    ks_test,
    population_stability_index,
)
from mlwarden.data._drift_reference import DriftReference
from mlwarden.data._duplicates import (
    Duplicates,
    Overlap,
    duplicates_of,
    find_duplicates,
    row_hashes,
    seen_in_training,
)
from mlwarden.data._label_errors import (
    LabelIssues,
    find_label_issues,
    flip_labels,
    out_of_fold_probabilities,
    precision_recall,
)
from mlwarden.data._labels import LabelClasses, decide_classes, decide_counted_classes, label_key
from mlwarden.data._missing import ColumnImputation, Imputation, fit_imputation
from mlwarden.data._parquet import (
    BATCH_ROWS,
    ParquetSink,
    parquet_batches,
    parquet_columns,
    table_columns,
    table_rows,
    write_rows,
)
from mlwarden.data._rules import Rule
from mlwarden.data._schema import ColumnSchema, TableSchema, widen
from mlwarden.data._schema_infer import SchemaInference, infer_column, infer_schema
from mlwarden.data._validate import (
    REASONS_COLUMN,
    ROW_COLUMN,
    ColumnIssue,
    MissingPolicy,
    ValidationReport,
    coerce_numeric,
    typed_classes,
    validate_table,
)
from mlwarden.data._validate_stream import DUPLICATE_REASON, TableCheck, validate_batches

__all__ = [
    "ColumnDrift",
    "ColumnImputation",
    "ColumnIssue",
    "ColumnSchema",
    "ColumnThresholds",
    "Dataset",
    "DriftReference",
    "DriftReport",
    "DriftThresholds",
    "Duplicates",
    "GroupMetrics",
    "GroupMetricsReport",
    "GroupStats",
    "Imputation",
    "LabelBalance",
    "LabelClasses",
    "LabelIssues",
    "MissingPolicy",
    "Overlap",
    "Rule",
    "SchemaInference",
    "TableSchema",
    "ValidationReport",
    "chi2_test",
    "coerce_numeric",
    "decide_classes",
    "detect_separator",
    "drift_report",
    "find_duplicates",
    "find_label_issues",
    "fit_imputation",
    "flip_labels",
    "group_metrics",
    "group_stats",
    "infer_column",
    "infer_schema",
    "jensen_shannon_distance",
    "ks_test",
    "label_balance",
    "label_key",
    "list_datasets",
    "load",
    "out_of_fold_probabilities",
    "population_stability_index",
    "precision_recall",
    "read_csv_table",
    "seen_in_training",
    "typed_classes",
    "validate_table",
    "widen",
]

__all__ += ["REASONS_COLUMN", "ROW_COLUMN", "csv_batches", "list_corpora", "load_text"]
__all__ += [
    "BATCH_ROWS",
    "DUPLICATE_REASON",
    "ParquetSink",
    "TableCheck",
    "decide_counted_classes",
    "drift_of_columns",
    "duplicates_of",
    "parquet_batches",
    "parquet_columns",
    "row_hashes",
    "table_columns",
    "table_rows",
    "validate_batches",
    "write_rows",
]

"""Tables: the bundled datasets, schemas, and validation against a schema."""

from mlwarden.data._datasets import Dataset, list_datasets, load
from mlwarden.data._schema import ColumnSchema, TableSchema, infer_column, infer_schema
from mlwarden.data._validate import ColumnIssue, ValidationReport, validate_table

__all__ = [
    "ColumnIssue",
    "ColumnSchema",
    "Dataset",
    "TableSchema",
    "ValidationReport",
    "infer_column",
    "infer_schema",
    "list_datasets",
    "load",
    "validate_table",
]

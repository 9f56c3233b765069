"""The bundled real datasets: ``mlwarden.datasets.load("phishing")``, and text corpora."""

from mlwarden.data import Dataset, list_corpora, list_datasets, load, load_text

__all__ = ["Dataset", "list_corpora", "list_datasets", "load", "load_text"]

"""The bundled real datasets: ``mlwarden.datasets.load("phishing")``."""

from mlwarden.data._datasets import Dataset, list_datasets, load

__all__ = ["Dataset", "list_datasets", "load"]

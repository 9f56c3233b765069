"""The feature space's former module path, kept for the server modules that import it; it
lives in :mod:`mlwarden.serve._extraction`."""

from mlwarden.serve._extraction import FeatureSpace, Scaling

__all__ = ["FeatureSpace", "Scaling"]

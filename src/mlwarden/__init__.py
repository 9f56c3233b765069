"""mlwarden: red-team, gate and guard machine-learning models."""

__version__ = "0.1.0"

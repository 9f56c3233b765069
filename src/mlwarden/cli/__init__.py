"""The ``mlwarden`` command line."""

from mlwarden.cli._app import app, entrypoint, main

__all__ = ["app", "entrypoint", "main"]

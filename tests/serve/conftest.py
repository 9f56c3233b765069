"""The server fixtures of ``test_app`` (a store with phish@1 and phish@2, a ``serve`` factory and
held-out phishing rows), shared with the other server test modules."""

from tests.serve.test_app import phishing_rows, serve, store_root

__all__ = ["phishing_rows", "serve", "store_root"]

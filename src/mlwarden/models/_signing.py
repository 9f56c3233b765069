"""Compatibility: signing moved to :mod:`mlwarden.lineage` (keys outside the store, trust policy).

``mlwarden.models.Signer`` and ``mlwarden.models.TrustPolicy`` stay importable from here.
"""

from mlwarden.lineage import Signer, TrustPolicy

__all__ = ["Signer", "TrustPolicy"]

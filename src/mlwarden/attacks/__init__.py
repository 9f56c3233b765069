"""Attacks: pure functions of (model adapter, data, budget) that return pydantic results."""

from mlwarden.attacks._hopskipjump import HopSkipJumpResult, hop_skip_jump
from mlwarden.attacks._result import AttackResult

__all__ = ["AttackResult", "HopSkipJumpResult", "hop_skip_jump"]

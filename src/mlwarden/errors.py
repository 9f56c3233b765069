"""One exception hierarchy for everything mlwarden raises on purpose.

Every leaf also subclasses the builtin it resembles, so callers can catch either::

    MlwardenError
    ├── SpecError (ValueError)                 a pipeline spec is malformed
    ├── ParameterError (ValueError)            an argument lies outside what the function accepts
    ├── UnknownNameError (KeyError)            a name (group, mode...) is not among the known ones
    ├── FormatError (ValueError)               bytes or a record this version cannot read
    ├── DataError (ValueError)                 a table or dataset is unusable
    │   └── DatasetNotFoundError (LookupError)
    ├── StoreError                             the lineage store cannot do what was asked
    │   ├── IntegrityError                     verification found a tampered record or artifact
    │   └── RecordNotFoundError (LookupError)  no such artifact, execution or model version
    ├── ModelError                             a model cannot be saved, loaded or queried
    │   ├── UntrustedArtifactError (TypeError) a saved model holds types nobody trusted
    │   ├── CapabilityError (TypeError)        the model lacks what was asked (gradients, exits...)
    │   ├── SignatureError                     a manifest's signature or hashes do not verify
    │   │   └── UntrustedKeyError              its signer is not pinned, or is revoked
    │   └── QueryBudgetExceeded                an attack asked for more queries than allowed
    ├── StepError                              a pipeline step failed; the cause is chained
    ├── GuardError (RuntimeError)              a serving guard could not decide (on_error)
    └── GateRejectedError                      the gate refused to register a model

``exit_code`` is what the CLI exits with when the error reaches it.
"""

from __future__ import annotations

__all__ = [
    "CapabilityError",
    "DataError",
    "DatasetNotFoundError",
    "FormatError",
    "GateRejectedError",
    "GuardError",
    "IntegrityError",
    "MlwardenError",
    "ModelError",
    "ParameterError",
    "QueryBudgetExceeded",
    "RecordNotFoundError",
    "SignatureError",
    "SpecError",
    "StepError",
    "StoreError",
    "UnknownNameError",
    "UntrustedArtifactError",
    "UntrustedKeyError",
]


class MlwardenError(Exception):
    """Root of every error mlwarden raises on purpose."""

    exit_code = 1


class SpecError(MlwardenError, ValueError):
    """A pipeline spec is malformed: the message names the field, its line and what is expected."""

    exit_code = 2


class ParameterError(MlwardenError, ValueError):
    """An argument lies outside what the function accepts; the message names it and the range."""

    exit_code = 2


class UnknownNameError(MlwardenError, KeyError):
    """A name (group, output mode, module...) is not among the known ones the message lists."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class FormatError(MlwardenError, ValueError):
    """Bytes or a record are in a format this version cannot read, or are malformed."""


class DataError(MlwardenError, ValueError):
    """A table or dataset cannot be used as asked (missing file, column, label...)."""

    exit_code = 3


class DatasetNotFoundError(DataError, LookupError):
    """No bundled dataset has the requested name."""


class StoreError(MlwardenError):
    """The lineage store cannot do what was asked."""

    exit_code = 4


class IntegrityError(StoreError):
    """Verification found an edited, deleted, inserted or reordered record or a changed artifact."""


class RecordNotFoundError(StoreError, LookupError):
    """No artifact, execution or model version matches the reference."""


class ModelError(MlwardenError):
    """A model cannot be saved, loaded or queried."""

    exit_code = 5


class UntrustedArtifactError(ModelError, TypeError):
    """A saved model contains types outside the trusted list; it is not loaded."""


class CapabilityError(ModelError, TypeError):
    """The model lacks a capability the caller needs (gradients, early exits, tree structure)."""


class SignatureError(ModelError):
    """A model manifest's signature or artifact hashes do not verify; it is not loaded."""


class UntrustedKeyError(SignatureError):
    """A signature's key is not pinned in the trust policy, or was revoked or rotated away."""


class QueryBudgetExceeded(ModelError):
    """A model adapter refused a query beyond its budget."""


class StepError(MlwardenError):
    """A pipeline step raised; the original error is chained as ``__cause__``."""


class GuardError(MlwardenError, RuntimeError):
    """A serving guard could not reach a decision and the deployment fails closed."""

    def __init__(self, guard: str) -> None:
        super().__init__(guard)
        self.guard = guard


class GateRejectedError(MlwardenError):
    """The gate (fail-closed) found failing checks, so the model was not registered."""

"""The mindprint error hierarchy.

Every error a user can provoke by bad input derives from :class:`MindprintError`, so an
application can catch one type and print a one-line message. Errors that concern a place
in a file carry that place as attributes, so tools can point at it, not just print it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MindprintError(Exception):
    """Base class of every error mindprint raises on purpose."""


class ConfigError(MindprintError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range.

    ``key`` is the dotted path of the offending key (``sft.learning_rate``).
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key = key
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + message)


class BackendNotFoundError(MindprintError, LookupError):
    """The asked-for backend is not registered, or its libraries are missing."""


class BackendMismatchError(MindprintError, TypeError):
    """A model created by one backend was handed to another (``Expected MLXModel, got PyTorchModel``)."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"Expected {expected}, got {got}")


@dataclass(frozen=True)
class DataIssue:
    """One problem in one record of a data file."""

    line: int  # 1-based line number in the file (0 when the data did not come from a file)
    field: str  # the record field at fault ("" when the whole line is at fault)
    reason: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        field = f" field {self.field!r}:" if self.field else ""
        return f"{where}:{field} {self.reason}"


class DataValidationError(MindprintError, ValueError):
    """One or more records are invalid. Lists *every* bad line, not just the first one."""

    def __init__(self, source: str, issues: Sequence[DataIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        first = self.issues[0] if self.issues else DataIssue(0, "", "invalid data")
        # Keep the attributes of the first issue for callers that only show one.
        self.file = source
        self.line = first.line
        self.field = first.field
        lines = [issue.format(source) for issue in self.issues]
        head = lines[0] if len(lines) == 1 else f"{len(lines)} invalid records in {source}:\n  " + "\n  ".join(lines)
        super().__init__(head)


class AdapterFormatError(MindprintError, ValueError):
    """An adapter directory is unreadable, of an unknown layout, or does not fit the base model."""


class MergeVerificationError(MindprintError, RuntimeError):
    """A merged/saved model does not reproduce the logits of the model it came from."""

    def __init__(self, message: str, *, max_abs_diff: float | None = None, tolerance: float | None = None) -> None:
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        super().__init__(message)


class DeviceUnavailableError(MindprintError, RuntimeError):
    """The asked-for device or dtype is not available on this machine."""


class TrainingError(MindprintError, RuntimeError):
    """Raised inside a training loop to abort it (e.g. non-finite loss); trainers turn it into a failed TrainingResult."""

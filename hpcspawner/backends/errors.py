"""What a backend raises: a sentence for the person who asked, and what the hub logs."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not do what was asked; the message says what to do."""


class CancelRefused(Exception):
    """The scheduler's record says the job is not the caller's to cancel, or the scheduler
    failed: the helper refuses, with this sentence."""


class ExtendRefused(BackendError):
    """A running server cannot be given more time: the sentence says why (nothing changed)."""


class HelperRefused(BackendError):
    """hpcspawner-helper refused (exit 2): ``why`` is its own sentence, for the person who
    asked; the message adds the command, for the hub's log."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why

"""User-facing errors.

Every mistake a user can make (a missing pool, a malformed annotation file, a budget
larger than the pool, weights that cannot be found offline) raises :class:`GealError`
with one sentence that says what is wrong and, where possible, how to fix it. The CLI
prints that sentence on one line and exits with status 2; library callers catch it.
"""

from __future__ import annotations


class GealError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class PoolError(GealError):
    """The pool cannot be read: missing, empty, malformed or ambiguous."""


class BankError(GealError):
    """A pattern bank is missing, incomplete or does not match the request."""


class WeightsError(GealError):
    """Model weights cannot be found or do not fit the model."""


class SelectionError(GealError):
    """A selection cannot be made as asked (budget, labeled set, strategy)."""

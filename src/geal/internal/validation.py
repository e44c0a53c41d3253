"""One home for the checks of user-given values (scikit-learn's ``check_scalar`` habit).

Every public function validates its inputs first with these, so a bad value is one
:class:`~geal.errors.GealError` line naming the option, never a traceback later.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

from geal.errors import GealError


def check_scalar(
    value: Any,
    name: str,
    kind: type[int] | type[float],
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    error: type[GealError] = GealError,
) -> Any:
    """``value`` as ``kind`` (int, or float which also takes ints), within the bounds.

    Booleans are refused where a number is expected; a float for an int too.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise error(f"{name} must be an integer, got {value!r}")
        out: Any = int(value)
    else:
        out = float(value)
        if out != out:  # NaN
            raise error(f"{name} must be a number, got NaN")
    if min_val is not None and (out < min_val or (not min_inclusive and out == min_val)):
        op = ">=" if min_inclusive else ">"
        raise error(f"{name} must be {op} {min_val:g}, got {value!r}")
    if max_val is not None and (out > max_val or (not max_inclusive and out == max_val)):
        op = "<=" if max_inclusive else "<"
        raise error(f"{name} must be {op} {max_val:g}, got {value!r}")
    return out


def check_choice(
    value: Any, name: str, choices: Collection[str], *, error: type[GealError] = GealError
) -> str:
    """``value`` if it is one of ``choices``, else a one-line error listing them."""
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return str(value)

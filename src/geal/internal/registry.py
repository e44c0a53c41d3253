"""One registry helper for every pluggable kind: backbones, pool formats, samplers, exporters.

A registry is pure bookkeeping (timm's ``register_model`` habit): each module registers
what it defines when it is imported, the package's ``__init__`` imports its modules, and
the registry never imports anything itself. Looking up an unknown name raises the kind's
one-line error naming the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from geal.errors import GealError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one kind.

    Args:
        kind: what an entry is, for messages ("strategy", "pool format", ...).
        error: the :class:`GealError` subclass an unknown name raises.
    """

    def __init__(self, kind: str, *, error: type[GealError] = GealError):
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name is registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry of ``name`` (a plugin replacing one, a test)."""
        return self._entries.pop(name)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator(name)`` registers the decorated object."""

        def wrap(entry: T) -> T:
            return self.register(name, entry)

        return wrap

    def get(self, name: str) -> T:
        """The entry of ``name``; an unknown name is a one-line :attr:`error`."""
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

"""One registry class for everything a suite names by string: methods and datasets (lm-eval style).

A `Registry` maps names to objects, or to lazy `"module:attr"` references imported on first use (so a heavy
optional dependency costs nothing until its entry is chosen). Third-party packages add entries through an
entry-point group (`[project.entry-points."mixbench.methods"]`, `"mixbench.datasets"`), read once, on the first
lookup; a suite may also name an object directly as `"package.module:attr"`. Nothing is imported to list names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownEntryError(ValueError):
    """A name that resolves to nothing usable; the message names what was asked and what exists."""


class Registry(Generic[T]):
    """Names -> objects of one kind (`kind`: "method", "dataset"), with lazy references and entry points.

    `accepts(obj)` says whether a resolved object is of the kind (`expected` describes it in errors);
    `name_of(obj)` gives the name a decorated object registers under; `discover` is called once before the
    first lookup (the dataset registry imports its reader modules there, so that each registers itself).
    """

    def __init__(self, kind: str, group: str, *, accepts: Callable[[Any], bool], expected: str,
                 name_of: Callable[[Any], str | None], builtins: dict[str, str] | None = None,
                 discover: Callable[[], None] | None = None, error: type[ValueError] = UnknownEntryError,
                 example: str = "package.module:attr"):
        self.kind, self.group, self.expected, self.error, self.example = kind, group, expected, error, example
        self._accepts, self._name_of, self._discover = accepts, name_of, discover
        self.entries: dict[str, Any] = dict(builtins or {})  # name -> object, or "module:attr"
        self._loaded = False

    # ---- adding ----

    def register(self, obj: T, name: str | None = None) -> T:
        """Register `obj` under `name` (default: its own name); usable as a decorator. A name already taken by
        another object is an error (the lazy reference to this very object is its placeholder, not a clash)."""
        if not self._accepts(obj):
            raise TypeError(f"register_{self.kind} expects {self.expected}; got {obj!r}")
        name = name or self._name_of(obj)
        if not name:
            raise ValueError(f"{obj!r} needs a name to be registered as a {self.kind}")
        existing = self.entries.get(name)
        if existing is not None and existing is not obj and existing != reference(obj):
            other = existing if isinstance(existing, str) else reference(existing)
            raise ValueError(f"{self.kind} name {name!r} is already registered by {other}; choose another name")
        self.entries[name] = obj
        return obj

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._discover is not None:
            self._discover()
        for ep in entry_points(group=self.group):
            if ep.name in self.entries and self.entries[ep.name] != ep.value:
                raise ValueError(f"entry point {ep.name} = {ep.value} (group {self.group}) clashes with the "
                                 f"{self.kind} already registered under that name; rename it in the package that "
                                 f"declares it")
            self.entries[ep.name] = ep.value

    def reload(self) -> None:
        """Read the entry points again (after installing a plug-in in a running interpreter)."""
        self._loaded = False
        self._load()

    # ---- looking up ----

    def names(self) -> list[str]:
        """Every registered name (built-in, decorated, entry points), sorted, without importing any entry."""
        self._load()
        return sorted(self.entries)

    def get(self, name: str) -> T:
        """The object behind a registered name or a `module:attr` reference."""
        self._load()
        if name in self.entries:
            entry = self.entries[name]
            obj = import_reference(entry, self.kind, self.error) if isinstance(entry, str) else entry
        elif ":" in name:
            obj = import_reference(name, self.kind, self.error)
        else:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())} "
                             f"(or give one as {self.example!r})")
        if not self._accepts(obj):
            raise self.error(f"{name!r} resolves to {obj!r}, which is not {self.expected}")
        return obj

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self.entries

    def items(self) -> Iterable[tuple[str, T]]:
        """(name, object) for every entry, importing each."""
        return [(name, self.get(name)) for name in self.names()]


def reference(obj: Any) -> str:
    """`module:qualname` of a class or function (objects without one are never equal to a reference)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', id(obj))}"


def import_reference(ref: str, kind: str = "object", error: type[ValueError] = UnknownEntryError) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise error(f"cannot import {module_name!r} for {kind} {ref!r}: {err}") from err
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    except AttributeError:
        raise error(f"module {module_name!r} has no attribute {attr!r} (from {ref!r})") from None

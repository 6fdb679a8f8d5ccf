"""Method registry: a decorator for classes, lazy `module:attr` entries, and the entry-point group.

Built-in methods are listed as `module:attr` strings and imported only when chosen, so a heavy optional
dependency (gco for PuzzleMix, OpenCV for SaliencyMix) costs nothing until its method is used. Third-party
packages add methods through the entry-point group `mixbench.methods` (`name = "pkg.module:Class"`), or a
suite names a class directly as `"pkg.module:Class"`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from mixbench.methods.base import Method

ENTRY_POINT_GROUP = "mixbench.methods"

# name -> class, or a lazy "module:attr" reference resolved on first use.
_REGISTRY: dict[str, type[Method] | str] = {
    "vanilla": "mixbench.methods.vanilla:Vanilla",
    "mixup": "mixbench.methods.mixup:Mixup",
    "cutmix": "mixbench.methods.cutmix:CutMix",
    "saliencymix": "mixbench.methods.saliencymix:SaliencyMix",
    "puzzlemix": "mixbench.methods.puzzlemix:PuzzleMix",
    "automix": "mixbench.methods.automix:AutoMix",
    # Issue 15, input mixers:
    "mixup_cutmix": "mixbench.methods.mixup_cutmix:MixupCutMix",
    "smoothmix": "mixbench.methods.smoothmix:SmoothMix",
    "fmix": "mixbench.methods.fmix:FMix",
    "gridmix": "mixbench.methods.gridmix:GridMix",
    "resizemix": "mixbench.methods.resizemix:ResizeMix",
}
_entry_points_loaded = False


class UnknownMethodError(ValueError):
    pass


def _reference(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register `cls` under `cls.name`. A name already taken by another class is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"@register_method expects a subclass of mixbench.methods.Method; got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    existing = _REGISTRY.get(cls.name)
    # The lazy entry that points at this very class is its placeholder, not a clash.
    if existing is not None and existing is not cls and existing != _reference(cls):
        other = existing if isinstance(existing, str) else _reference(existing)
        raise ValueError(f"method name {cls.name!r} is already registered by {other}; choose another name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY and _REGISTRY[ep.name] != ep.value:
            raise ValueError(
                f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) clashes with the method "
                f"already registered under that name; rename it in the package that declares it"
            )
        _REGISTRY[ep.name] = ep.value


def _import_reference(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UnknownMethodError(f"cannot import {module_name!r} for method {ref!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnknownMethodError(f"module {module_name!r} has no attribute {attr!r} (from {ref!r})") from None


def list_methods() -> list[str]:
    """Registered method names (built-in, decorated and from entry points), without importing any of them."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    """The class behind a registered name or a `module:Class` reference."""
    _load_entry_points()
    if ":" in name and name not in _REGISTRY:
        cls = _import_reference(name)
    elif name in _REGISTRY:
        entry = _REGISTRY[name]
        cls = _import_reference(entry) if isinstance(entry, str) else entry
    else:
        raise UnknownMethodError(
            f"unknown method {name!r}; registered: {', '.join(list_methods())} "
            f"(or give a class as 'package.module:Class')"
        )
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UnknownMethodError(f"{name!r} resolves to {cls!r}, which is not a mixbench Method subclass")
    return cls


def registered_class(name: str) -> type[Method] | None:
    """The class behind `name`, or None where nothing (any longer) answers to it: reports read old records."""
    try:
        return get_method_class(name)
    except (UnknownMethodError, ImportError):
        return None


# Names that no class answers to (a method since removed, a plug-in not installed) sort after every method.
UNREGISTERED_ORDER = 1_000_000


def display_order(name: str) -> int:
    """Where method `name` goes in tables and plots (`Method.display_order`)."""
    cls = registered_class(name)
    return UNREGISTERED_ORDER if cls is None else cls.display_order


def paper_name(name: str) -> str:
    """Method `name` as papers and published claims spell it (`Method.paper_name`)."""
    cls = registered_class(name)
    return (cls.paper_name or cls.name or name) if cls is not None else name


def method_rank(method: str, label: str) -> tuple[int, str]:
    """Sort key of a (method, label) row in tables and plots: the method's display order, then its label."""
    return display_order(method), label


def ordered_labels(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The labels of (method name, label) pairs, each once, in display order."""
    return [label for _, label in sorted(set(pairs), key=lambda pair: method_rank(*pair))]


def methods_in_display_order() -> list[str]:
    """The registered methods that set their own `display_order` (the project's), in table order."""
    return sorted((n for n in list_methods() if display_order(n) < Method.display_order),
                  key=lambda n: (display_order(n), n))


def method_hparam_names(cls: type[Method]) -> list[str]:
    """The keyword arguments a method accepts: its hyper-parameters."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
    return names


def create_method(name: str, **hparams: Any) -> Method:
    """Build a method by registered name or `module:Class`, with its hyper-parameters as keywords."""
    cls = get_method_class(name)
    unknown = sorted(set(hparams) - set(method_hparam_names(cls)))
    if unknown:
        raise ValueError(
            f"method {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(method_hparam_names(cls))}"
        )
    return cls(**hparams)

"""Method registry (an instance of `mixbench.registry.Registry`): a decorator for classes, lazy `module:attr`
entries, and the entry-point group.

Built-in methods are listed as `module:attr` strings and imported only when chosen, so a heavy optional
dependency (gco for PuzzleMix, OpenCV for SaliencyMix) costs nothing until its method is used. Third-party
packages add methods through the entry-point group `mixbench.methods` (`name = "pkg.module:Class"`), or a
suite names a class directly as `"pkg.module:Class"`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from mixbench.methods.base import Method
from mixbench.registry import Registry

ENTRY_POINT_GROUP = "mixbench.methods"


class UnknownMethodError(ValueError):
    pass


METHODS: Registry[type[Method]] = Registry(
    "method", ENTRY_POINT_GROUP, error=UnknownMethodError,
    accepts=lambda obj: isinstance(obj, type) and issubclass(obj, Method),
    expected="a mixbench Method subclass", name_of=lambda cls: cls.name, example="package.module:Class",
    builtins={  # name -> lazy "module:attr", imported when chosen
        "vanilla": "mixbench.methods.vanilla:Vanilla",
        "mixup": "mixbench.methods.mixup:Mixup",
        "cutmix": "mixbench.methods.cutmix:CutMix",
        "saliencymix": "mixbench.methods.saliencymix:SaliencyMix",
        "puzzlemix": "mixbench.methods.puzzlemix:PuzzleMix",
        "automix": "mixbench.methods.automix:AutoMix",
        # input mixers (issue 15)
        "mixup_cutmix": "mixbench.methods.mixup_cutmix:MixupCutMix",
        "smoothmix": "mixbench.methods.smoothmix:SmoothMix",
        "fmix": "mixbench.methods.fmix:FMix",
        "gridmix": "mixbench.methods.gridmix:GridMix",
        "resizemix": "mixbench.methods.resizemix:ResizeMix",
        # hidden-state, history and attention mixers (issue 15)
        "manifoldmix": "mixbench.methods.manifoldmix:ManifoldMix",
        "recursivemix": "mixbench.methods.recursivemix:RecursiveMix",
        "transmix": "mixbench.methods.transmix:TransMix",
    },
)
_REGISTRY = METHODS.entries  # name -> class or "module:attr" (tests patch entries here)


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register `cls` under `cls.name`. A name already taken by another class is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"@register_method expects a subclass of mixbench.methods.Method; got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    return METHODS.register(cls)


def list_methods() -> list[str]:
    """Registered method names (built-in, decorated and from entry points), without importing any of them."""
    return METHODS.names()


def get_method_class(name: str) -> type[Method]:
    """The class behind a registered name or a `module:Class` reference."""
    return METHODS.get(name)


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

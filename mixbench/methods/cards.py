"""Method cards: `methods/<name>.yaml`, the default hyper-parameters per dataset family with their sources.

A card holds `version`, `defaults` (every family) and `families.<family>` (cifar, tiny, imagenet), and
`sources` naming where each value comes from, and optionally `display`: values for the short display
networks of `mixbench show` only (AutoMix: a faster EMA), never for a suite's trials. Methods without a card
(third-party ones) run on the defaults of their own `__init__`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("cifar", "tiny", "imagenet")


def card_dirs() -> list[Path]:
    """Where cards live: inside an installed wheel (mixbench/cards), else the source tree's methods/."""
    package = Path(__file__).resolve().parents[1]
    return [package / "cards", package.parent / "methods"]


@cache
def load_card(name: str) -> dict[str, Any] | None:
    for folder in card_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            card = yaml.safe_load(path.read_text()) or {}
            card["path"] = str(path)
            return card
    return None


def card_defaults(name: str, family: str) -> dict[str, Any]:
    """The card's hyper-parameters for a dataset family: `defaults`, then the family's own values."""
    card = load_card(name)
    if card is None:
        return {}
    if family not in FAMILIES:
        raise ValueError(f"unknown dataset family {family!r}; families are {', '.join(FAMILIES)}")
    return {**(card.get("defaults") or {}), **((card.get("families") or {}).get(family) or {})}


def create_with_card(name: str, family: str, **hparams: Any):
    """The method `name` (registered or `module:Class`) with its card's defaults for `family`, then `hparams`."""
    from mixbench.methods.registry import create_method, get_method_class

    cls = get_method_class(name)
    return create_method(name, **{**card_defaults(cls.name or name, family), **hparams})

"""Method cards: every built-in method has one, its version is the code's, every value names its source."""

from __future__ import annotations

import importlib.util

import pytest

from mixbench.methods import list_methods
from mixbench.methods.cards import FAMILIES, card_defaults, load_card
from mixbench.methods.registry import get_method_class, method_hparam_names

BUILTIN = ["vanilla", "mixup", "cutmix", "saliencymix", "puzzlemix", "automix"]
# Issue 15, input mixers:
BUILTIN += ["mixup_cutmix", "smoothmix", "fmix", "gridmix", "resizemix"]


def method_class_or_skip(name: str):
    module = f"mixbench.methods.{name}"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not part of this checkout")
    return get_method_class(name)


@pytest.mark.parametrize("name", BUILTIN)
def test_card_matches_the_method(name):
    cls = method_class_or_skip(name)
    card = load_card(name)
    assert card is not None, f"methods/{name}.yaml is missing"
    assert card["name"] == name and card["version"] == cls.version
    assert set(card["families"]) == set(FAMILIES)
    accepted = set(method_hparam_names(cls))
    for family in FAMILIES:
        values = card_defaults(name, family)
        assert set(values) <= accepted, f"{name}/{family}: card keys the method does not take"
        # A source may cover several keys at once: "beta, gamma, eta: ...".
        sourced = {key.strip() for keys in (card.get("sources") or {}) for key in keys.split(",")}
        missing_sources = set(values) - sourced
        assert not missing_sources, f"{name}: no source for {sorted(missing_sources)}"


def test_family_values_override_the_defaults():
    assert card_defaults("mixup", "cifar")["alpha"] == 1.0
    assert card_defaults("mixup", "imagenet")["alpha"] == 0.2
    assert card_defaults("cutmix", "cifar")["alpha"] == 0.2
    with pytest.raises(ValueError, match=r"unknown dataset family 'mnist'; families are cifar, tiny, imagenet"):
        card_defaults("mixup", "mnist")


def test_a_method_without_a_card_runs_on_its_own_defaults():
    assert card_defaults("no_such_method_card", "cifar") == {}
    assert "vanilla" in list_methods()

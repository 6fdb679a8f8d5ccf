"""A small trial config on the in-memory synthetic dataset, for tests that run trials directly."""

from __future__ import annotations

from typing import Any

from mixbench.suite import TrialConfig


def synthetic_trial(suite: str, method: str, epochs: int, *, seed: int, backbone: str = "test_resnet",
                    per_class: int = 4, val_per_class: int = 2, base_recipe: dict[str, Any] | None = None,
                    **changes: Any) -> TrialConfig:
    """`base_recipe` adds to the small default recipe; `changes` replace whole top-level fields (`hparams=`,
    `recipe=`, ...)."""
    base = {
        "suite": suite,
        "dataset": {"name": "synthetic", "limit_per_class": per_class, "val_limit_per_class": val_per_class},
        "backbone": {"name": backbone}, "method": method, "method_label": method, "method_version": 1,
        "hparams": {}, "seed": seed,
        "recipe": {"epochs": epochs, "batch_size": 8, "num_workers": 0, **(base_recipe or {})},
    }
    return TrialConfig.model_validate({**base, **changes})

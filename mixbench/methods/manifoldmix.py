"""ManifoldMix (Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019).

The algorithm. Each step draws λ ~ Beta(α, α), a permutation π and a layer k uniformly from [lo, hi). The batch
runs through the network unchanged up to layer k, where the hidden state is replaced by λ·h + (1-λ)·h[π]; the
rest of the forward pass runs on the mix, and the loss is λ·CE(y) + (1-λ)·CE(y[π]). Gradients flow through
both terms of the mix (the reference does not detach either).

Layers (openmixup's numbering, `mix_args.manifoldmix.layer`): 0 is the input image (then this is Mixup); k ≥ 1
is the output of stage k-1 in mixbench's stage convention (`mixbench.models`, openmixup's `out_indices`). The
eligible layers of a backbone are 0..`num_stages(backbone)`:

| backbone | layers | layer k ≥ 1 is the output of |
|---|---|---|
| ResNet / ResNeXt (timm's, `*_cifar`, `test_resnet`) | 0..4 | layer1..layer4 |
| WideResNet-28-k (`wrn28_*`) | 0..3 | stages.0, stages.1, the final BN-act after stages.2 |
| ConvNeXt | 0..4 | stages.0..3 |
| ViT / DeiT | 0..depth | transformer block k-1 (all tokens, class token included) |
| any timm model with `feature_info` | 0..#stages | its k-th non-stem `feature_info` module |

The reference's layer range [0, 3) (input, after stage 1, after stage 2) is the card's default everywhere.

How it matches the reference, openmixup @37e1372 (`classifiers/mixup_classification.py::_manifoldmix`,
`backbones/resnet_mmcls.py::ResNet_Mix[_CIFAR]._feature_mixup`) and the official code
(vikasverma1077/manifold_mixup, `layer_mix = random.randint(0, 2)` for `mixup_hidden`): the same draws in the
same order (λ, π, then k), one λ per batch, a plain permutation (a sample may meet itself), hard-label pair with
the sampled λ. openmixup builds a constant mask of λ at the feature's size and multiplies; that is λ·h +
(1-λ)·h[π] here, without the mask tensor.

Deliberate deviations:
* Any timm backbone: the mix is a forward hook on the stage's module (`mixbench.models.stage_module`), run through
  the model the engine gives (the DDP wrapper too), instead of openmixup's per-architecture `*_Mix` backbones. A
  module that does not run exactly once per forward pass raises, rather than mixing twice or not at all.
* Layers up to the last stage are accepted (openmixup asserts hi ≤ 3); `check_input` rejects a range past the
  backbone's last stage before a suite runs.
* Every draw comes from the trial's generator (openmixup: numpy's and torch's global RNGs).

Cost: one elementwise mix of one feature map; on ConvNeXt-T openmixup's CIFAR-100 table gives ManifoldMix the
same memory and time as vanilla (4.2 GB, 10 h).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixbench.methods.base import (
    Method,
    MixedBatch,
    StepOutput,
    mixed_cross_entropy,
    random_permutation,
    sample_beta,
)
from mixbench.methods.registry import register_method


def _unwrap(backbone: nn.Module) -> nn.Module:
    """The bare model behind a DistributedDataParallel wrapper, for attribute access."""
    return getattr(backbone, "module", backbone)


def layer_range(layer: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`layer` as openmixup reads it: a pair (lo, hi) draws from range(lo, hi); an int k fixes layer k."""
    if isinstance(layer, bool):
        raise ValueError(f"layer must be an int or a pair [lo, hi]; got {layer!r}")
    if isinstance(layer, int):
        low, high = layer, layer + 1
    elif isinstance(layer, (tuple, list)) and len(layer) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in layer
    ):
        low, high = layer
    else:
        raise ValueError(f"layer must be an int or a pair [lo, hi]; got {layer!r}")
    if not 0 <= low < high:
        raise ValueError(
            f"layer={layer!r} gives no layer: layers are drawn from range(lo, hi); need 0 <= lo < hi "
            f"(e.g. [0, 3]: the input, after stage 1, after stage 2)"
        )
    return low, high


def mix_hidden(h: Tensor, lam: Tensor, index: Tensor) -> Tensor:
    """λ·h + (1-λ)·h[index] along the batch dimension, for a hidden state of any shape."""
    index = index.to(h.device)
    w = float(lam)  # a Python scalar, as the reference's numpy λ
    return w * h + (1 - w) * h[index]


def manifold_forward(backbone: nn.Module, x: Tensor, layer: int, lam: Tensor, index: Tensor) -> Tensor:
    """The logits of `backbone` on `x` with the hidden state at `layer` mixed (0: the input).

    `backbone` may be a DDP wrapper: the pass runs through it, the hook sits on the module inside.
    """
    if layer == 0:
        return backbone(mix_hidden(x, lam, index))
    from mixbench.models import stage_module

    name, module = stage_module(_unwrap(backbone), layer - 1)
    calls = 0

    def mix_output(_module: nn.Module, _args: Any, output: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return mix_hidden(output, lam, index)

    handle = module.register_forward_hook(mix_output)
    try:
        logits = backbone(x)
    finally:
        handle.remove()
    if calls != 1:
        raise RuntimeError(
            f"manifoldmix layer {layer}: module {name!r} ran {calls} times in one forward pass, so it is not one "
            f"stage of the forward path; fix: set method.layer to other layers"
        )
    return logits


@register_method
class ManifoldMix(Method):
    """Mixup of the hidden state at a randomly drawn layer (the input or a stage output)."""

    name = "manifoldmix"
    mixes_with_model = False  # the gallery's picture of a draw needs no network: none is trained for it
    version = 1
    paper_name = "ManifoldMix"
    display_order = 90
    cost_multiplier = 1.0
    cost_source = (
        "one elementwise mix of one feature map; openmixup CIFAR-100 ConvNeXt-T table: vanilla's memory and "
        "time (4.2 GB, 10 h)"
    )
    eval_passes = 1

    def __init__(self, alpha: float = 2.0, layer: int | tuple[int, int] | list[int] = (0, 3),
                 label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 for Beta(alpha, alpha); got {alpha}")
        self.alpha = float(alpha)
        self.layer = layer_range(layer)

    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        from mixbench.models import num_stages

        super().setup(backbone, num_classes)
        if self.layer[1] > 1:  # hidden layers: the backbone must have them
            try:
                stages = num_stages(_unwrap(backbone))
            except ValueError as err:
                raise ValueError(f"manifoldmix layer={list(self.layer)}: {err}; fix: set method.layer to 0 "
                                 f"(input mixing) or use a timm backbone with feature_info") from None
            if self.layer[1] - 1 > stages:
                raise ValueError(self._range_error(stages))

    def _range_error(self, stages: int) -> str:
        return (f"manifoldmix layer={list(self.layer)} reaches layer {self.layer[1] - 1}, but the backbone has "
                f"layers 0..{stages} (0: the input, k: after stage k); fix: set method.layer, e.g. [0, "
                f"{min(3, stages + 1)}]")

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        """The step's draws in the reference's order: λ, the permutation, then the layer."""
        lam = sample_beta(self.alpha, 1, gen)[0]
        index = random_permutation(batch_size, gen)
        layer = torch.randint(self.layer[0], self.layer[1], (1,), generator=gen)[0]
        return {"lam": lam, "index": index, "layer": layer}

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        drawn = self.sample(x.shape[0], gen)
        lam, index, layer = drawn["lam"], drawn["index"], int(drawn["layer"])
        logits = manifold_forward(backbone, x, layer, lam, index)
        y_b = y[index.to(y.device)]
        loss = mixed_cross_entropy(logits, y, y_b, lam, self.label_smoothing)
        return StepOutput(loss=loss, logs={"lam": float(lam), "layer": float(layer)})

    def mix_for_display(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> MixedBatch:
        """The drawn pair and λ, mixed at the input (layer 0) for the picture.

        A hidden layer mixes the feature maps of the same pair with the same λ; those have no picture, so the
        gallery shows every draw as its input-level mix (what a draw of layer 0 trains on).
        """
        drawn = self.sample(x.shape[0], gen)
        lam, index = drawn["lam"], drawn["index"]
        with torch.no_grad():
            mixed = mix_hidden(x, lam, index)
        return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "layer": list(self.layer), "label_smoothing": self.label_smoothing}

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        """The layer range must end within the backbone's stages; built on the meta device, so no memory and no time."""
        from mixbench.models import create_backbone, num_stages

        if self.layer[1] <= 1:
            return  # input mixing runs on any backbone
        height = image_size if isinstance(image_size, int) else image_size[0]
        with torch.device("meta"):
            try:
                model = create_backbone(backbone_name, num_classes=10, image_size=height)
            except Exception:  # a model that cannot be built on the meta device is checked when it runs
                return
        try:
            stages = num_stages(model)
        except ValueError as err:
            raise ValueError(f"manifoldmix layer={list(self.layer)} on {backbone_name}: {err}; fix: set "
                             f"method.layer to 0 (input mixing)") from None
        if self.layer[1] - 1 > stages:
            raise ValueError(f"on {backbone_name}: {self._range_error(stages)}")

"""TransMix (Chen et al., "TransMix: Attend to Mix for Vision Transformers", CVPR 2022).

The algorithm. A Vision Transformer trains on CutMix batches whose labels are re-weighted by where its class token
looks: with the box region B (the partner's pixels) taken at patch resolution and a the last block's attention
from the class token to the patches (softmax over all tokens, averaged over the heads), the partner's attention
share is Σ_{p∈B} a_p / Σ_p a_p, and sample i's label weight is

    λ_i = ratio·λ_area + (1 - ratio)·(1 - partner share_i),   ratio = 0.5,

i.e. the mean of CutMix's area λ and the attention λ. The attention is the one of the forward pass that trains
on the mixed batch (no extra pass) and is not differentiated. The rest of the time (1 - `switch_prob`) the batch
is Mixup with λ ~ Beta(mixup_alpha) and area labels, as both references alternate the two.

How it matches the references, openmixup @37e1372 (`augments/transmix.py`, `MixUpClassification.forward_mix`
label_mix_mode "transmix", configs `mix_mode=["mixup", "transmix"], alpha=[0.8, 1.0], mix_prob=[0.2, 0.8]`) and
the official Beckschen/TransMix@0e4d31e (`transmix.py::Mixup_transmix.transmix_label`, the patched timm
`vision_transformer.py` that returns `attn[:, :, 0, 1:]` averaged over the heads): the box is openmixup's CutMix box
(centre uniform over the image, half-extents `cut // 2`, clipped, area-corrected λ; `mixbench.methods.cutmix`),
one box per batch, a permutation partner; the box mask is brought to the patch grid by nearest sampling (the
references' `nn.Upsample(size=patch_shape)`: a patch counts as the partner's when its top-left pixel is in the
box); the attention is the post-softmax map before attention dropout; labels are the pair (y, y[π]) with the
per-sample λ above, trained with per-sample soft-target CE (`mixed_cross_entropy` with an (N,) λ).

Getting the attention from timm. timm's `Attention` uses fused scaled-dot-product attention and never forms the
map. A forward hook on the last block's `attn.qkv` keeps its output (detached); the class-token row is then
softmax(q_cls·kᵀ·scale) over all tokens, with the block's own `q_norm`/`k_norm`, i.e. the first row of the map
the non-fused path computes, at O(tokens) instead of O(tokens²) extra work.

Deliberate deviations:
* Prefix tokens other than the class token (DeiT's distillation token, register tokens) are dropped from the
  attention sum, as the class token is; the official slice `1:` keeps DeiT-distilled's distillation token among
  the "patches". For a ViT with one class token this is the reference.
* The Mixup/TransMix choice and all draws come from the trial's generator; the official code draws with
  timm's Mixup (numpy) and pairs each sample with the flipped batch, openmixup shuffles. The permutation here is
  openmixup's.
* `switch_prob` 0.8 is openmixup's `mix_prob`. The official config file writes `mixup-switch-prob: 0.8`; its
  train.py feeds the YAML keys to `parser.set_defaults`, where a hyphenated key does not reach the option's dest
  `mixup_switch_prob`, so the official runs used timm's default 0.5. Set `switch_prob: 0.5` to follow them.
* Not ported: the official `Mixup_transmix` only supports `mode='batch'` and even batch sizes (timm's flip
  pairing); neither restriction applies here.

Backbones: timm VisionTransformer-family models with a class token whose last block has a timm `Attention`
(`qkv`, `num_heads`, `scale`, `q_norm`, `k_norm`): vit_*, deit_*, deit3_*, test_vit. Others (CNNs, Swin, models
pooled without a class token) fail `check_input` (`mixbench check`) and `setup` with the reason.

Cost: the class-token row of one attention map per step (N·heads·tokens·head_dim multiply-adds, under
no_grad) on top of a CutMix step; openmixup's CIFAR-100 DeiT-S table gives 8.4 GB and 28 h against vanilla's
8.1 GB and 27 h.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.methods.base import (
    Method,
    MixedBatch,
    StepOutput,
    mixed_cross_entropy,
    random_permutation,
    sample_beta,
)
from mixbench.methods.cutmix import box_area_lam, box_bounds, paste_boxes
from mixbench.methods.registry import register_method

_ATTENTION_PARTS = ("qkv", "num_heads", "scale", "q_norm", "k_norm")


def _unwrap(backbone: nn.Module) -> nn.Module:
    """The bare model behind a DistributedDataParallel wrapper, for attribute access."""
    return getattr(backbone, "module", backbone)


def class_attention_problem(model: nn.Module) -> str | None:
    """Why `model` has no last-block class-token attention TransMix can read, or None if it has one."""
    if getattr(model, "cls_token", None) is None:
        return "it has no class token"
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList) or len(blocks) == 0:
        return "it has no transformer blocks (`blocks`)"
    attn = getattr(blocks[-1], "attn", None)
    missing = [part for part in _ATTENTION_PARTS if not hasattr(attn, part)] if attn is not None else ["attn"]
    if missing:
        return f"its last block's attention is not timm's Attention (no {', '.join(missing)})"
    return None


def cls_attention_from_qkv(qkv: Tensor, attn: nn.Module, num_prefix_tokens: int) -> Tensor:
    """The last block's attention from the class token to the patch tokens, averaged over heads: (N, patches).

    `qkv` is the output of `attn.qkv` (N, tokens, 3·dim). This is row 0 of softmax(q·kᵀ·scale) as timm's
    non-fused Attention computes it, over all tokens, then the patch columns (after the prefix tokens).
    """
    n, tokens, _ = qkv.shape
    heads = attn.num_heads
    q, k, _ = qkv.reshape(n, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (N, heads, tokens, d)
    q, k = attn.q_norm(q), attn.k_norm(k)
    q_cls = q[:, :, :1].float() * attn.scale
    weights = torch.softmax(q_cls @ k.float().transpose(-2, -1), dim=-1)  # (N, heads, 1, tokens)
    return weights[:, :, 0, num_prefix_tokens:].mean(dim=1)


def partner_cells(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """(N, h·w) 0/1: which patches belong to the partner, from the keep-mask (N, 1, H, W) by nearest sampling."""
    partner = 1.0 - mask.float()
    return F.interpolate(partner, size=grid, mode="nearest").flatten(1)


def transmix_lam(area_lam: Tensor, cells: Tensor, attention: Tensor, ratio: float) -> Tensor:
    """Per-sample λ (weight of the first image): ratio·λ_area + (1-ratio)·(own attention / all patch attention)."""
    attention = attention.to(torch.float64)
    cells = cells.to(device=attention.device, dtype=torch.float64)
    partner = (cells * attention).sum(dim=1)
    own = ((1.0 - cells) * attention).sum(dim=1)
    attention_lam = own / (own + partner)
    return ratio * area_lam.to(attention.device, torch.float64) + (1.0 - ratio) * attention_lam


class _QkvRecorder:
    """A forward hook that keeps the (detached) output of the last block's qkv projection."""

    def __init__(self, qkv: nn.Module):
        self.output: Tensor | None = None
        self.calls = 0
        self.handle = qkv.register_forward_hook(self)

    def __call__(self, _module: nn.Module, _args: Any, output: Tensor) -> None:
        self.calls += 1
        self.output = output.detach()

    def remove(self) -> None:
        self.handle.remove()


@register_method
class TransMix(Method):
    """CutMix for ViTs with labels re-weighted by the class token's attention; Mixup the rest of the time."""

    name = "transmix"
    version = 1
    paper_name = "TransMix"
    display_order = 110
    cost_multiplier = 1.05
    cost_source = (
        "a CutMix step plus the class-token row of the last attention map; openmixup CIFAR-100 DeiT-S table: "
        "8.4 GB / 28 h vs vanilla 8.1 GB / 27 h"
    )
    eval_passes = 1
    # `mixbench show` needs a ViT: timm's tiny test ViT with the 4-px patches of suites/fashion_mnist_vit.yaml. Its
    # default 16-px patches make a 2×2 grid at 32 px, on which most boxes hold no patch's top-left pixel: then no
    # patch is B's, every sample's attention λ is 1 and the gallery shows one λ = (λ_area + 1) / 2 for all.
    display_backbone = "test_vit"
    display_backbone_kwargs: ClassVar[dict[str, Any]] = {"patch_size": 4}
    lam_note = ("TransMix's λ is the mean of the box's area λ (the mask's mean) and the last block's class-token "
                "attention on A's patches (a patch is B's when its top-left pixel is in the box), so it differs "
                "from the mask's mean and from sample to sample.")

    def __init__(self, alpha: float = 1.0, mixup_alpha: float = 0.8, switch_prob: float = 0.8, ratio: float = 0.5,
                 label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        if alpha <= 0 or mixup_alpha <= 0:
            raise ValueError(f"alpha (CutMix) and mixup_alpha must be > 0; got {alpha}, {mixup_alpha}")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"switch_prob (probability of a TransMix batch) must be in [0, 1]; got {switch_prob}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio (weight of the area λ) must be in [0, 1]; got {ratio}")
        self.alpha, self.mixup_alpha = float(alpha), float(mixup_alpha)
        self.switch_prob, self.ratio = float(switch_prob), float(ratio)

    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        super().setup(backbone, num_classes)
        problem = class_attention_problem(_unwrap(backbone))
        if problem:
            raise ValueError(self._backbone_error(type(_unwrap(backbone)).__name__, problem))

    @staticmethod
    def _backbone_error(backbone: str, problem: str) -> str:
        return (f"transmix re-weights labels by a ViT's class-token attention, but {backbone} cannot give one: "
                f"{problem}; fix: use a timm ViT/DeiT backbone (vit_*, deit_*; `mixbench show transmix --backbone "
                f"test_vit`) or another method")

    # ---- the draws and the deterministic core -----------------------------------------------------------
    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        """The batch's mode (TransMix with probability switch_prob, else Mixup), its λ, π and the box centre."""
        use_transmix = bool(torch.rand((), generator=gen, dtype=torch.float64) < self.switch_prob)
        lam = sample_beta(self.alpha if use_transmix else self.mixup_alpha, 1, gen)[0]
        index = random_permutation(batch_size, gen)
        center = torch.rand(2, generator=gen, dtype=torch.float64)
        return {"transmix": torch.tensor(use_transmix), "lam": lam, "index": index, "center": center}

    def mix(self, x: Tensor, y: Tensor, transmix: Tensor, lam: Tensor, index: Tensor, center: Tensor) -> MixedBatch:
        """The input batch: CutMix (mask kept for the relabelling) or Mixup; `lam` is the area λ."""
        index = index.to(x.device)
        if bool(transmix):
            height, width = x.shape[-2:]
            box = box_bounds(lam, center, height, width)
            mixed, mask = paste_boxes(x, index, box)
            return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=box_area_lam(box, height, width),
                              mask=mask)
        w = float(lam)
        return MixedBatch(x=w * x + (1 - w) * x[index], y_a=y, y_b=y[index.to(y.device)], lam=lam)

    def relabel(self, mixed: MixedBatch, attention: Tensor, grid: tuple[int, int]) -> Tensor:
        """TransMix's per-sample λ for a CutMix batch, from the class-token attention (N, h·w) on the grid."""
        return transmix_lam(mixed.lam, partner_cells(mixed.mask, grid), attention, self.ratio)

    # ---- the step ---------------------------------------------------------------------------------------
    def forward_with_attention(self, backbone: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Logits of the training pass, the class-token attention of its last block, and the patch grid."""
        net = _unwrap(backbone)
        attn = net.blocks[-1].attn
        recorder = _QkvRecorder(attn.qkv)
        try:
            logits = backbone(x)
        finally:
            recorder.remove()
        if recorder.calls != 1:
            raise RuntimeError(f"transmix: the last block's qkv ran {recorder.calls} times in one forward pass")
        with torch.no_grad():
            attention = cls_attention_from_qkv(recorder.output, attn, net.num_prefix_tokens)
        grid = patch_grid(net, x.shape[-2:], attention.shape[1])
        return logits, attention, grid

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        mixed = self.mix(x, y, **self.sample(x.shape[0], gen))
        if mixed.mask is None:  # a Mixup batch: area labels
            logits = backbone(mixed.x)
            lam = mixed.lam
            # Every key on every step: the engine averages each key over all the epoch's steps.
            logs = {"lam": float(lam), "lam_area": float(lam), "transmix": 0.0}
        else:
            logits, attention, grid = self.forward_with_attention(backbone, mixed.x)
            lam = self.relabel(mixed, attention, grid)
            logs = {"lam": float(lam.mean()), "lam_area": float(mixed.lam), "transmix": 1.0}
        loss = mixed_cross_entropy(logits, mixed.y_a, mixed.y_b, lam, self.label_smoothing)
        return StepOutput(loss=loss, logs=logs)

    def mix_for_display(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator,
                        lam: float | None = None) -> MixedBatch:
        """The batch and the labels the backbone would train on; λ of a TransMix batch is the attention-weighted one.
        A fixed `lam` replaces the drawn area λ (the box's size, or Mixup's weight), as for CutMix."""
        drawn = self.sample(x.shape[0], gen)
        if lam is not None:
            drawn["lam"] = torch.full_like(drawn["lam"], float(lam))
        mixed = self.mix(x, y, **drawn)
        if mixed.mask is None:
            return mixed
        with torch.no_grad():
            _, attention, grid = self.forward_with_attention(backbone, mixed.x)
        return MixedBatch(x=mixed.x, y_a=mixed.y_a, y_b=mixed.y_b, lam=self.relabel(mixed, attention, grid),
                          mask=mixed.mask)

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        """The backbone must be a timm ViT with a class token; built on the meta device, so no memory and no time."""
        from mixbench.models import create_backbone

        height = image_size if isinstance(image_size, int) else image_size[0]
        with torch.device("meta"):
            try:
                model = create_backbone(backbone_name, num_classes=10, image_size=height)
            except Exception:  # a model that cannot be built on the meta device is checked when it runs
                return
        problem = class_attention_problem(model)
        if problem:
            raise ValueError(self._backbone_error(backbone_name, problem))


def patch_grid(model: nn.Module, image_size: tuple[int, int], patches: int) -> tuple[int, int]:
    """The (h, w) patch grid of `model` at `image_size`; it must hold `patches` tokens."""
    embed = model.patch_embed
    grid = tuple(embed.dynamic_feat_size(tuple(image_size))) if hasattr(embed, "dynamic_feat_size") else tuple(
        embed.grid_size)
    if grid[0] * grid[1] != patches:
        raise RuntimeError(f"transmix: a {grid[0]}×{grid[1]} patch grid does not hold the {patches} patch tokens")
    return grid

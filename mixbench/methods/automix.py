"""AutoMix (Liu et al., "AutoMix: Unveiling the Power of Mixup for Stronger Classifiers", ECCV 2022).

The algorithm. A trainable Mix Block turns the feature map of a batch into one pixel mask per pair of samples,
and a momentum ("EMA") copy of the classifier lets the Mix Block and the classifier be trained together
without either one cheating the other. Each step draws two independent λ ~ Beta(α, α) and two permutations:

1. Clean-image features f = stage `mask_layer` of the EMA encoder k (no gradient).
2. Mix Block on f: 1×1 value and query convolutions (the query conv also embeds the key), attention from every
   location of sample i over the locations of its partner π(i), softmax(q·k / √C'), one logit per location,
   nearest upsampling to the input size, sigmoid s; the mask is [1 - s, s] (weight of x_i, weight of
   x_π(i)), so its two channels sum to 1. With `lam_concat` a constant λ channel (1 - λ for the partner) is
   appended to the features, so the mask can depend on λ; without it λ reaches the Mix Block only through
   the mask loss.
3. Mix-Block branch (trains only the Mix Block): x_mb = mask_mb ⊙ (x, x[π_mb]) with a mask that keeps its
   graph; loss λ_mb·CE(y) + (1-λ_mb)·CE(y[π_mb]) of the EMA encoder's mix head, back-propagated *through*
   the frozen EMA encoder into the Mix Block, plus the mask loss
   w·relu(|1 - mean(mask[:, 1]) - λ_mb| - margin), one mean over the whole batch.
4. Backbone branch (trains the online encoder q, its one-hot head and its mix head): CE of the clean batch
   through the backbone's own classifier (head_one), and the mixed CE of x_bb through a separate linear
   head (head_mix) on the pooled features, x_bb mixed with a *detached* mask for (λ_bb, π_bb). When
   λ_bb ≤ lam_margin or 1 - λ_bb ≤ lam_margin the step uses plain Mixup instead.
5. After the optimizer step: k <- m·k + (1-m)·q for the parameters (not the BN buffers) of the encoder and
   both heads, with m = 0.999 for the first 10 % of the iterations, then on the cosine
   m = end - (end - 0.999)·(cos(π·t/T) + 1)/2 (end 0.999999 CIFAR / Tiny-ImageNet, 0.99999 ImageNet).

How it matches the reference, openmixup @37e1372 (`classifiers/automix.py::AutoMixup`,
`heads/pmix_block.py::PixelMixBlock` with mask_mode "none_v_", `core/hooks/momentum_hook.py::
CosineScheduleHook`, under `openmixup/models/` of github.com/Westlake-AI/openmixup): the same draws in the
same order (λ = [λ_mb, λ_bb], then π_bb, then π_mb), the same architecture and N(0, 0.01) initialisation,
the same losses with weight 1, the lam_margin test (inclusive), the mask-loss annealing of the ImageNet configs
(`CustomCosineAnnealingHook`: w·(cos(π·t/T) + 1)/2 when `mask_loss_anneal`), the momentum formula including
its small jump where the constant hold ends (the cosine is of t/T over the whole run, not restarted), the EMA
running in train mode (batch-statistics BN, its running statistics updated by its own passes), the Mix Block
computed in fp32. Labels use the sampled λ, never the realised mask mean.

Deliberate deviations:
* The mask is upsampled to the input's size read from the shapes, not by the reference's hard-coded factor
  (2**mask_layer, or 2**(mask_layer + 2) above 64 px), which is only right for openmixup's ResNets.
* Each branch runs its backward as soon as its loss exists (Mix-Block branch + mask loss, then the one-hot
  loss, then the mixed loss); the reference sums the four losses into one backward and keeps three graphs
  alive. Gradients add, so the result is the same up to float summation order, at a lower peak memory. The
  step returns `StepOutput(backward_done=True)` with the detached sum as the loss.
* `torch.no_grad()` where the reference built a graph and threw it away: the clean feature pass and the
  backbone-branch mask (which the reference detaches). The EMA pass on x_mb is *not* under no_grad: the Mix
  Block is trained through it. Its parameters have requires_grad False, so autograd computes input
  gradients only.
* The clean feature pass stops at `mask_layer` (the reference runs the whole EMA encoder and keeps stage
  `mask_layer`). So the running BN statistics of the EMA encoder's stages after `mask_layer` are estimated
  from the Mix-Block-mixed batches only, not from those and the clean ones; its weights are unaffected.
* head_one is the backbone's own timm classifier (openmixup's backbones have none, so it adds a ClsHead);
  head_mix is an `nn.Linear` on `forward_head(features, pre_logits=True)`, N(0, 0.01) as openmixup's heads.
* Not implemented, as they are off in every AutoMix ResNet config: `mask_adjust`, `pre_one_loss` /
  `pre_mix_loss` (they would raise in the reference), SAMix options, `mix_shuffle_no_repeat`, and the ImageNet
  ViT configs' `switch_off` (skip the Mix-Block branch with probability 0.2).

Evaluation and the headline. openmixup evaluates four heads (k/q encoder × one/mix head), and its AutoMix
summary script `find_automix_val_median.py` reports the maximum over the heads' medians and over windows of
N-1, N and N+1 epochs (claims/README.md §3), which favours AutoMix over baselines reported as a plain median.
Here `eval_models` gives the EMA encoder with its own (one-hot) classifier as "ema" and the online backbone
as "online", so the record holds both top-1 values (`top1_ema`, `top1_online`); `eval_mix_heads` adds
"ema_mix" and "online_mix" for the best-of-four convention. `headline` (default "ema") names the first
one, whose top-1 becomes the record's `top1`. "ema" is the default because it is the classifier the
reference itself serves (`forward_inference` uses backbone_k and head_one_k) and the recipe is built around
it (the CIFAR configs stop the cosine at min_lr 0.05 "for the momentum encoder", which leaves the online
weights noisy); `top1_online` is the like-for-like number against baselines trained without weight
averaging. The momentum is per iteration: after a few hundred steps an EMA at 0.999 is still mostly its
initialisation, so short runs should lower `ema_momentum` or set `headline: online`.

Checkpoints: the EMA encoder, the EMA mix head, the online mix head and the Mix Block are submodules, so
`state_dict()` holds them. The momentum (and mask-loss weight) schedule is a pure function of the step,
which the engine passes to `set_progress` before every step, resumed runs included; so it needs no state.

Costs: per step a clean pass to `mask_layer`, an EMA forward plus an input-gradient-only backward, and two
online forward/backward passes: about 2.9× a vanilla step by the count of passes. Measured on CPU (ResNet-18,
64×3×32×32 and 32×3×224×224): 2.9× and 2.8–3.1× the time of a vanilla step, 1.2× its peak tensor memory; the
reference's single summed backward measured 2.6× and 2.9× the memory in the same setting.
"""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Any

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
from mixbench.methods.registry import register_method

HEADLINES = ("ema", "online")


def _unwrap(backbone: nn.Module) -> nn.Module:
    """The bare model behind a DistributedDataParallel wrapper, for attribute access."""
    return getattr(backbone, "module", backbone)


class MixBlock(nn.Module):
    """openmixup's PixelMixBlock as AutoMix configures it (embedded Gaussian attention, mask_mode "none_v_").

    `forward(features, lam, index, out_size)` returns the (N, 2, H, W) mask: channel 0 is the weight of
    sample i, channel 1 the weight of its partner index[i]; they sum to 1.
    """

    def __init__(self, in_channels: int, lam_concat: bool = False, reduction: int = 2):
        super().__init__()
        self.lam_concat = lam_concat
        channels = in_channels + int(lam_concat)
        self.inter_channels = max(in_channels // reduction, 1)
        self.value = nn.Conv2d(channels, 1, kernel_size=1)
        # One convolution embeds both the query (sample i) and the key (its partner), as in the reference.
        self.query = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        for conv in (self.value, self.query):
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor, lam: float, index: Tensor, out_size: tuple[int, int]) -> Tensor:
        # fp32 whatever the autocast: the reference forces it (softmax and sigmoid overflow in half precision).
        with torch.autocast(device_type=features.device.type, enabled=False):
            own = features.float()
            partner = own[index]
            n, _, h, w = own.shape
            if self.lam_concat:
                own = torch.cat([own, own.new_full((n, 1, h, w), lam)], dim=1)
                partner = torch.cat([partner, partner.new_full((n, 1, h, w), 1.0 - lam)], dim=1)
            value = self.value(partner).flatten(2).transpose(1, 2)  # (N, hw, 1)
            query = self.query(own).flatten(2).transpose(1, 2)  # (N, hw, C')
            key = self.query(partner).flatten(2)  # (N, C', hw)
            # For each location of sample i, attention over the locations of its partner.
            attention = torch.softmax(query @ key / self.inter_channels**0.5, dim=-1)
            logits = (attention @ value).view(n, 1, h, w)
            # Upsample the logits, then squash, as the reference does.
            partner_weight = torch.sigmoid(F.interpolate(logits, size=tuple(out_size), mode="nearest"))
            return torch.cat([1.0 - partner_weight, partner_weight], dim=1)


def mask_loss(mask: Tensor, lam: float, margin: float) -> Tensor:
    """relu(|1 - mean(mask[:, 1]) - λ| - margin): the batch-mean weight of the first sample within margin of λ.

    One mean over the whole batch, not per sample, as the reference ("L1" mask_loss_mode).
    """
    partner_share = mask[:, 1].float().mean()
    return F.relu((1.0 - partner_share - lam).abs() - margin)


def apply_mask(x: Tensor, mask: Tensor, index: Tensor) -> Tensor:
    """mask[:, 0]·x + mask[:, 1]·x[index], pixel by pixel."""
    return x * mask[:, 0:1] + x[index] * mask[:, 1:2]


def ema_momentum(step: int, total_steps: int, base: float, end: float, hold_fraction: float) -> float:
    """openmixup's CosineScheduleHook (warming_up "constant", adjust_scope [hold_fraction, 1]).

    `base` until step int(total_steps·hold_fraction), then end - (end - base)·(cos(π·step/total) + 1)/2. The
    cosine is of the whole run's progress, so it starts slightly above `base` where the hold ends.
    """
    if total_steps <= 0 or step < int(total_steps * hold_fraction):
        return base
    progress = min(step, total_steps) / total_steps
    return end - (end - base) * (math.cos(math.pi * progress) + 1) / 2


class _PooledHead(nn.Module):
    """An encoder evaluated through a separate head on its pooled features (the mix heads, for evaluation)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.train(encoder.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True))


def _pooled_width(net: nn.Module) -> int:
    """Width of `forward_head(..., pre_logits=True)`: the input of the model's classifier."""
    classifier = net.get_classifier()
    if isinstance(classifier, nn.Linear):
        return classifier.in_features
    return int(getattr(net, "head_hidden_size", None) or net.num_features)


@register_method
class AutoMix(Method):
    """AutoMix: a Mix Block learns the masks, trained through a momentum copy of the classifier."""

    name = "automix"
    version = 1
    lam_note = ("AutoMix's labels use the drawn λ, while the Mix Block's mask is only pulled towards it by the "
                "mask loss (the batch's mean share within mask_loss_margin of λ, not each sample's), so a mask's "
                "mean can differ from λ; a λ within lam_margin of 0 or 1 falls back to Mixup (a uniform mask). "
                "Without lam_concat (the CIFAR and Tiny-ImageNet cards) the Mix Block never sees λ, so its masks "
                "are the same at every λ.")

    def __init__(
        self,
        alpha: float = 2.0,
        mask_layer: int = 2,
        lam_concat: bool = False,
        mask_loss_weight: float = 0.1,
        mask_loss_margin: float = 0.1,
        mask_loss_anneal: bool = False,
        lam_margin: float = 0.08,
        ema_momentum: float = 0.999,
        ema_momentum_end: float = 0.999999,
        ema_hold_fraction: float = 0.1,
        mb_lr: float | None = None,
        mb_min_lr: float | None = None,
        mb_momentum: float | None = None,
        headline: str = "ema",
        eval_mix_heads: bool = False,
        label_smoothing: float = 0.0,
    ):
        super().__init__(label_smoothing=label_smoothing)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 for Beta(alpha, alpha); got {alpha}")
        if isinstance(mask_layer, bool) or not isinstance(mask_layer, int) or mask_layer < 0:
            raise ValueError(f"mask_layer must be a stage index >= 0 (ResNets 0..3, WRN 0..2); got {mask_layer!r}")
        if not 0.0 <= lam_margin < 0.5:
            raise ValueError(f"lam_margin must be in [0, 0.5) (0.08 in the reference); got {lam_margin}")
        if mask_loss_weight < 0 or mask_loss_margin < 0:
            raise ValueError(
                f"mask_loss_weight and mask_loss_margin must be >= 0; got {mask_loss_weight}, {mask_loss_margin}"
            )
        if not 0.0 <= ema_momentum <= ema_momentum_end <= 1.0:
            raise ValueError(
                f"need 0 <= ema_momentum <= ema_momentum_end <= 1; got {ema_momentum}, {ema_momentum_end}"
            )
        if not 0.0 <= ema_hold_fraction <= 1.0:
            raise ValueError(f"ema_hold_fraction must be in [0, 1]; got {ema_hold_fraction}")
        if mb_lr is not None and mb_lr <= 0:
            raise ValueError(f"mb_lr must be > 0 (or null: the suite's lr); got {mb_lr}")
        if mb_min_lr is not None and mb_min_lr < 0:
            raise ValueError(f"mb_min_lr must be >= 0 (or null: the suite's min_lr); got {mb_min_lr}")
        if mb_momentum is not None and not 0.0 <= mb_momentum < 1.0:
            raise ValueError(f"mb_momentum must be in [0, 1) (or null: the optimizer's); got {mb_momentum}")
        if headline not in HEADLINES:
            raise ValueError(f"headline must be 'ema' (the momentum encoder) or 'online'; got {headline!r}")
        self.alpha, self.mask_layer, self.lam_concat = float(alpha), mask_layer, bool(lam_concat)
        self.mask_loss_weight, self.mask_loss_margin = float(mask_loss_weight), float(mask_loss_margin)
        self.mask_loss_anneal, self.lam_margin = bool(mask_loss_anneal), float(lam_margin)
        self.ema_momentum, self.ema_momentum_end = float(ema_momentum), float(ema_momentum_end)
        self.ema_hold_fraction = float(ema_hold_fraction)
        self.mb_lr, self.mb_min_lr, self.mb_momentum = mb_lr, mb_min_lr, mb_momentum
        self.headline, self.eval_mix_heads = headline, bool(eval_mix_heads)
        # Where the schedules stand; set_progress moves them before every step.
        self.momentum = self.ema_momentum
        self.current_mask_loss_weight = self.mask_loss_weight

    # ---- construction ----------------------------------------------------------------------------------
    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        from mixbench.models import stage_channels

        super().setup(backbone, num_classes)
        net = _unwrap(backbone)
        try:
            channels = stage_channels(net, self.mask_layer)
        except ValueError as err:
            raise ValueError(f"automix mask_layer={self.mask_layer}: {err}; fix: set method.mask_layer") from None
        self.mix_block = MixBlock(channels, lam_concat=self.lam_concat)
        self.head_mix = nn.Linear(_pooled_width(net), num_classes)
        nn.init.normal_(self.head_mix.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.head_mix.bias)
        # The momentum encoder k: a copy of the backbone (its classifier is head_one_k) and of head_mix.
        self.ema_backbone = deepcopy(net)
        self.ema_head_mix = deepcopy(self.head_mix)
        for param in [*self.ema_backbone.parameters(), *self.ema_head_mix.parameters()]:
            param.requires_grad_(False)

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """head_mix trains like the backbone; the Mix Block gets its own group (lr, min_lr, SGD momentum)."""
        heads = {"params": list(self.head_mix.parameters()), "name": "automix_head_mix"}
        mix_block: dict[str, Any] = {"params": list(self.mix_block.parameters()), "name": "automix_mix_block"}
        # Unset keys fall back to the suite's optimizer lr and schedule min_lr (the CIFAR configs' one group).
        if self.mb_lr is not None:
            mix_block["lr"] = self.mb_lr
        if self.mb_min_lr is not None:
            mix_block["min_lr"] = self.mb_min_lr
        if self.mb_momentum is not None:
            mix_block["momentum"] = self.mb_momentum
        return [heads, mix_block]

    # ---- schedules -------------------------------------------------------------------------------------
    def set_progress(self, step: int, total_steps: int) -> None:
        self.momentum = ema_momentum(
            step, total_steps, self.ema_momentum, self.ema_momentum_end, self.ema_hold_fraction
        )
        weight = self.mask_loss_weight
        if self.mask_loss_anneal and total_steps > 0:
            weight *= (math.cos(math.pi * min(step, total_steps) / total_steps) + 1) / 2
        self.current_mask_loss_weight = weight

    # ---- the step --------------------------------------------------------------------------------------
    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Any]:
        """The step's random draws, in the reference's order: λ = (λ_mb, λ_bb), then π_bb, then π_mb."""
        lam_mb, lam_bb = (float(v) for v in sample_beta(self.alpha, 2, gen))
        index_bb = random_permutation(batch_size, gen)
        index_mb = random_permutation(batch_size, gen)
        return {"lam_mb": lam_mb, "lam_bb": lam_bb, "index_mb": index_mb, "index_bb": index_bb}

    def uses_mixup_fallback(self, lam_bb: float) -> bool:
        return lam_bb <= self.lam_margin or 1.0 - lam_bb <= self.lam_margin

    def backbone_mask(self, features: Tensor, lam: float, index: Tensor, out_size: tuple[int, int]) -> Tensor:
        """The detached mask that mixes the online encoder's input; a constant λ (plain Mixup) at the extremes."""
        if self.uses_mixup_fallback(lam):
            mask = features.new_empty((features.shape[0], 2, *out_size), dtype=torch.float32)
            mask[:, 0], mask[:, 1] = lam, 1.0 - lam
            return mask
        with torch.no_grad():
            return self.mix_block(features, lam, index, out_size)

    def mix_for_display(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator,
                        lam: float | None = None) -> MixedBatch:
        """The batch the online encoder trains on (the gallery's protocol); λ is the sampled λ_bb, or `lam`."""
        from mixbench.models import stage_features

        drawn = self.sample(x.shape[0], gen)
        lam, index = drawn["lam_bb"] if lam is None else float(lam), drawn["index_bb"].to(x.device)
        with torch.no_grad():
            features = stage_features(self.ema_backbone, x, self.mask_layer)
            mask = self.backbone_mask(features, lam, index, (x.shape[-2], x.shape[-1]))
        return MixedBatch(x=apply_mask(x, mask, index), y_a=y, y_b=y[index.to(y.device)],
                          lam=torch.tensor(lam, dtype=torch.float64), mask=mask[:, :1])

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        from mixbench.models import stage_features

        net = _unwrap(backbone)
        drawn = self.sample(x.shape[0], gen)
        lam_mb, lam_bb = drawn["lam_mb"], drawn["lam_bb"]
        index_mb, index_bb = drawn["index_mb"].to(x.device), drawn["index_bb"].to(x.device)
        out_size = (x.shape[-2], x.shape[-1])

        with torch.no_grad():  # the reference builds this graph and never uses it
            features = stage_features(self.ema_backbone, x, self.mask_layer)
        mask_bb = self.backbone_mask(features, lam_bb, index_bb, out_size)
        mask_mb = self.mix_block(features, lam_mb, index_mb, out_size)
        del features

        # Mix-Block branch: through the frozen EMA encoder (no no_grad: the gradient must reach the mask).
        pooled_k = self.ema_backbone.forward_head(
            self.ema_backbone.forward_features(apply_mask(x, mask_mb, index_mb)), pre_logits=True
        )
        loss_mix_k = mixed_cross_entropy(
            self.ema_head_mix(pooled_k), y, y[index_mb], lam_mb, self.label_smoothing
        )
        loss_mask = self.current_mask_loss_weight * mask_loss(mask_mb, lam_mb, self.mask_loss_margin)
        (loss_mix_k + loss_mask).backward()  # reaches only the Mix Block: nothing else here requires grad
        mask_mb = mask_mb.detach()
        del pooled_k

        # Backbone branch, one-hot: the backbone's own classifier on the clean batch (head_one_q).
        logits_one = backbone(x)
        loss_one_q = F.cross_entropy(logits_one.float(), y, label_smoothing=self.label_smoothing)
        loss_one_q.backward()
        del logits_one

        # Backbone branch, mixed: head_mix_q on the pooled features of the detached-mask mix.
        pooled_q = net.forward_head(net.forward_features(apply_mask(x, mask_bb, index_bb)), pre_logits=True)
        loss_mix_q = mixed_cross_entropy(self.head_mix(pooled_q), y, y[index_bb], lam_bb, self.label_smoothing)
        loss_mix_q.backward()
        del pooled_q

        losses = torch.stack([loss_mix_q.detach(), loss_one_q.detach(), loss_mix_k.detach(), loss_mask.detach()])
        realised = torch.stack([mask_mb[:, 0].mean(), mask_bb[:, 0].mean()])
        values = torch.cat([losses.float(), realised.float()]).tolist()  # one device sync for all the logs
        logs = {
            "lam_mb": lam_mb,
            "lam_bb": lam_bb,
            "loss_mix_q": values[0],
            "loss_one_q": values[1],
            "loss_mix_k": values[2],
            "loss_mask": values[3],
            "mask_mb_mean": values[4],  # realised share of sample i, to compare with lam_mb
            "mask_bb_mean": values[5],
            "mixup_fallback": float(self.uses_mixup_fallback(lam_bb)),
            "ema_momentum": self.momentum,
            "mask_loss_weight": self.current_mask_loss_weight,
        }
        return StepOutput(loss=losses.sum(), logs=logs, backward_done=True)

    @torch.no_grad()
    def after_step(self, backbone: nn.Module) -> None:
        """k <- m·k + (1-m)·q over the parameters of the encoder and both heads (BN buffers are not copied)."""
        net = _unwrap(backbone)
        ema = [*self.ema_backbone.parameters(), *self.ema_head_mix.parameters()]
        online = [*net.parameters(), *self.head_mix.parameters()]
        if len(ema) != len(online):
            raise RuntimeError(f"the EMA copy has {len(ema)} parameters but the online model {len(online)}")
        m = self.momentum
        torch._foreach_mul_(ema, m)
        torch._foreach_add_(ema, online, alpha=1.0 - m)

    # ---- evaluation and records ------------------------------------------------------------------------
    def eval_models(self, backbone: nn.Module) -> dict[str, nn.Module]:
        net = _unwrap(backbone)
        models = {"ema": self.ema_backbone, "online": net}
        if self.eval_mix_heads:
            models["ema_mix"] = _PooledHead(self.ema_backbone, self.ema_head_mix)
            models["online_mix"] = _PooledHead(net, self.head_mix)
        first = {self.headline: models.pop(self.headline)}
        return {**first, **models}

    def hparams(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "mask_layer": self.mask_layer,
            "lam_concat": self.lam_concat,
            "mask_loss_weight": self.mask_loss_weight,
            "mask_loss_margin": self.mask_loss_margin,
            "mask_loss_anneal": self.mask_loss_anneal,
            "lam_margin": self.lam_margin,
            "ema_momentum": self.ema_momentum,
            "ema_momentum_end": self.ema_momentum_end,
            "ema_hold_fraction": self.ema_hold_fraction,
            "mb_lr": self.mb_lr,
            "mb_min_lr": self.mb_min_lr,
            "mb_momentum": self.mb_momentum,
            "headline": self.headline,
            "eval_mix_heads": self.eval_mix_heads,
            "label_smoothing": self.label_smoothing,
        }

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        """The backbone must have stage `mask_layer`; built on the meta device, so no memory and no time."""
        from mixbench.models import create_backbone, stage_features

        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        with torch.device("meta"):
            try:
                model = create_backbone(backbone_name, num_classes=10, image_size=height)
            except Exception:  # a model that cannot be built on the meta device is checked when it runs
                return
            try:
                stage_features(model, torch.empty(1, 3, height, width), self.mask_layer)
            except ValueError as err:
                raise ValueError(
                    f"automix mask_layer={self.mask_layer} on {backbone_name}: {err}; fix: set method.mask_layer "
                    f"(openmixup: 2 for ResNets, 1 for WRN-28)"
                ) from None

"""RecursiveMix (Yang et al., "RecursiveMix: Mixed Learning with History", NeurIPS 2022).

The algorithm. The method keeps the previous step's (input, label, prediction) triplet: the *mixed* batch it trained
on, its soft targets and its logits. Each step draws a box whose area fraction is u ~ U(0, α) (side factor √u,
centre uniform over the image, half-extents `cut // 2`, clipped), shrinks the whole previous batch into the box
of the current one (sample i gets previous sample i, resized), and trains on

    targets = λ·onehot(y) + (1 - λ)·previous targets,   λ = 1 - box area / image area,

so old labels decay geometrically through the recursion. A consistency term asks the box region of the current
feature map to predict what the network said about the whole previous image: ROI-align of the last feature map
over the box (1×1 output) through a separate linear head `head_roi`, soft-target CE against softmax(previous
logits), weighted by ω·(1 - λ). The loss is CE(logits, targets) + ω·(1 - λ)·CE(head_roi(roi), softmax(prev)).
Then the history becomes this step's mixed input, targets and logits (detached).

How it matches the reference, implus/RecursiveMix-pytorch@ed381bf (`utils.py::recursive_mix`, `main.py::train`,
`models_*/resnet.py::forward(x, boxes)`, `loss/label_smooth_loss.py`): the same box geometry and λ; the resize
by `F.interpolate` (nearest, or bilinear with align_corners=True); `torchvision.ops.roi_align(output_size=1,
spatial_scale=feature width / image width, sampling_ratio=-1, aligned=True)` on the last feature map with the
box as (x1, y1, x2, y2); a separate `fc_roi` (share_fc off, as the README's commands); label smoothing as the
reference's `smooth_one_hot` (1 - s on the class, s/(K - 1) elsewhere); no ROI term while there is no history
or the box is empty (λ = 1).

Deliberate deviations:
* **History across epochs.** The reference resets the history at the start of every epoch (`old_inputs = None`
  inside `train()`), so each epoch's first batch is unmixed. mixbench's method interface has no epoch boundary,
  so the history carries over and only the trial's first step is unmixed: one batch per epoch differs (1 of
  500 steps at CIFAR size, batch 100).
* **The history is checkpointed.** It is the module's extra state (`get_extra_state`: tensors only, loadable with
  `torch.load(weights_only=True)`), so a resumed trial continues with the exact triplet an uninterrupted one has.
  With several processes each keeps its own history (its own share of the batch, as the reference's per-GPU
  one) and the checkpoint holds rank 0's: a multi-process resume restores rank 0's history on every process,
  sound but not bit-exact (as per-process BatchNorm statistics).
* **An empty box side is skipped.** A box with one zero side (cut ≤ 1 px on that axis) makes the reference's
  `F.interpolate` fail; here nothing is pasted and λ = 1, as for a (0, 0) box.
* **A smaller previous batch is repeated** to the current size (the reference slices `old_x[:bs]` and would fail
  if the previous batch were the smaller one; mixbench drops the last partial batch, so it does not happen in
  trials).
* The forward runs on the module inside a DDP wrapper (the feature map is needed), so the method runs its own
  backward and returns `backward_done=True`; the engine then averages the gradients.
* The ROI feature is taken on `forward_features` (the map before timm's pooling head), so a backbone needs a
  4-D feature map: CNNs (ResNet, ResNeXt, WRN, ConvNeXt, EfficientNet, ...), not ViTs; `check_input` says so.

Cost: the step's own forward/backward, one copy of the batch kept between steps, the resize, one ROI-align
and one linear layer: about a CutMix step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.methods.base import Method, MixedBatch, StepOutput, random_permutation, soft_cross_entropy
from mixbench.methods.cutmix import box_mask
from mixbench.methods.registry import register_method

INTERPOLATIONS = ("nearest", "bilinear")


def _unwrap(backbone: nn.Module) -> nn.Module:
    """The bare model behind a DistributedDataParallel wrapper, for attribute access."""
    return getattr(backbone, "module", backbone)


def history_box(area: Tensor, center: Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """The clipped box (y1, y2, x1, x2) for an area fraction u and a centre in [0, 1)²: sides int(H·√u), int(W·√u)."""
    r = float(torch.sqrt(area.to(torch.float64)))
    cut_h, cut_w = int(height * r), int(width * r)
    cy, cx = int(float(center[0]) * height), int(float(center[1]) * width)  # uniform integers in [0, H), [0, W)
    y1, y2 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    x1, x2 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return y1, y2, x1, x2


def recursive_mix(x: Tensor, previous: Tensor, box: tuple[int, int, int, int], interpolation: str) -> Tensor:
    """`x` with the whole previous batch resized into `box` (sample i gets previous sample i); `x` is not modified."""
    y1, y2, x1, x2 = box
    out = x.clone()
    if y2 > y1 and x2 > x1:
        align = None if interpolation == "nearest" else True
        resized = F.interpolate(previous.to(x.dtype), size=(y2 - y1, x2 - x1), mode=interpolation,
                                align_corners=align)
        out[:, :, y1:y2, x1:x2] = resized
    return out


def box_lam(box: tuple[int, int, int, int], height: int, width: int) -> Tensor:
    """λ = 1 - box area / image area (float64)."""
    y1, y2, x1, x2 = box
    return torch.tensor(1.0 - (y2 - y1) * (x2 - x1) / (height * width), dtype=torch.float64)


def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """The reference's targets: 1 - s on the class, s / (K - 1) elsewhere (s = 0: one-hot)."""
    targets = torch.full((y.shape[0], num_classes), smoothing / max(num_classes - 1, 1), device=y.device)
    return targets.scatter_(1, y.view(-1, 1), 1.0 - smoothing)


def repeat_to(t: Tensor, n: int) -> Tensor:
    """The first `n` rows of `t`, cycling through `t` if it has fewer."""
    if t.shape[0] >= n:
        return t[:n]
    return t[torch.arange(n, device=t.device) % t.shape[0]]


def roi_features(features: Tensor, box: tuple[int, int, int, int], image_width: int) -> Tensor:
    """ROI-align of `features` (N, C, h, w) over the same pixel box in every sample, 1×1 output: (N, C)."""
    from torchvision.ops import roi_align

    y1, y2, x1, x2 = box
    n = features.shape[0]
    rois = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32, device=features.device).expand(n, 4)
    rois = torch.cat([torch.arange(n, dtype=torch.float32, device=features.device)[:, None], rois], dim=1)
    pooled = roi_align(features.float(), rois, output_size=(1, 1), spatial_scale=features.shape[-1] / image_width,
                       sampling_ratio=-1, aligned=True)
    return pooled.flatten(1)


@register_method
class RecursiveMix(Method):
    """Paste the previous (mixed) batch, resized, into a box; recursive soft labels and an ROI consistency loss."""

    name = "recursivemix"
    mixes_with_model = False  # the gallery's picture of a draw needs no network: none is trained for it
    version = 1
    paper_name = "RecursiveMix"
    display_order = 100
    cost_multiplier = 1.05
    cost_source = "a CutMix-like step plus one resize, one ROI-align and one linear layer; not published on GPU"
    eval_passes = 1

    def __init__(self, alpha: float = 0.5, omega: float = 0.5, interpolation: str = "nearest",
                 label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha (the largest box area fraction, u ~ U(0, alpha)) must be in (0, 1]; got {alpha}")
        if omega < 0:
            raise ValueError(f"omega (weight of the ROI consistency loss) must be >= 0; got {omega}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
        self.alpha, self.omega, self.interpolation = float(alpha), float(omega), interpolation
        self.history: dict[str, Tensor] = {}  # "x", "targets", "logits" of the previous step; empty at the start

    # ---- construction and state ------------------------------------------------------------------------
    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        super().setup(backbone, num_classes)
        net = _unwrap(backbone)
        self.head_roi = nn.Linear(int(net.num_features), num_classes)  # the reference's fc_roi, default init
        self.history = {}

    def get_extra_state(self) -> dict[str, Tensor]:
        """The history goes into every checkpoint as plain tensors (weights_only-loadable)."""
        return dict(self.history)

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        if set(state) not in (set(), {"x", "targets", "logits"}):
            raise ValueError(f"recursivemix history must hold x, targets and logits; the checkpoint has "
                             f"{sorted(state)}")
        self.history = dict(state)

    # ---- the draws and the deterministic core -----------------------------------------------------------
    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        """The box: area fraction u ~ U(0, alpha) and its centre (row, column fractions)."""
        area = torch.rand((), generator=gen, dtype=torch.float64) * self.alpha
        center = torch.rand(2, generator=gen, dtype=torch.float64)
        return {"area": area, "center": center}

    def mix(self, x: Tensor, y: Tensor, history: dict[str, Tensor], area: Tensor, center: Tensor
            ) -> tuple[Tensor, Tensor, Tensor, tuple[int, int, int, int]]:
        """(mixed batch, soft targets, λ, box) for the current batch and a history (empty: no mixing)."""
        height, width = x.shape[-2:]
        own = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        if not history:
            return x, own, torch.tensor(1.0, dtype=torch.float64), (0, 0, 0, 0)
        box = history_box(area, center, height, width)
        lam = box_lam(box, height, width)
        n = x.shape[0]
        mixed = recursive_mix(x, repeat_to(history["x"], n), box, self.interpolation)
        w = float(lam)
        targets = w * own + (1 - w) * repeat_to(history["targets"], n).to(own)
        return mixed, targets, lam, box

    # ---- the step ---------------------------------------------------------------------------------------
    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        net = _unwrap(backbone)
        drawn = self.sample(x.shape[0], gen)
        mixed, targets, lam, box = self.mix(x, y, self.history, **drawn)
        features = net.forward_features(mixed)
        logits = net.forward_head(features)
        loss_mix = soft_cross_entropy(logits, targets)
        loss = loss_mix
        loss_roi = torch.zeros((), device=x.device)
        if float(lam) < 1.0:
            roi_logits = self.head_roi(roi_features(features, box, x.shape[-1]))
            previous = torch.softmax(repeat_to(self.history["logits"], x.shape[0]).float(), dim=-1)
            loss_roi = soft_cross_entropy(roi_logits, previous)
            loss = loss + self.omega * (1.0 - float(lam)) * loss_roi
        # The forward went around a DDP wrapper (the feature map is needed), so the backward is run here.
        loss.backward()
        self.history = {"x": mixed.detach(), "targets": targets.detach(), "logits": logits.detach()}
        logs = {"lam": float(lam), "loss_mix": float(loss_mix.detach()), "loss_roi": float(loss_roi.detach())}
        return StepOutput(loss=loss.detach(), logs=logs, backward_done=True)

    def mix_for_display(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> MixedBatch:
        """One step as training makes it, with the batch itself under a random permutation as the previous batch.

        The method's own history is left alone; the partner shown for sample i is the image shrunk into its box.
        """
        index = random_permutation(x.shape[0], gen)
        stand_in = {"x": x[index], "targets": smooth_one_hot(y[index], self.num_classes, 0.0),
                    "logits": torch.zeros(x.shape[0], self.num_classes)}
        mixed, _, lam, box = self.mix(x, y, stand_in, **self.sample(x.shape[0], gen))
        height, width = x.shape[-2:]
        mask = box_mask(torch.tensor(box), height, width, x.device).expand(x.shape[0], -1, -1, -1)
        return MixedBatch(x=mixed, y_a=y, y_b=y[index], lam=lam, mask=mask)

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        """The backbone's `forward_features` must be a 4-D map; run on the meta device, so no memory and no time."""
        from mixbench.models import create_backbone

        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        with torch.device("meta"):
            try:
                model = create_backbone(backbone_name, num_classes=10, image_size=height)
                features = model.forward_features(torch.empty(1, 3, height, width))
            except Exception:  # a model that cannot run on the meta device is checked when it runs
                return
        if features.dim() != 4 or features.shape[1] != getattr(model, "num_features", None):
            raise ValueError(
                f"recursivemix pools the box region of {backbone_name}'s last feature map, but its forward_features "
                f"gives shape {tuple(features.shape)}, not (N, num_features, h, w); fix: use a CNN backbone "
                f"(ResNet, ResNeXt, WRN, ConvNeXt, ...)"
            )

"""Backbones: every timm model by name, plus the CIFAR networks the published mixup numbers use.

Importing this module registers into timm (so `timm.create_model("wrn28_8")` works anywhere):

* `resnet18_cifar`, `resnet34_cifar`, `resnet50_cifar`, `resnext50_32x4d_cifar`: timm's ResNet with
  openmixup's CIFAR stem (3×3 stride-1 conv, BN, ReLU, no max-pool), so a 32-px image ends at 4×4.
* `resnet_tiny_cifar`: one BasicBlock per stage at half width; a fast backbone for smoke tests.
* `wrn28_8`, `wrn28_10`: openmixup's pre-activation WideResNet-28-k.

None of them has pretrained weights; their configs name no url, so timm never tries to fetch anything.
Their configs describe CIFAR-100 (32 px, 100 classes: the default `num_classes`).

Stage index convention (`stage_features`, `stage_channels`, and methods' `mask_layer`), openmixup's
`out_indices`: `stage` s is the s-th residual stage, i.e. the s-th `feature_info` entry after any stem tap.
ResNet/ResNeXt (timm's and ours): 0..3 = layer1..layer4 (timm's index 0 is the stem `act1`, so s -> s + 1);
WideResNet: 0..2; ConvNeXt: 0..3 = stages.0..3; ViT/DeiT: a transformer block index 0..depth-1, the map
being that block's patch tokens (class/distillation/register tokens dropped) on the h×w patch grid.
"""

from __future__ import annotations

import difflib
import re

import timm
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, get_pretrained_cfg, register_model
from timm.models._features import feature_take_indices
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

# `register_model` appends each registered name to the module's `__all__`; start it with the public API.
__all__ = [
    "CifarResNet", "WideResNet", "check_backbone_name", "create_backbone", "list_backbones", "num_stages",
    "stage_channels", "stage_features", "stage_module",
]


def _cfg(pool_size: tuple[int, int] = (4, 4)) -> dict:
    # No url and no hf_hub_id: timm sees no weights, so it never downloads (pretrained=True raises instead).
    return {
        "url": "", "num_classes": 100, "input_size": (3, 32, 32), "pool_size": pool_size, "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": (0.5071, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2762),
        "first_conv": "conv1", "classifier": "fc",
    }


# timm's `register_model` looks up the entrypoint's pretrained cfg in its module's `default_cfgs`.
default_cfgs = {
    **{name: _cfg() for name in (
        "resnet18_cifar", "resnet34_cifar", "resnet50_cifar", "resnext50_32x4d_cifar", "resnet_tiny_cifar")},
    "wrn28_8": _cfg(pool_size=(8, 8)),
    "wrn28_10": _cfg(pool_size=(8, 8)),
}


class CifarResNet(ResNet):
    """timm's ResNet with openmixup's ResNet_CIFAR stem: 3×3 stride-1 conv (no bias), BN, ReLU, no max-pool.

    Everything else is timm's, so forward_features/forward_head/forward_intermediates keep working.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dd = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        self.conv1 = nn.Conv2d(self.in_chans, self.bn1.num_features, 3, padding=1, bias=False, **dd)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # The stem lost its stride 2, and every stage also the max-pool's.
        self.feature_info[0]["reduction"] //= 2
        for info in self.feature_info[1:]:
            info["reduction"] //= 4


def _cifar_resnet(variant: str, pretrained: bool, **kwargs) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _cifar_resnet("resnet18_cifar", pretrained, **dict(block=BasicBlock, layers=(2, 2, 2, 2)) | kwargs)


@register_model
def resnet34_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _cifar_resnet("resnet34_cifar", pretrained, **dict(block=BasicBlock, layers=(3, 4, 6, 3)) | kwargs)


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _cifar_resnet("resnet50_cifar", pretrained, **dict(block=Bottleneck, layers=(3, 4, 6, 3)) | kwargs)


@register_model
def resnext50_32x4d_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    args = dict(block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4)
    return _cifar_resnet("resnext50_32x4d_cifar", pretrained, **args | kwargs)


@register_model
def resnet_tiny_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-10 at half width (timm keeps the 64-channel stem): 4-5x faster than resnet18_cifar on CPU."""
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(32, 64, 128, 256))
    return _cifar_resnet("resnet_tiny_cifar", pretrained, **args | kwargs)


class WideBlock(nn.Module):
    """Pre-activation BasicBlock: BN -> LeakyReLU(0.1) -> conv3×3, twice, plus the shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, drop_rate: float, activate_shortcut: bool,
                 norm: type[nn.Module]):
        super().__init__()
        self.bn1, self.act1 = norm(in_chs), nn.LeakyReLU(0.1)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, padding=1)
        self.bn2, self.act2 = norm(out_chs), nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1)
        project = stride != 1 or in_chs != out_chs
        self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride) if project else nn.Identity()
        # The stem conv has no BN-act of its own, so the very first block projects the activated input.
        self.activate_shortcut = activate_shortcut and project

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out if self.activate_shortcut else x)
        out = self.conv2(self.drop(self.act2(self.bn2(self.conv1(out)))))
        return out + shortcut


class WideResNet(nn.Module):
    """openmixup's WideResNet for CIFAR with timm's model interface.

    depth = 6n + 4 (n blocks per stage); a 16-channel 3×3 stem conv, three stages of 16k/32k/64k channels at
    strides 1, 2, 2, then BN + LeakyReLU(0.1), global average pool and a linear head. As in openmixup, convs
    have biases and BN uses momentum 0.001 / eps 1e-3 (TensorFlow's 0.999 decay). That is a slow running
    average: for a run of a few hundred steps, pass bn_momentum=0.1 or the eval statistics lag behind.
    `drop_rate` is the WRN paper's dropout between a block's two convs, not timm's head dropout.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 8, num_classes: int = 100, in_chans: int = 3,
                 drop_rate: float = 0.0, global_pool: str = "avg", bn_momentum: float = 0.001):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4; got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]

        def norm(chs: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(chs, eps=1e-3, momentum=bn_momentum)

        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1)
        stages, in_chs = [], 16
        for i, (chs, stride) in enumerate(zip(widths, (1, 2, 2), strict=True)):
            blocks = [WideBlock(in_chs if j == 0 else chs, chs, stride if j == 0 else 1, drop_rate,
                                activate_shortcut=i == 0, norm=norm) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            in_chs = chs
        self.stages = nn.Sequential(*stages)
        self.norm, self.act = norm(in_chs), nn.LeakyReLU(0.1)
        self.num_features = self.head_hidden_size = in_chs
        # The last tap is after the final BN-act, as openmixup's out_indices=(2,) and forward_features give.
        self.feature_info = [dict(num_chs=c, reduction=r, module=m) for c, r, m in
                             zip(widths, (1, 2, 4), ("stages.0", "stages.1", "act"), strict=True)]
        self.global_pool, self.fc = create_classifier(in_chs, num_classes, pool_type=global_pool)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu", a=0.1)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=pool)

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's contract: `indices` index `feature_info` (an int n: the last n); `stop_early` skips the rest.

        `norm` is accepted for timm's signature: the last tap is already after the final BN-act.
        """
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        take, max_index = feature_take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        x = self.conv1(x)
        intermediates = []
        for i, stage in enumerate(self.stages[: max_index + 1] if stop_early else self.stages):
            x = stage(x)
            if i == last:
                x = self.act(self.norm(x))
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.stages(self.conv1(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _wide_resnet(variant: str, pretrained: bool, **kwargs) -> WideResNet:
    return build_model_with_cfg(WideResNet, variant, pretrained, feature_cfg=dict(flatten_sequential=True),
                                **kwargs)


@register_model
def wrn28_8(pretrained: bool = False, **kwargs) -> WideResNet:
    return _wide_resnet("wrn28_8", pretrained, **dict(depth=28, widen_factor=8) | kwargs)


@register_model
def wrn28_10(pretrained: bool = False, **kwargs) -> WideResNet:
    return _wide_resnet("wrn28_10", pretrained, **dict(depth=28, widen_factor=10) | kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    """Every backbone name matching the glob `pattern`: timm's models, ours included (they are registered)."""
    return timm.list_models(pattern)


def check_backbone_name(name: str) -> None:
    """Raise a one-line ValueError, with the closest names, unless timm can build `name`."""
    if timm.is_model(name) or ":" in name:  # "resnet18.a1_in1k" and "hf-hub:org/repo" are timm's too
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown backbone {name!r}{hint} (any timm model name works: `mixbench ls backbones`)")


def create_backbone(name: str, num_classes: int, image_size: int | None = None, in_chans: int = 3,
                    pretrained: bool = False, **kwargs) -> nn.Module:
    """Build any timm model (ours included) with a `num_classes` head for `in_chans`-channel images.

    Models with a fixed input size (ViT, DeiT, Swin, ...) are built for `image_size`, so a DeiT runs at 32 or
    64 px (it then has (image_size / patch)² tokens); other models take any size and ignore it.
    `pretrained=True` passes through to timm: a model without weights (ours) raises at once; timm models
    are fetched into the Hugging Face cache, or read from it. On a machine without network set
    HF_HUB_OFFLINE=1 so that weights missing from the cache fail at once instead of waiting on the network.
    """
    check_backbone_name(name)
    cfg = get_pretrained_cfg(name) if timm.is_model(name) else None
    if image_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs.setdefault("img_size", image_size)
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


# Leading feature_info taps that are the stem rather than a stage (ResNet, MobileNetV3, RegNet/ByobNet,
# ResNetV2, CspNet, GhostNet, DenseNet).
_STEM_TAP = re.compile(r"act1|bn1|conv_stem|stem(\.\w+)?|features\.norm0")


def _stage_taps(model: nn.Module) -> list[int]:
    """The feature_info indices of the model's stages: `stage` s is feature_info[_stage_taps(model)[s]]."""
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not hasattr(model, "forward_intermediates"):
        raise ValueError(f"{_name(model)} has no feature_info/forward_intermediates, so no stage features")
    skip = 1 if info and _STEM_TAP.fullmatch(info[0]["module"]) else 0
    return list(range(skip, len(info)))


def _name(model: nn.Module) -> str:
    return getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__


def _stage_index(model: nn.Module, stage: int) -> int:
    taps = _stage_taps(model)
    if not 0 <= stage < len(taps):
        raise ValueError(f"{_name(model)} has stages 0..{len(taps) - 1}; got {stage}")
    return taps[stage]


def num_stages(model: nn.Module) -> int:
    """How many stages `stage_features` and `stage_module` know for this model (ViTs: its depth)."""
    return len(_stage_taps(model))


def stage_module(model: nn.Module, stage: int) -> tuple[str, nn.Module]:
    """The submodule whose output is stage `stage` (its `feature_info` module), with its name.

    A forward hook on it sees the stage's output inside an ordinary forward pass (ViTs: the whole token
    sequence of block `stage`, prefix tokens included), which is how a method can change a hidden stage.
    """
    name = model.feature_info[_stage_index(model, stage)]["module"]
    return name, model.get_submodule(name)


def stage_channels(model: nn.Module, stage: int) -> int:
    """Channels of `stage_features(model, x, stage)`."""
    return model.feature_info[_stage_index(model, stage)]["num_chs"]


def stage_features(model: nn.Module, x: Tensor, stage: int) -> Tensor:
    """The (N, C, h, w) output of residual stage `stage` (ViTs: of block `stage`, patch tokens on their grid).

    Runs the model only up to that stage. Pass the bare model, not a DistributedDataParallel wrapper.
    """
    index = _stage_index(model, stage)
    (feat,) = model.forward_intermediates(x, indices=[index], stop_early=True, intermediates_only=True)
    return feat

"""Backbones: the CIFAR networks registered into timm, create_backbone, and stage features."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from mixbench.models import (
    check_backbone_name,
    create_backbone,
    list_backbones,
    stage_channels,
    stage_features,
)

CIFAR_RESNETS = ["resnet18_cifar", "resnet34_cifar", "resnet50_cifar", "resnext50_32x4d_cifar", "resnet_tiny_cifar"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def wrn_param_count(depth: int, k: int, num_classes: int) -> int:
    """WRN-depth-k as openmixup builds it: convs with biases, BN (weight, bias), pre-activation blocks."""
    n = (depth - 4) // 6

    def conv(cin: int, cout: int, ks: int) -> int:
        return cin * cout * ks * ks + cout

    total, cin = conv(3, 16, 3), 16
    for c in (16 * k, 32 * k, 64 * k):
        for j in range(n):
            cin_j = cin if j == 0 else c
            total += 2 * cin_j + conv(cin_j, c, 3) + 2 * c + conv(c, c, 3)
            total += conv(cin_j, c, 1) if j == 0 else 0  # every stage's first block changes width
        cin = c
    return total + 2 * cin + cin * num_classes + num_classes


# --- CIFAR ResNets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_cifar_resnet_stem_is_3x3_stride_1_without_maxpool(name):
    model = timm.create_model(name, num_classes=10)
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.bias) == ((3, 3), (1, 1), None)
    assert model.conv1.out_channels == 64 and isinstance(model.maxpool, nn.Identity)
    assert [info["reduction"] for info in model.feature_info] == [1, 1, 2, 4, 8]


@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet50_cifar", "resnet_tiny_cifar"])
def test_cifar_resnet_feature_info_matches_real_shapes(name):
    model = timm.create_model(name, num_classes=10).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)
    assert [f.shape[1:] for f in feats] == [
        (info["num_chs"], 32 // info["reduction"], 32 // info["reduction"]) for info in model.feature_info
    ]


def test_resnet18_cifar_ends_at_4x4_on_32px():
    model = timm.create_model("resnet18_cifar", num_classes=100).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    assert feats.shape == (2, 512, 4, 4) and model.forward_head(feats).shape == (2, 100)
    assert n_params(model) == n_params(timm.create_model("resnet18", num_classes=100)) - 64 * 3 * (49 - 9)


# --- WideResNet -------------------------------------------------------------------------------------------


def test_wrn28_8_parameter_count():
    model = timm.create_model("wrn28_8", num_classes=100)
    assert n_params(model) == wrn_param_count(28, 8, 100) == 23_409_092


def test_wrn28_10_parameter_count():
    assert n_params(create_backbone("wrn28_10", num_classes=10)) == wrn_param_count(28, 10, 10)


def test_wrn_structure():
    model = create_backbone("wrn28_8", num_classes=100)
    assert [len(s) for s in model.stages] == [4, 4, 4]
    assert [s[0].conv1.stride for s in model.stages] == [(1, 1), (2, 2), (2, 2)]
    assert [s[-1].conv2.out_channels for s in model.stages] == [128, 256, 512]
    block = model.stages[1][1]
    assert isinstance(block.bn1, nn.BatchNorm2d) and block.act1.negative_slope == 0.1  # pre-activation
    assert isinstance(block.drop, nn.Identity)  # dropout 0 by default
    assert model.num_features == 512 and model.get_classifier() is model.fc


def test_wrn_forward_head_features_and_reset_classifier():
    model = create_backbone("wrn28_8", num_classes=100).eval()
    x = torch.randn(2, 3, 16, 16)  # any size works; 16 px keeps the test fast
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        final, inters = model.forward_intermediates(x)
        assert feats.shape == (2, 512, 4, 4) and logits.shape == (2, 100)
        torch.testing.assert_close(model.forward_head(feats), logits)
        torch.testing.assert_close(final, feats)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 512)
        assert [f.shape[1:] for f in inters] == [(128, 16, 16), (256, 8, 8), (512, 4, 4)]
        model.reset_classifier(7)
        assert model.forward_head(feats).shape == (2, 7) and model.num_classes == 7


def test_wrn_features_only():
    model = timm.create_model("wrn28_8", features_only=True, out_indices=(1, 2)).eval()
    with torch.no_grad():
        assert [f.shape[1:] for f in model(torch.randn(1, 3, 16, 16))] == [(256, 8, 8), (512, 4, 4)]


# --- stage features ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size", "stage", "shape"), [
    ("resnet18_cifar", 32, 2, (256, 8, 8)),
    ("resnet18", 64, 2, (256, 4, 4)),
    ("resnet18", 224, 2, (256, 14, 14)),
    ("resnext50_32x4d", 64, 1, (512, 8, 8)),
    ("wrn28_8", 32, 1, (256, 16, 16)),
    ("convnext_atto", 64, 2, (160, 4, 4)),
    ("test_resnet", 64, 3, (96, 2, 2)),
    ("test_convnext", 64, 0, (24, 16, 16)),
    ("test_vit", 32, 5, (64, 2, 2)),
    ("vit_tiny_patch16_224", 64, 3, (192, 4, 4)),
    ("deit_tiny_patch16_224", 32, 11, (192, 2, 2)),
])
def test_stage_features_shape(name, size, stage, shape):
    model = create_backbone(name, num_classes=10, image_size=size).eval()
    with torch.no_grad():
        feat = stage_features(model, torch.randn(1, 3, size, size), stage)
    assert feat.shape == (1, *shape) and stage_channels(model, stage) == shape[0]


def _tokens_to_map(model):
    def to_map(tokens):
        n, _, c = tokens.shape
        h, w = model.patch_embed.grid_size
        return tokens[:, model.num_prefix_tokens:].transpose(1, 2).reshape(n, c, h, w)
    return to_map


@pytest.mark.parametrize(("name", "size", "stage", "module", "later"), [
    ("resnet18_cifar", 32, 2, "layer3", "layer4"),
    ("resnet18", 64, 0, "layer1", "layer2"),
    ("wrn28_8", 16, 1, "stages.1", "stages.2"),
    ("convnext_atto", 64, 2, "stages.2", "stages.3"),
    ("deit_tiny_distilled_patch16_224", 64, 4, "blocks.4", "blocks.5"),
])
def test_stage_features_is_the_true_map_and_stops_early(name, size, stage, module, later):
    model = create_backbone(name, num_classes=10, image_size=size).eval()
    seen = {}
    model.get_submodule(module).register_forward_hook(lambda m, i, o: seen.__setitem__("map", o))
    model.get_submodule(later).register_forward_hook(lambda m, i, o: seen.__setitem__("later", True))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        model(x)
        expected = seen.pop("map")
        if expected.ndim == 3:  # ViT tokens: drop class/distillation tokens, lay the rest on the patch grid
            expected = _tokens_to_map(model)(expected)
        del seen["later"]
        feat = stage_features(model, x, stage)
    torch.testing.assert_close(feat, expected)
    assert "later" not in seen  # stop_early: nothing after the stage ran


def test_stage_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^resnet18 has stages 0\.\.3; got 5$"):
        stage_features(timm.create_model("resnet18"), torch.randn(1, 3, 32, 32), 5)
    with pytest.raises(ValueError, match=r"wrn28_8 has stages 0\.\.2; got 3"):
        stage_channels(create_backbone("wrn28_8", num_classes=10), 3)
    with pytest.raises(ValueError, match=r"test_vit has stages 0\.\.5; got -1"):
        stage_channels(create_backbone("test_vit", num_classes=10), -1)


# --- create_backbone / names ------------------------------------------------------------------------------


def test_unknown_backbone_names_close_matches():
    msg = (r"^unknown backbone 'resnet81'; did you mean resnet18, resnet61q, resnet51q\? "
           r"\(any timm model name works: `mixbench ls backbones`\)$")
    with pytest.raises(ValueError, match=msg):
        create_backbone("resnet81", num_classes=10)
    with pytest.raises(ValueError, match=r"did you mean resnet18_cifar"):
        check_backbone_name("resnet18_cifr")
    with pytest.raises(ValueError, match=r"^unknown backbone 'xyzzy' \(any timm"):
        check_backbone_name("xyzzy")
    check_backbone_name("resnet18.a1_in1k")  # a pretrained tag is a timm name too


def test_in_chans_and_image_size():
    x = torch.randn(2, 1, 28, 28)
    assert create_backbone("resnet18_cifar", num_classes=10, in_chans=1)(x).shape == (2, 10)
    vit = create_backbone("vit_tiny_patch16_224", num_classes=10, image_size=32, in_chans=1)
    assert vit.patch_embed.img_size == (32, 32) and vit(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    cnn = create_backbone("test_convnext", num_classes=3, image_size=32, drop_path_rate=0.1)  # kwargs pass on
    assert cnn(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_our_models_have_no_weights_to_fetch():
    for name in ("resnet18_cifar", "wrn28_8"):
        assert not timm.models.get_pretrained_cfg(name).has_weights
    with pytest.raises(RuntimeError, match="No pretrained weights exist for resnet_tiny_cifar"):
        create_backbone("resnet_tiny_cifar", num_classes=10, pretrained=True)


def test_list_backbones():
    ours = list_backbones("*cifar*") + list_backbones("wrn*")
    assert set(ours) >= {*CIFAR_RESNETS, "wrn28_8", "wrn28_10"}
    everything = list_backbones()
    assert {"resnet18", "deit_tiny_patch16_224", "wrn28_8"} <= set(everything) and len(everything) > 1000

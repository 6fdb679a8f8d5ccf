"""TransMix: CutMix labels re-weighted by the last block's class-token attention, on timm ViTs only."""

from __future__ import annotations

import pytest
import torch
from test_cards import test_card_matches_the_method as card_matches_the_method
from torch import nn
from trial_configs import synthetic_trial

from mixbench.check import method_problem
from mixbench.gallery import show_method
from mixbench.methods import create_method
from mixbench.methods.transmix import cls_attention_from_qkv, partner_cells, transmix_lam
from mixbench.models import create_backbone


def vit():
    torch.manual_seed(0)
    return create_backbone("test_vit", num_classes=10, image_size=64).eval()  # 4×4 patches of 16 px


def batch(n: int = 4, size: int = 64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10


def test_class_attention_equals_the_map_of_timms_unfused_attention():
    net, (x, _) = vit(), batch()
    method = create_method("transmix")
    method.setup(net, 10)
    with torch.no_grad():
        _, ours, grid = method.forward_with_attention(net, x)  # fused attention: the map is never formed
        attn = net.blocks[-1].attn
        attn.fused_attn = False  # timm's own path forms softmax(q·kᵀ·scale); its dropout sees the map
        seen = {}
        handle = attn.attn_drop.register_forward_hook(lambda m, args, out: seen.setdefault("map", args[0]))
        net(x)
        handle.remove()
    # The official patched timm: attn[:, :, 0, 1:] (class-token row, patch columns), mean over the heads.
    torch.testing.assert_close(ours, seen["map"][:, :, 0, 1:].mean(dim=1), rtol=0, atol=1e-6)
    assert grid == (4, 4)


def reference_openmixup_lam(mask_box: torch.Tensor, attn_map: torch.Tensor, patch_shape, lam0: float, ratio=0.5):
    """openmixup augments/transmix.py (non-dist branch): mask 1 inside the box, attn (N, heads, T, T)."""
    b = attn_map.shape[0]
    mask_ = nn.Upsample(size=patch_shape)(mask_box).view(b, -1).int()
    attn_ = torch.mean(attn_map[:, :, 0, 1:], dim=1)
    w1, w2 = torch.sum(mask_ * attn_, dim=1), torch.sum((1 - mask_) * attn_, dim=1)
    return lam0 * ratio + (w2 / (w1 + w2)) * (1 - ratio)


def reference_official_partner_weight(box, image_hw, attn_cls: torch.Tensor):
    """Beckschen/TransMix transmix_label: the weight of the pasted image y2, lam = (lam0 + lam1) / 2."""
    (yl, yh, xl, xh), (h, w) = box, image_hw
    lam0 = (yh - yl) * (xh - xl) / (h * w)
    mask = torch.zeros(h, w)
    mask[yl:yh, xl:xh] = 1
    side = int(attn_cls.shape[1] ** 0.5)
    mask = nn.Upsample(size=side)(mask[None, None]).int().view(1, -1).repeat(len(attn_cls), 1)
    w1, w2 = torch.sum((1 - mask) * attn_cls, dim=1), torch.sum(mask * attn_cls, dim=1)
    return (lam0 + w2 / (w1 + w2)) / 2


def test_lambda_replays_both_references_for_a_fixed_box_and_attention():
    g = torch.Generator().manual_seed(3)
    n, heads, grid, size = 5, 3, (4, 4), 64
    attn_map = torch.softmax(torch.randn(n, heads, 17, 17, generator=g, dtype=torch.float64), dim=-1)
    box = (10, 47, 3, 30)  # (y1, y2, x1, x2), patch-unaligned
    keep = torch.ones(1, 1, size, size)
    keep[:, :, box[0]:box[1], box[2]:box[3]] = 0
    lam_area = torch.tensor(1 - (37 * 27) / size**2, dtype=torch.float64)
    attention = attn_map[:, :, 0, 1:].mean(dim=1)
    ours = transmix_lam(lam_area, partner_cells(keep, grid), attention, ratio=0.5)
    expected = reference_openmixup_lam((1 - keep.double()).expand(n, 1, size, size), attn_map, grid, float(lam_area))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    official_own = 1 - reference_official_partner_weight(box, (size, size), attention)
    torch.testing.assert_close(ours, official_own, rtol=0, atol=1e-12)


def test_the_gallery_gives_each_sample_its_attention_label_on_a_grid_that_resolves_the_box():
    """Regression: the display ViT had 16-px patches (a 2×2 grid at 32 px), where most boxes hold no patch's
    top-left pixel; no patch was then B's and every sample showed λ = (λ_area + 1) / 2 (0.82 for a mask mean of
    0.64). Any box of 20-80 % of the image must own some but not all patches, and λ is each sample's own."""
    from mixbench.gallery import display_backbone, display_size, mix_batch

    method = create_method("transmix", switch_prob=1.0)
    name, kwargs = display_backbone(method)
    size = display_size(method, 28, name, in_chans=1, backbone_kwargs=kwargs)  # Fashion-MNIST's 28 px
    torch.manual_seed(0)
    net = create_backbone(name, num_classes=10, image_size=size, in_chans=1, **kwargs).eval()
    method.setup(net, 10)
    attn = net.blocks[-1].attn
    with torch.no_grad():
        attn.qkv.weight.mul_(8)  # a random ViT attends almost uniformly; sharper logits attend image by image
    attn.fused_attn = False  # timm's own path forms the map: the reference's attention, taken independently
    seen = {}
    attn.attn_drop.register_forward_hook(lambda m, args, out: seen.__setitem__("map", args[0]))
    grid = tuple(net.patch_embed.dynamic_feat_size((size, size)))
    x, y = torch.randn(6, 1, size, size, generator=torch.Generator().manual_seed(2)), torch.arange(6)
    checked = 0
    for seed in range(12):
        with torch.no_grad():
            mixed = mix_batch(method, x, y, torch.Generator().manual_seed(seed), net)
        area = float(mixed.mask.mean())
        if not 0.2 <= area <= 0.8:
            continue
        checked += 1
        partner = nn.Upsample(size=grid)(1 - mixed.mask[:1].float()).sum()
        assert 0 < partner < grid[0] * grid[1], f"seed {seed}: a box of {area:.2f} of the image owns {partner} patches"
        expected = reference_openmixup_lam(1 - mixed.mask.float(), seen["map"].double(), grid, area)
        torch.testing.assert_close(mixed.lam, expected, rtol=0, atol=1e-5)
        assert float(mixed.lam.max() - mixed.lam.min()) > 1e-3  # the attention differs from image to image
    assert checked >= 4
    for asked in (0.3, 0.7):  # --lam fixes the box's area λ; a box clipped at the border leaves more to A
        with torch.no_grad():
            fixed = mix_batch(method, x, y, torch.Generator().manual_seed(0), net, lam=asked)
        assert float(fixed.mask.mean()) >= asked - 1e-6 and bool((fixed.lam >= 0).all() & (fixed.lam <= 1).all())


def test_a_transmix_batch_is_cutmix_with_attention_labels_that_sum_to_one():
    net, (x, y) = vit(), batch()
    before = x.clone()
    method = create_method("transmix", switch_prob=1.0)
    method.setup(net, 10)
    drawn = method.sample(4, torch.Generator().manual_seed(7))
    mixed = method.mix(x, y, **drawn)
    cutmix = create_method("cutmix").mix(x, y, lam=drawn["lam"], index=drawn["index"], center=drawn["center"])
    assert torch.equal(mixed.x, cutmix.x) and torch.equal(mixed.lam, cutmix.lam)
    assert float(mixed.lam) == pytest.approx(float(mixed.mask.mean()))  # λ_area is the area left to x
    with torch.no_grad():
        _, attention, grid = method.forward_with_attention(net, mixed.x)
    lam = method.relabel(mixed, attention, grid)
    assert lam.shape == (4,) and bool(((lam >= 0) & (lam <= 1)).all())
    relabelled = type(mixed)(x=mixed.x, y_a=mixed.y_a, y_b=mixed.y_b, lam=lam)
    torch.testing.assert_close(relabelled.soft_targets(10).sum(dim=1), torch.ones(4))
    ratio_one = create_method("transmix", ratio=1.0).relabel(mixed, attention, grid)
    torch.testing.assert_close(ratio_one, mixed.lam.expand(4))  # ratio 1: the area λ alone
    assert torch.equal(x, before)


def test_switch_prob_chooses_between_transmix_and_mixup_batches():
    x, y = batch()
    never = create_method("transmix", switch_prob=0.0)
    drawn = never.sample(4, torch.Generator().manual_seed(0))
    mixed = never.mix(x, y, **drawn)
    w = float(drawn["lam"])
    assert mixed.mask is None and torch.equal(mixed.x, w * x + (1 - w) * x[drawn["index"]])
    half = create_method("transmix", switch_prob=0.8)
    share = sum(bool(half.sample(4, torch.Generator().manual_seed(s))["transmix"]) for s in range(400)) / 400
    assert 0.74 < share < 0.86


def test_same_draws_same_step_and_gradients_reach_the_vit_not_the_labels():
    net, (x, y) = vit(), batch()
    net.train()
    method = create_method("transmix", switch_prob=1.0)
    method.setup(net, 10)
    outs = [method.training_loss(net, x, y, torch.Generator().manual_seed(11)) for _ in range(2)]
    assert torch.equal(outs[0].loss, outs[1].loss) and outs[0].logs == outs[1].logs
    assert outs[0].logs["transmix"] == 1.0 and outs[0].logs["lam"] != outs[0].logs["lam_area"]
    outs[0].loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_backbones_without_class_token_attention_fail_the_check_with_the_fix():
    method = create_method("transmix")
    message = (r"transmix re-weights labels by a ViT's class-token attention, but test_resnet cannot give one: it has "
               r"no class token; fix: use a timm ViT/DeiT backbone \(vit_\*, deit_\*; `mixbench show transmix "
               r"--backbone test_vit`\) or another method")
    with pytest.raises(ValueError, match=message):
        method.check_input((32, 32), "test_resnet")
    trial = synthetic_trial("t", "transmix", 1, seed=0, backbone="test_resnet")  # what `mixbench check` asks
    assert "but test_resnet cannot give one: it has no class token" in method_problem(trial, 32)
    with pytest.raises(ValueError, match=r"but ResNet cannot give one: it has no class token"):
        method.setup(create_backbone("test_resnet", num_classes=10), 10)
    method.check_input((32, 32), "test_vit")  # a ViT passes


def test_qkv_row_is_the_softmax_over_all_tokens():
    attn = create_backbone("test_vit", num_classes=10, image_size=32).blocks[-1].attn
    qkv = torch.randn(2, 5, 3 * attn.num_heads * attn.head_dim)
    row = cls_attention_from_qkv(qkv, attn, num_prefix_tokens=1)
    assert row.shape == (2, 4) and bool((row.sum(dim=1) < 1).all())  # the class token's own share is left out


def test_card_and_gallery_on_a_vit(tmp_path):
    from mixbench.display import DisplayBudget

    card_matches_the_method("transmix")
    tiny = DisplayBudget(steps=2, batch_size=8, epochs=1, val_images=10)
    # On its display_backbone, test_vit, trained for the picture (its labels come from the attention).
    figure = show_method("transmix", n=2, hparams={"switch_prob": 1.0}, budget=tiny, cache_dir=tmp_path)
    caption = figure.get_supxlabel().replace("\n", " ")
    assert len(figure.axes) == 2 * 4 and "test_vit (patch_size=4) trained by transmix" in caption
    with pytest.raises(ValueError, match=r"transmix re-weights labels by a ViT's class-token attention"):
        show_method("transmix", n=2, backbone="resnet18_cifar")


def test_the_vit_suites_run_transmix_with_the_tables_settings(tmp_path):
    from pathlib import Path

    from mixbench.claims import claim_backbone, load_claims
    from mixbench.suite import expand, load_suite

    suites = Path(__file__).parents[1] / "suites"
    path = suites / "cifar100_vit.yaml"
    trials = {t.method: t for t in expand(load_suite(path), path, {"cifar100": str(tmp_path)})}
    assert set(trials) == {"vanilla", "mixup", "cutmix", "saliencymix", "transmix", "mixup_cutmix"}
    assert trials["mixup_cutmix"].method_label == "deit_default"  # the claims' name for the table's DeiT row
    assert {t.hparams["label_smoothing"] for t in trials.values()} == {0.1}  # the DeiT configs' LabelSmoothLoss
    assert (trials["mixup"].hparams["alpha"], trials["cutmix"].hparams["alpha"]) == (0.8, 2.0)
    transmix = trials["transmix"]
    assert (transmix.hparams["alpha"], transmix.hparams["mixup_alpha"], transmix.hparams["switch_prob"]) == (
        1.0, 0.8, 0.8)
    assert (transmix.recipe.epochs, transmix.recipe.image_size, transmix.recipe.batch_size) == (200, 224, 100)
    # The claims table has TransMix's published numbers for exactly this setting (and the 600-epoch one).
    claims = [c for c in load_claims() if c.method == "transmix" and c.dataset == "CIFAR-100"
              and claim_backbone(c.timm_model, c.backbone) == transmix.backbone.name and c.metric == "top1_acc"]
    assert sorted((c.epochs, c.value) for c in claims) == [(200, 76.17), (600, 79.33)]
    for name in ("smoke_vit", "fashion_mnist_vit"):
        path = suites / f"{name}.yaml"
        trials = expand(load_suite(path), path, {"fashion_mnist": str(tmp_path)})
        assert "transmix" in {t.method for t in trials} and {t.backbone.name for t in trials} == {"test_vit"}

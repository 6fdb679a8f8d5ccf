"""AutoMix: Mix Block masks, gradient isolation between the branches, the EMA and its schedule, resume."""

from __future__ import annotations

import io
import math
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from torch import nn

from mixbench.methods import create_method
from mixbench.methods.automix import AutoMix, MixBlock, apply_mask, ema_momentum, mask_loss
from mixbench.methods.base import mixed_cross_entropy
from mixbench.methods.cards import card_defaults
from mixbench.models import create_backbone, stage_features
from mixbench.optim import build_optimizer, set_lr
from mixbench.suite import OptimizerConfig, ScheduleConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 5


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread gains nothing, and on a shared machine OpenMP threads that wait for
    a busy core made this file 10x slower. One thread keeps it fast; the thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(name: str = "test_resnet", size: int = 32, seed: int = 0, **hparams) -> tuple[nn.Module, AutoMix]:
    torch.manual_seed(seed)
    backbone = create_backbone(name, NUM_CLASSES, image_size=size)
    method = create_method("automix", **hparams)
    method.setup(backbone, NUM_CLASSES)
    return backbone, method


def batch(n: int = 6, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def full_state(backbone: nn.Module, method: AutoMix) -> dict[str, torch.Tensor]:
    return {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
            **{f"method.{k}": v for k, v in method.state_dict().items()}}


# ---- Mix Block -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size", "layer", "grid"), [
    ("resnet18_cifar", 32, 2, 8),  # openmixup's CIFAR layout: stage 3 at H/4
    ("resnet18", 64, 2, 4),  # a stride-4 stem: the reference's hard-coded factor would be wrong here
    ("resnet18", 224, 2, 14),
    ("test_vit", 64, 1, 4),  # patch tokens of block 1 on the 4x4 grid, class token dropped
])
def test_mask_has_the_input_size_and_its_channels_sum_to_one(name, size, layer, grid):
    backbone, method = build(name, size, mask_layer=layer)
    x, _ = batch(2, size)
    with torch.no_grad():
        features = stage_features(method.ema_backbone, x, layer)
        assert features.shape[-2:] == (grid, grid)
        mask = method.mix_block(features, 0.3, torch.tensor([1, 0]), x.shape[-2:])
    assert mask.shape == (2, 2, size, size) and mask.dtype == torch.float32
    torch.testing.assert_close(mask.sum(dim=1), torch.ones(2, size, size))
    assert mask.min() >= 0 and mask.max() <= 1
    # Nearest upsampling: every feature cell covers a constant (size/grid)^2 block of the mask.
    cell = size // grid
    assert torch.equal(mask, mask[:, :, ::cell, ::cell].repeat_interleave(cell, 2).repeat_interleave(cell, 3))


def test_mix_block_matches_the_reference_parameter_counts():
    assert sum(p.numel() for p in MixBlock(256).parameters()) == 33_153  # CIFAR R-18, stage 3
    assert sum(p.numel() for p in MixBlock(1024, lam_concat=True).parameters()) == 526_338  # ImageNet R-50
    _, method = build("resnet18_cifar", 32)
    assert sum(p.numel() for p in method.mix_block.parameters()) == 33_153


def test_lam_reaches_the_mask_only_with_lam_concat():
    torch.manual_seed(0)
    features, index = torch.randn(4, 16, 4, 4), torch.tensor([2, 3, 0, 1])
    blind = MixBlock(16, lam_concat=False)
    assert torch.equal(blind(features, 0.1, index, (8, 8)), blind(features, 0.9, index, (8, 8)))
    aware = MixBlock(16, lam_concat=True)
    assert not torch.equal(aware(features, 0.1, index, (8, 8)), aware(features, 0.9, index, (8, 8)))


def test_mix_block_computes_in_fp32_under_autocast():
    torch.manual_seed(0)
    features, index = torch.randn(4, 16, 4, 4), torch.tensor([2, 3, 0, 1])
    block = MixBlock(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mask = block(features.bfloat16(), 0.5, index, (8, 8))
    assert mask.dtype == torch.float32
    torch.testing.assert_close(mask, block(features.bfloat16().float(), 0.5, index, (8, 8)))


def test_mask_loss_is_a_batch_level_hinge():
    mask = torch.zeros(2, 2, 4, 4)
    mask[0, 1], mask[1, 1] = 0.0, 0.6  # partner shares 0 and 0.6: batch mean 0.3
    mask[:, 0] = 1 - mask[:, 1]
    # |1 - 0.3 - λ| - 0.1, clipped at 0; per sample it would be 0.5 for λ = 0.5
    assert mask_loss(mask, 0.5, 0.1).item() == pytest.approx(0.1)
    assert mask_loss(mask, 0.9, 0.1).item() == pytest.approx(0.1)
    assert mask_loss(mask, 0.65, 0.1).item() == 0.0  # within the margin
    assert mask_loss(mask, 0.5, 0.0).item() == pytest.approx(0.2)


def test_apply_mask_weights_each_pixel():
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).view(2, 1, 2, 2)
    mask = torch.zeros(2, 2, 2, 2)
    mask[:, 0, 0], mask[:, 1, 1] = 1.0, 1.0  # top row from the sample, bottom row from its partner
    mixed = apply_mask(x, mask, torch.tensor([1, 0]))
    assert torch.equal(mixed[0, 0], torch.tensor([[0.0, 1.0], [6.0, 7.0]]))
    assert torch.equal(mixed[1, 0], torch.tensor([[4.0, 5.0], [2.0, 3.0]]))


# ---- the training step ---------------------------------------------------------------------------------


def test_each_branch_trains_only_its_modules():
    backbone, method = build()
    reference = deepcopy(method)  # the same state, to recompute the Mix-Block branch by hand
    x, y = batch()
    order: list[str] = []
    for p in method.mix_block.parameters():
        p.register_hook(lambda grad: order.append("mix_block"))
    for p in [*backbone.parameters(), *method.head_mix.parameters()]:
        p.register_hook(lambda grad: order.append("online"))

    out = method.training_loss(backbone, x, y, gen())
    assert out.backward_done and out.loss.grad_fn is None

    assert all(p.grad is not None for p in backbone.parameters())
    assert all(p.grad is not None for p in method.head_mix.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.mix_block.parameters())
    ema = [*method.ema_backbone.parameters(), *method.ema_head_mix.parameters()]
    assert all(p.grad is None and not p.requires_grad for p in ema)
    # The Mix Block is reached by exactly one backward, before the online branches, none of which reach it.
    blocks = len(list(method.mix_block.parameters()))
    assert order[:blocks] == ["mix_block"] * blocks and "mix_block" not in order[blocks:]

    # ...and that backward is the EMA-branch loss plus the mask loss, nothing else.
    drawn = reference.sample(x.shape[0], gen())
    lam, index = drawn["lam_mb"], drawn["index_mb"]
    features = stage_features(reference.ema_backbone, x, reference.mask_layer)
    mask = reference.mix_block(features, lam, index, x.shape[-2:])
    k = reference.ema_backbone
    logits = reference.ema_head_mix(k.forward_head(k.forward_features(apply_mask(x, mask, index)), pre_logits=True))
    loss = mixed_cross_entropy(logits, y, y[index], lam) + 0.1 * mask_loss(mask, lam, 0.1)
    expected = torch.autograd.grad(loss, list(reference.mix_block.parameters()))
    for param, grad in zip(method.mix_block.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, grad)
    assert out.logs["loss_mix_k"] + out.logs["loss_mask"] == pytest.approx(loss.item(), rel=1e-5)


def test_extreme_lam_falls_back_to_plain_mixup(monkeypatch):
    backbone, method = build()
    x, y = batch()
    index = torch.tensor([5, 4, 3, 2, 1, 0])
    drawn = {"lam_mb": 0.5, "lam_bb": 0.05, "index_mb": torch.arange(6), "index_bb": index}
    monkeypatch.setattr(method, "sample", lambda n, g: drawn)
    seen: list[torch.Tensor] = []  # what the online encoder is fed: the clean batch, then the mixed one
    forward_features = backbone.forward_features
    monkeypatch.setattr(backbone, "forward_features", lambda inp: seen.append(inp) or forward_features(inp))

    out = method.training_loss(backbone, x, y, gen())
    assert len(seen) == 2 and torch.equal(seen[0], x)
    torch.testing.assert_close(seen[1], 0.05 * x + 0.95 * x[index])
    assert out.logs["mixup_fallback"] == 1.0 and out.logs["mask_bb_mean"] == pytest.approx(0.05)

    assert [method.uses_mixup_fallback(v) for v in (0.08, 0.0801, 0.5, 0.9199, 0.92)] == [
        True, False, False, False, True]
    assert not create_method("automix", lam_margin=0.0).uses_mixup_fallback(0.05)
    features = torch.randn(6, method.mix_block.value.in_channels, 2, 2)
    learned = method.backbone_mask(features, 0.5, index, (32, 32))
    assert learned.requires_grad is False and learned[:, 0].std() > 0


@pytest.mark.parametrize(("name", "size", "layer"), [("test_vit", 64, 1), ("test_convnext", 64, 2)])
def test_a_step_runs_on_other_families(name, size, layer):
    backbone, method = build(name, size, mask_layer=layer)
    x, y = batch(4, size)
    out = method.training_loss(backbone, x, y, gen())
    assert math.isfinite(out.loss.item())
    assert all(p.grad is not None for p in method.mix_block.parameters())
    assert all(p.grad is None for p in method.ema_backbone.parameters())


def test_identical_seeds_give_identical_steps():
    runs = []
    for _ in range(2):
        backbone, method = build(seed=1)
        g = gen(7)
        logs = []
        for step in range(2):
            x, y = batch(seed=step)
            logs.append(method.training_loss(backbone, x, y, g).logs)
            with torch.no_grad():  # a stand-in optimizer step, so the EMA update has something to follow
                for p in [*backbone.parameters(), *method.parameters()]:
                    if p.grad is not None:
                        p.sub_(0.1 * p.grad)
                        p.grad = None
            method.after_step(backbone)
        runs.append((logs, full_state(backbone, method)))
    (logs_a, state_a), (logs_b, state_b) = runs
    assert logs_a == logs_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert logs_a[0]["lam_mb"] != logs_a[1]["lam_mb"]


def _trainer(seed: int):
    backbone, method = build(seed=seed)
    schedule = ScheduleConfig(min_lr=0.05)
    optimizer = build_optimizer(backbone, method.param_groups(0.1), OptimizerConfig(), schedule)
    return backbone, method, optimizer, schedule


def _train(trainer, g: torch.Generator, steps: range, total: int) -> None:
    backbone, method, optimizer, schedule = trainer
    for step in steps:
        set_lr(optimizer, step, schedule, total, total)
        method.set_progress(step, total)
        x, y = batch(seed=step)
        out = method.training_loss(backbone, x, y, g)
        assert out.backward_done
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.after_step(backbone)


def test_resume_equals_uninterrupted_training_bit_for_bit():
    total, stop = 4, 2
    straight = _trainer(seed=0)
    _train(straight, gen(), range(total), total)

    first, g = _trainer(seed=0), gen()
    _train(first, g, range(stop), total)
    buffer = io.BytesIO()
    backbone, method, optimizer, _ = first
    torch.save({"model": backbone.state_dict(), "method": method.state_dict(),
                "optimizer": optimizer.state_dict(), "generator": g.get_state()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = _trainer(seed=123)  # a different initialisation: everything must come from the checkpoint
    resumed[0].load_state_dict(state["model"])
    resumed[1].load_state_dict(state["method"])
    resumed[2].load_state_dict(state["optimizer"])
    g = gen()
    g.set_state(state["generator"])
    _train(resumed, g, range(stop, total), total)

    a, b = full_state(*straight[:2]), full_state(*resumed[:2])
    assert a.keys() == b.keys()
    assert any(k.startswith("method.ema_backbone.") for k in a) and any(k.startswith("method.mix_block.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---- EMA -----------------------------------------------------------------------------------------------


def test_momentum_schedule_holds_then_follows_the_cosine():
    base, end = 0.999, 0.999999
    assert [ema_momentum(s, 1000, base, end, 0.1) for s in (0, 50, 99)] == [base] * 3
    # The cosine is of the whole run's progress, so it starts just above base where the hold ends.
    first = end - (end - base) * (math.cos(0.1 * math.pi) + 1) / 2
    assert ema_momentum(100, 1000, base, end, 0.1) == pytest.approx(first) and first > base
    assert ema_momentum(500, 1000, base, end, 0.1) == pytest.approx((base + end) / 2)
    assert ema_momentum(1000, 1000, base, end, 0.1) == pytest.approx(end)
    values = [ema_momentum(s, 1000, base, end, 0.1) for s in range(100, 1001)]
    assert all(a <= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert ema_momentum(1000, 1000, base, 0.99999, 0.1) == pytest.approx(0.99999)  # the ImageNet end

    method = create_method("automix")
    method.set_progress(99, 1000)
    assert method.momentum == base and method.current_mask_loss_weight == 0.1
    method.set_progress(700, 1000)
    assert method.momentum == ema_momentum(700, 1000, base, end, 0.1)
    annealed = create_method("automix", mask_loss_anneal=True)
    weights = []
    for step in (0, 500, 1000):
        annealed.set_progress(step, 1000)
        weights.append(annealed.current_mask_loss_weight)
    assert weights == pytest.approx([0.1, 0.05, 0.0])


def test_ema_update_is_m_k_plus_one_minus_m_q_on_parameters_only():
    backbone, method = build()
    with torch.no_grad():  # make the online model differ from its copy, weights and BN statistics
        for p in [*backbone.parameters(), *method.head_mix.parameters()]:
            p.add_(torch.randn_like(p))
        for name, buf in backbone.named_buffers():
            if name.endswith("running_mean"):
                buf.add_(1.0)
    method.set_progress(600, 1000)
    m = ema_momentum(600, 1000, 0.999, 0.999999, 0.1)
    assert method.momentum == m
    ema = [*method.ema_backbone.parameters(), *method.ema_head_mix.parameters()]
    online = [*backbone.parameters(), *method.head_mix.parameters()]
    before = [p.clone() for p in ema]
    buffers = {k: v.clone() for k, v in method.ema_backbone.named_buffers()}
    method.after_step(backbone)
    for k_new, k_old, q in zip(ema, before, online, strict=True):
        torch.testing.assert_close(k_new, m * k_old + (1 - m) * q, rtol=0, atol=1e-6)
        assert not torch.equal(k_new, k_old)
    assert all(torch.equal(buffers[k], v) for k, v in method.ema_backbone.named_buffers())


# ---- optimizer groups, cards, evaluation, records ------------------------------------------------------


@pytest.mark.parametrize(("family", "suite_lr", "min_lr", "mb_lr", "mb_min_lr", "mb_momentum"), [
    ("cifar", 0.1, 0.05, 0.1, 0.05, 0.9),  # one schedule for all: the suite's lr and min_lr
    ("tiny", 0.2, 0.05, 0.1, 1e-3, 0.9),
    ("imagenet", 0.1, 0.0, 0.1, 1e-3, 0.9),
])
def test_card_families_give_the_reference_mix_block_schedule(family, suite_lr, min_lr, mb_lr, mb_min_lr,
                                                              mb_momentum):
    defaults = card_defaults("automix", family)
    torch.manual_seed(0)
    backbone = create_backbone("test_resnet", NUM_CLASSES)
    method = create_method("automix", **defaults)
    method.setup(backbone, NUM_CLASSES)
    schedule = ScheduleConfig(min_lr=min_lr)
    optimizer = build_optimizer(backbone, method.param_groups(suite_lr), OptimizerConfig(lr=suite_lr), schedule)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"backbone", "automix_head_mix", "automix_mix_block"}
    block = groups["automix_mix_block"]
    assert (block["lr"], block["min_lr"], block["momentum"]) == (mb_lr, mb_min_lr, mb_momentum)
    assert groups["automix_head_mix"]["lr"] == suite_lr and groups["automix_head_mix"]["min_lr"] == min_lr
    set_lr(optimizer, 100, schedule, 10, 100)
    assert block["lr"] == pytest.approx(mb_min_lr)
    assert method.alpha == 2.0 and method.lam_margin == 0.08 and method.mask_loss_weight == 0.1
    assert method.lam_concat == (family == "imagenet") and method.mask_loss_anneal == (family == "imagenet")
    assert method.ema_momentum_end == (0.99999 if family == "imagenet" else 0.999999)


def test_eval_models_put_the_headline_first_and_the_record_names_it():
    backbone, method = build()
    models = method.eval_models(backbone)
    assert list(models) == ["ema", "online"]
    assert models["ema"] is method.ema_backbone and models["online"] is backbone
    assert method.hparams()["headline"] == "ema"

    backbone, method = build(headline="online", eval_mix_heads=True)
    models = method.eval_models(backbone)
    assert list(models) == ["online", "ema", "ema_mix", "online_mix"]
    x, _ = batch(3)
    with torch.no_grad():
        assert models["online_mix"](x).shape == (3, NUM_CLASSES)
        feats = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
        torch.testing.assert_close(models["online_mix"](x), method.head_mix(feats))
    assert method.hparams()["headline"] == "online" and method.hparams()["eval_mix_heads"] is True
    assert set(method.state_dict()) >= {"mix_block.query.weight", "head_mix.weight", "ema_head_mix.weight"}


def test_bad_hyper_parameters_are_clear():
    with pytest.raises(ValueError, match=r"alpha must be > 0 for Beta\(alpha, alpha\); got 0"):
        create_method("automix", alpha=0)
    with pytest.raises(ValueError, match=r"mask_layer must be a stage index >= 0 .*; got -1"):
        create_method("automix", mask_layer=-1)
    with pytest.raises(ValueError, match=r"lam_margin must be in \[0, 0.5\) .*; got 0.5"):
        create_method("automix", lam_margin=0.5)
    with pytest.raises(ValueError, match=r"need 0 <= ema_momentum <= ema_momentum_end <= 1; got 0.999, 0.99"):
        create_method("automix", ema_momentum_end=0.99)
    with pytest.raises(ValueError, match=r"ema_hold_fraction must be in \[0, 1\]; got 2"):
        create_method("automix", ema_hold_fraction=2)
    with pytest.raises(ValueError, match=r"mask_loss_weight and mask_loss_margin must be >= 0; got -1"):
        create_method("automix", mask_loss_weight=-1)
    with pytest.raises(ValueError, match=r"mb_lr must be > 0 \(or null: the suite's lr\); got 0"):
        create_method("automix", mb_lr=0)
    with pytest.raises(ValueError, match=r"mb_min_lr must be >= 0 \(or null: the suite's min_lr\); got -1"):
        create_method("automix", mb_min_lr=-1)
    with pytest.raises(ValueError, match=r"mb_momentum must be in \[0, 1\) \(or null: the optimizer's\); got 1"):
        create_method("automix", mb_momentum=1)
    with pytest.raises(ValueError, match=r"headline must be 'ema' \(the momentum encoder\) or 'online'; got 'k'"):
        create_method("automix", headline="k")
    with pytest.raises(ValueError, match=r"automix mask_layer=4: .* has stages 0..3; got 4; fix: set method.mask"):
        build(mask_layer=4)


def test_check_input_names_a_missing_stage():
    create_method("automix").check_input((32, 32), "resnet18_cifar")
    create_method("automix", mask_layer=1).check_input((32, 32), "wrn28_8")
    with pytest.raises(ValueError, match=r"automix mask_layer=3 on wrn28_8: .* stages 0..2; got 3; fix: set method"):
        create_method("automix", mask_layer=3).check_input((32, 32), "wrn28_8")


# ---- end to end ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_short_automix_run_on_fashion_mnist_beats_chance(tmp_path):
    from mixbench.engine import run_trial
    from mixbench.suite import TrialConfig

    cfg = TrialConfig.model_validate({
        "suite": "test", "method": "automix", "method_label": "automix", "method_version": AutoMix.version,
        "dataset": {"name": "fashion_mnist", "root": str(FASHION), "limit_per_class": 40, "val_limit_per_class": 20},
        "backbone": {"name": "test_resnet"},  # timm's smallest ResNet: the test stays cheap
        # 60 steps: a per-step momentum of 0.999 would leave the EMA encoder at its initialisation.
        "hparams": {**card_defaults("automix", "cifar"), "ema_momentum": 0.9, "ema_momentum_end": 0.99},
        "seed": 0,
        "recipe": {"epochs": 3, "batch_size": 20, "num_workers": 0, "optimizer": {"lr": 0.05}},
    })
    record = run_trial(cfg, tmp_path / "fm")
    assert record.status == "done" and record.headline == "ema" and record.hparams["headline"] == "ema"
    assert set(record.models) == {"ema", "online"}
    assert record.models["online"]["top1"] > 30.0, f"online encoder top-1 {record.models['online']['top1']:.1f} %"
    assert record.top1 > 30.0, f"400 Fashion-MNIST images, 3 epochs: EMA top-1 {record.top1:.1f} % (chance 10 %)"

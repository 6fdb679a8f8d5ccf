"""RecursiveMix: the previous batch resized into a box, recursive soft labels, the ROI loss, checkpointed history."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cards import test_card_matches_the_method as card_matches_the_method
from test_engine import assert_same_training
from test_engine import config as engine_config
from torchvision.ops import roi_align

from mixbench.engine import Preempted, run_trial
from mixbench.gallery import show_method
from mixbench.methods import create_method
from mixbench.methods.recursivemix import history_box, recursive_mix
from mixbench.models import create_backbone


def resnet():
    torch.manual_seed(0)
    return create_backbone("test_resnet", num_classes=10, zero_init_last=False)


def batch(n: int = 4, size: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def method_for(net, **hparams):
    method = create_method("recursivemix", **hparams)
    method.setup(net, 10)
    return method


def reference_recursive_mix(x, old_x, y, old_y, u, cx, cy, mode):
    """implus/RecursiveMix-pytorch utils.py::recursive_mix with the draws given (cut_rat = sqrt(u))."""
    x = x.clone()
    H, W = x.shape[2], x.shape[3]
    cut_rat = np.sqrt(u)
    cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
    bbx1, bby1 = np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H)
    bbx2, bby2 = np.clip(cx + cut_w // 2, 0, W), np.clip(cy + cut_h // 2, 0, H)
    size = (bby2 - bby1, bbx2 - bbx1)
    if size != (0, 0):
        align = None if mode == "nearest" else True
        x[:, :, bby1:bby2, bbx1:bbx2] = F.interpolate(old_x[:x.shape[0]], size=size, mode=mode, align_corners=align)
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (W * H))
    return x, lam * y + (1 - lam) * old_y[:x.shape[0]], (bbx1, bby1, bbx2, bby2), lam


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("u, cy, cx", [(0.4, 20, 9), (0.45, 0, 31), (0.05, 16, 16)])
def test_replays_the_reference_paste_and_labels_for_fixed_draws(mode, u, cy, cx):
    x, y = batch(seed=1)
    old_x, old_y_int = batch(seed=2)
    old_y = torch.softmax(torch.randn(4, 10), dim=1)  # a recursive soft label, not one-hot
    area, center = torch.tensor(u, dtype=torch.float64), torch.tensor([(cy + 0.5) / 32, (cx + 0.5) / 32])
    method = method_for(resnet(), interpolation=mode)
    history = {"x": old_x, "targets": old_y, "logits": torch.zeros(4, 10)}
    mixed, targets, lam, box = method.mix(x, y, history, area, center)
    ref_x, ref_targets, (x1, y1, x2, y2), ref_lam = reference_recursive_mix(
        x, old_x, F.one_hot(y, 10).float(), old_y, u, cx, cy, mode)
    assert box == (y1, y2, x1, x2) and float(lam) == ref_lam
    assert torch.equal(mixed, ref_x)
    torch.testing.assert_close(targets, ref_targets, rtol=0, atol=1e-7)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))  # label weights sum to 1
    keep = torch.ones(32, 32)
    keep[y1:y2, x1:x2] = 0
    assert float(lam) == float(keep.mean())  # λ is the area left to the current image


def test_an_empty_box_side_pastes_nothing_where_the_reference_crashes():
    x, _ = batch()
    box = history_box(torch.tensor(0.002, dtype=torch.float64), torch.tensor([0.5, 0.5]), 32, 32)
    assert box[1] - box[0] == 0 or box[3] - box[2] == 0
    assert torch.equal(recursive_mix(x, x.flip(0), box, "nearest"), x)


def test_labels_stay_distributions_through_the_recursion_with_smoothing():
    net = resnet()
    method = method_for(net, label_smoothing=0.1)
    x, y = batch()
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        method.training_loss(net, x, y, gen)
        targets = method.history["targets"]
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
        # Smoothing as the reference's smooth_one_hot (1 - s on the class, s / (K - 1) elsewhere), kept by mixing.
        assert float(targets.min()) >= 0.1 / 9 - 1e-7 and float(targets.max()) <= 0.9 + 1e-6


def test_the_step_is_the_reference_loss_with_the_roi_term():
    net = resnet()
    method = method_for(net, omega=0.5)
    x, y = batch()
    before = x.clone()
    gen = torch.Generator().manual_seed(5)
    first = method.training_loss(net, x, y, gen)
    assert first.logs["lam"] == 1.0 and first.logs["loss_roi"] == 0.0 and first.backward_done
    previous = dict(method.history)
    assert torch.equal(previous["x"], x)  # no history yet: the batch itself is remembered
    state = gen.get_state()
    drawn = method.sample(4, gen)
    gen.set_state(state)
    x2, y2 = batch(seed=7)
    net.zero_grad()
    second = method.training_loss(net, x2, y2, gen)
    # Recompute as the reference's ResNet.forward(x, boxes): fc on the pooled map, fc_roi on roi_align of it.
    mixed, targets, lam, (r1, r2, c1, c2) = method.mix(x2, y2, previous, **drawn)
    feature_map = net.forward_features(mixed)
    logits = net.forward_head(feature_map)
    boxes = torch.cat([torch.arange(4.0)[:, None], torch.tensor([[c1, r1, c2, r2]], dtype=torch.float32).expand(4, 4)],
                      dim=1)
    roi = roi_align(feature_map, boxes, output_size=(1, 1), spatial_scale=feature_map.shape[-1] / 32,
                    sampling_ratio=-1, aligned=True).squeeze(-1).squeeze(-1)
    out_roi = method.head_roi(roi)
    ce = lambda out, t: (-out.log_softmax(dim=1) * t).sum() / out.shape[0]  # noqa: E731  LabelSmoothingLoss
    expected = ce(logits, targets) + ce(out_roi, previous["logits"].softmax(dim=-1)) * 0.5 * (1 - float(lam))
    torch.testing.assert_close(second.loss, expected.detach(), rtol=1e-6, atol=1e-6)
    assert 0 < second.logs["lam"] < 1 and second.logs["loss_roi"] > 0
    assert method.head_roi.weight.grad is not None and method.head_roi.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())
    assert torch.equal(method.history["x"], mixed) and torch.equal(x, before)


def test_same_draws_and_history_give_the_same_step():
    x, y = batch()
    losses = []
    for _ in range(2):
        net = resnet()
        method = method_for(net)
        gen = torch.Generator().manual_seed(9)
        losses.append([method.training_loss(net, x, y, gen).loss for _ in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(*losses, strict=True))


def test_history_round_trips_through_a_weights_only_checkpoint():
    net = resnet()
    method = method_for(net)
    x, y = batch()
    method.training_loss(net, x, y, torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    restored = method_for(resnet())
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert set(restored.history) == {"x", "targets", "logits"}
    assert all(torch.equal(restored.history[k], method.history[k]) for k in method.history)
    with pytest.raises(ValueError, match=r"recursivemix history must hold x, targets and logits; the checkpoint has "
                                         r"\['x'\]"):
        restored.set_extra_state({"x": x})


@pytest.mark.slow
def test_an_interrupted_and_resumed_trial_equals_an_uninterrupted_one(tmp_path):
    cfg = engine_config("recursivemix")
    straight = run_trial(cfg, tmp_path / "straight")
    assert straight.status == "done"
    assert run_trial(cfg, tmp_path / "resumed", stop_after_epoch=1).status == "interrupted"
    polls = iter(range(1000))
    with pytest.raises(Preempted):  # and once more in the middle of the second epoch
        run_trial(cfg, tmp_path / "resumed", stop_requested=lambda: next(polls) == 2)
    resumed = run_trial(cfg, tmp_path / "resumed")
    assert resumed.status == "done"
    assert_same_training(tmp_path / "straight", tmp_path / "resumed")
    history_a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["method"]["_extra_state"]
    history_b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["method"]["_extra_state"]
    assert set(history_a) == {"x", "targets", "logits"}
    assert all(torch.equal(history_a[k], history_b[k]) for k in history_a)


def test_backbones_without_a_feature_map_fail_the_check():
    method = create_method("recursivemix")
    with pytest.raises(ValueError, match=r"recursivemix pools the box region of test_vit's last feature map, but its "
                                         r"forward_features gives shape \(1, 5, 64\), not \(N, num_features, h, w\); "
                                         r"fix: use a CNN backbone"):
        method.check_input((32, 32), "test_vit")
    method.check_input((32, 32), "test_resnet")
    with pytest.raises(ValueError, match=r"alpha \(the largest box area fraction, u ~ U\(0, alpha\)\) must be in "
                                         r"\(0, 1\]; got 1.5"):
        create_method("recursivemix", alpha=1.5)
    with pytest.raises(ValueError, match=r"interpolation must be one of nearest, bilinear; got 'area'"):
        create_method("recursivemix", interpolation="area")


def test_card_and_gallery():
    card_matches_the_method("recursivemix")
    figure = show_method("recursivemix", n=2)
    assert len(figure.axes) == 2 * 4

"""ManifoldMix: the hidden state of the drawn layer is λ·h + (1-λ)·h[π], on any timm backbone with stages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_cards import test_card_matches_the_method as card_matches_the_method
from torch import nn

from mixbench.gallery import show_method
from mixbench.methods import create_method
from mixbench.methods.manifoldmix import layer_range, manifold_forward
from mixbench.models import create_backbone, num_stages


def resnet():
    torch.manual_seed(0)
    return create_backbone("test_resnet", num_classes=10).eval()


def batch(n: int = 6, size: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10


def reference_resnet_forward(net, x, layer, lam, index):
    """openmixup ResNet_Mix.forward: mix the input at layer 0, else after res stage i where i + 1 == layer."""
    if layer == 0:
        x = lam * x + (1 - lam) * x[index]
    h = net.maxpool(net.act1(net.bn1(net.conv1(x))))
    for i, stage in enumerate([net.layer1, net.layer2, net.layer3, net.layer4]):
        h = stage(h)
        if i + 1 == layer:
            h = lam * h + (1 - lam) * h[index]
    return net.forward_head(h)


@pytest.mark.parametrize("layer", [0, 1, 2, 3, 4])
def test_replays_the_reference_hidden_mix_for_fixed_draws(layer):
    net, (x, _) = resnet(), batch()
    lam, index = torch.tensor(0.3, dtype=torch.float64), torch.tensor([2, 0, 1, 5, 3, 4])
    with torch.no_grad():
        ours = manifold_forward(net, x, layer, lam, index)
        expected = reference_resnet_forward(net, x, layer, 0.3, index)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_layer_zero_is_mixup_of_the_input():
    net, (x, y) = resnet(), batch()
    lam, index = torch.tensor(0.7, dtype=torch.float64), torch.tensor([1, 0, 3, 2, 5, 4])
    mixup = create_method("mixup").mix(x, y, lam=lam, index=index)
    with torch.no_grad():
        torch.testing.assert_close(manifold_forward(net, x, 0, lam, index), net(mixup.x), rtol=0, atol=0)


def test_draws_come_in_the_reference_order_and_cover_the_layer_range():
    method = create_method("manifoldmix", alpha=2.0, layer=[1, 4])
    drawn = method.sample(8, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    from mixbench.methods.base import random_permutation, sample_beta

    assert float(drawn["lam"]) == float(sample_beta(2.0, 1, g)[0])  # λ first, then π, then the layer
    assert torch.equal(drawn["index"], random_permutation(8, g))
    assert int(drawn["layer"]) == int(torch.randint(1, 4, (1,), generator=g)[0])
    seen = {int(method.sample(4, torch.Generator().manual_seed(s))["layer"]) for s in range(60)}
    assert seen == {1, 2, 3}


def test_same_draws_give_the_same_step_and_the_input_is_untouched():
    net, (x, y) = resnet(), batch()
    before = x.clone()
    method = create_method("manifoldmix", layer=[1, 3])
    method.setup(net, 10)
    losses = [method.training_loss(net, x, y, torch.Generator().manual_seed(4)).loss for _ in range(2)]
    other = method.training_loss(net, x, y, torch.Generator().manual_seed(9)).loss
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], other)
    assert torch.equal(x, before)


def test_loss_is_the_lambda_weighted_pair_and_gradients_reach_every_stage():
    torch.manual_seed(0)  # residual branches not zero-initialised, so that every weight has a gradient
    net, (x, y) = create_backbone("test_resnet", num_classes=10, zero_init_last=False), batch()
    method = create_method("manifoldmix", layer=2)
    method.setup(net, 10)
    out = method.training_loss(net, x, y, torch.Generator().manual_seed(2))
    drawn = method.sample(6, torch.Generator().manual_seed(2))
    lam = float(drawn["lam"])
    assert out.logs == {"lam": lam, "layer": 2.0}
    out.loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name  # before and after the mixed stage


def test_every_layer_of_a_vit_and_a_wrn_can_be_mixed():
    torch.manual_seed(0)
    for name, stages, kwargs in [("test_vit", 6, {}), ("wrn28_8", 3, {"depth": 10, "widen_factor": 1})]:
        net = create_backbone(name, num_classes=10, image_size=32, **kwargs)
        assert num_stages(net) == stages
        x, y = batch(4)
        for layer in range(stages + 1):
            logits = manifold_forward(net, x, layer, torch.tensor(0.5, dtype=torch.float64), torch.arange(4).flip(0))
            assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_layers_past_the_last_stage_are_refused_before_and_at_setup():
    method = create_method("manifoldmix", layer=[0, 6])
    msg = (r"on test_resnet: manifoldmix layer=\[0, 6\] reaches layer 5, but the backbone has layers 0\.\.4 "
           r"\(0: the input, k: after stage k\); fix: set method.layer, e.g. \[0, 3\]")
    with pytest.raises(ValueError, match=msg):
        method.check_input((32, 32), "test_resnet")
    with pytest.raises(ValueError, match=r"layers 0\.\.3 .*fix: set method.layer"):
        create_method("manifoldmix", layer=[2, 5]).check_input((32, 32), "wrn28_8")
    with pytest.raises(ValueError, match=r"reaches layer 5, but the backbone has layers 0\.\.4"):
        method.setup(resnet(), 10)
    create_method("manifoldmix", layer=[0, 5]).check_input((32, 32), "test_resnet")  # layer 4 exists


@pytest.mark.parametrize("layer, message", [
    ([3, 3], r"layer=\[3, 3\] gives no layer: layers are drawn from range\(lo, hi\); need 0 <= lo < hi"),
    (-1, r"layer=-1 gives no layer"),
    ("2", r"layer must be an int or a pair \[lo, hi\]; got '2'"),
])
def test_bad_layer_values_are_clear(layer, message):
    with pytest.raises(ValueError, match=message):
        layer_range(layer)
    with pytest.raises(ValueError, match=r"alpha must be > 0 for Beta\(alpha, alpha\); got 0"):
        create_method("manifoldmix", alpha=0)


class _Reused(nn.Module):
    """A model whose 'stage' module runs twice per forward: not a stage on the forward path."""

    def __init__(self):
        super().__init__()
        self.block = nn.Conv2d(3, 3, 1)
        self.feature_info = [{"module": "block", "num_chs": 3, "reduction": 1}]

    def forward_intermediates(self, *args, **kwargs):
        raise NotImplementedError

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.block(self.block(x)), 1).flatten(1)


def test_a_module_that_runs_twice_is_refused_instead_of_mixing_twice():
    x, _ = batch(4, 8)
    with pytest.raises(RuntimeError, match=r"module 'block' ran 2 times in one forward pass, so it is not one "
                                           r"stage of the forward path; fix: set method.layer"):
        manifold_forward(_Reused(), x, 1, torch.tensor(0.5), torch.arange(4))


def test_card_and_gallery():
    card_matches_the_method("manifoldmix")
    figure = show_method("manifoldmix", n=2)  # every draw pictured as its input-level mix of the same pair and λ
    assert len(figure.axes) == 2 * 4  # two samples, four columns
    net, (x, y) = resnet(), batch()
    method = create_method("manifoldmix")
    shown = method.mix_for_display(net, x, y, torch.Generator().manual_seed(3))
    drawn = method.sample(6, torch.Generator().manual_seed(3))
    w = float(drawn["lam"])
    assert torch.equal(shown.x, w * x + (1 - w) * x[drawn["index"]]) and torch.equal(shown.y_b, y[drawn["index"]])


def test_paper_suites_and_claims_carry_manifoldmix(tmp_path):
    from pathlib import Path

    from mixbench.claims import load_claims
    from mixbench.methods.cards import card_defaults
    from mixbench.suite import expand, load_suite

    suites = Path(__file__).parents[1] / "suites"
    for name, family in [("cifar10", "cifar"), ("cifar100", "cifar"), ("tiny_imagenet", "tiny"),
                         ("imagenet", "imagenet"), ("fashion_mnist", "cifar"), ("smoke_more", "cifar")]:
        path = suites / f"{name}.yaml"
        suite = load_suite(path)
        trials = [t for t in expand(suite, path, {ds.name: str(tmp_path) for ds in suite.datasets})
                  if t.method == "manifoldmix"]
        assert trials, name
        assert all(t.hparams["alpha"] == card_defaults("manifoldmix", family)["alpha"] for t in trials), name
    claims = [c for c in load_claims() if c.method == "manifoldmix"]
    assert len(claims) == 39 and all("openmixup@37e1372" in c.source for c in claims)
    cifar100 = {(c.backbone, c.epochs): c.value for c in claims if c.dataset == "CIFAR-100" and c.metric == "top1_acc"}
    assert cifar100[("ResNeXt-50 32x4d (CIFAR variant: 3x3 stride-1 stem, no maxpool)", 800)] == 82.88
    assert cifar100[("WRN-28-8 (CIFAR WideResNet, 3 stages)", 400)] == 83.24

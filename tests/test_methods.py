"""Properties of the method interface, the registry, and the input mixers vanilla / mixup / cutmix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixbench.methods import create_method, list_methods, mixed_cross_entropy, register_method
from mixbench.methods.base import InputMixer, MixedBatch, sample_beta
from mixbench.methods.cutmix import CutMix, box_bounds
from mixbench.methods.registry import get_method_class


def unique_batch(n: int = 7, c: int = 3, h: int = 16, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel value is unique and each sample has its own label, so any mix is traceable."""
    x = torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w)
    return x, torch.arange(n)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- registry ------------------------------------------------------------------------------------------


def test_builtin_methods_are_listed_without_importing_them():
    assert {"vanilla", "mixup", "cutmix", "saliencymix", "puzzlemix", "automix"} <= set(list_methods())


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown method 'mixupp'; registered: .*mixup.*package.module:Class"):
        create_method("mixupp")


def test_unknown_hparam_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"method 'mixup' has no hyper-parameter 'beta'; it accepts: alpha, p"):
        create_method("mixup", beta=1.0)


def test_bad_hparam_values_are_clear():
    with pytest.raises(ValueError, match=r"p \(probability of mixing\) must be in \[0, 1\]; got 2"):
        create_method("cutmix", p=2)
    with pytest.raises(ValueError, match=r"mode must be 'batch'"):
        create_method("mixup", mode="pixel")


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match=r"method name 'mixup' is already registered by mixbench.methods.mixup"):

        @register_method
        class Imposter(InputMixer):
            name = "mixup"


def test_module_class_reference_and_third_party_registration():
    cls = get_method_class("mixbench.methods.mixup:Mixup")
    assert cls.name == "mixup"

    @register_method
    class Shuffle(InputMixer):  # a third-party method: no core code touched
        name = "test_shuffle_only"

        def sample(self, batch_size, gen):
            return {"index": torch.randperm(batch_size, generator=gen)}

        def mix(self, x, y, index):
            return MixedBatch(x=x[index], y_a=y[index], y_b=y[index], lam=torch.tensor(1.0))

    assert "test_shuffle_only" in list_methods()
    assert isinstance(create_method("test_shuffle_only"), Shuffle)


def test_entry_point_methods_are_found(monkeypatch):
    from importlib.metadata import EntryPoint

    import mixbench.methods.registry as registry
    import mixbench.registry as generic

    ep = EntryPoint(name="ep_mixup", value="mixbench.methods.mixup:Mixup", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(generic, "entry_points", lambda group: [ep] if group == ep.group else [])
    monkeypatch.setattr(registry.METHODS, "_loaded", False)
    monkeypatch.setitem(registry._REGISTRY, "__sentinel__", "x:y")  # restored by monkeypatch
    assert "ep_mixup" in list_methods()
    assert create_method("ep_mixup", alpha=0.5).alpha == 0.5
    registry._REGISTRY.pop("ep_mixup")


def test_not_a_method_is_rejected():
    with pytest.raises(ValueError, match=r"'torch.nn:Linear' resolves to .* not a mixbench Method subclass"):
        get_method_class("torch.nn:Linear")


# ---- loss ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixed_cross_entropy_equals_soft_target_cross_entropy(smoothing):
    torch.manual_seed(0)
    logits, k = torch.randn(6, 5), 5
    y_a, y_b = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 3, 0, 2, 4])
    lam = torch.rand(6, dtype=torch.float64)
    batch = MixedBatch(x=torch.zeros(6), y_a=y_a, y_b=y_b, lam=lam)
    targets = batch.soft_targets(k)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    smoothed = targets * (1 - smoothing) + smoothing / k
    expected = F.cross_entropy(logits, smoothed)
    assert torch.allclose(mixed_cross_entropy(logits, y_a, y_b, lam, smoothing), expected, atol=1e-6)


def test_per_sample_lambda_is_not_collapsed_to_the_batch_mean():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    y_a, y_b = torch.tensor([0, 0]), torch.tensor([1, 1])
    per_sample = mixed_cross_entropy(logits, y_a, y_b, torch.tensor([1.0, 0.0]))
    batch_mean = mixed_cross_entropy(logits, y_a, y_b, torch.tensor(0.5))
    assert per_sample < batch_mean - 1.0


def test_beta_draws_follow_the_generator():
    assert torch.equal(sample_beta(1.0, 5, gen(3)), sample_beta(1.0, 5, gen(3)))
    assert not torch.equal(sample_beta(1.0, 5, gen(3)), sample_beta(1.0, 5, gen(4)))
    draws = sample_beta(2.0, 20000, gen(0))
    assert abs(draws.mean().item() - 0.5) < 0.01 and abs(draws.var().item() - 0.05) < 0.003  # Beta(2,2)


# ---- input mixers: shared properties ---------------------------------------------------------------------

MIXERS = [
    ("vanilla", {}),
    ("mixup", {}),
    ("mixup", {"mode": "elem"}),
    ("cutmix", {}),
    ("cutmix", {"mode": "elem"}),
    ("cutmix", {"alpha": 0.2, "p": 0.5}),
]


@pytest.mark.parametrize(("name", "hp"), MIXERS)
@pytest.mark.parametrize("n", [1, 5, 8])
def test_mixer_properties(name, hp, n):
    method = create_method(name, **hp)
    x, y = unique_batch(n)
    before = x.clone()
    a = method(x, y, gen(7))
    b = method(x, y, gen(7))
    assert torch.equal(x, before), "the caller's tensor must never be modified"
    assert torch.equal(a.x, b.x) and torch.equal(a.lam, b.lam), "same seed must give the identical batch"
    assert a.x.shape == x.shape
    lam = a.per_sample_lam()
    assert ((lam >= 0) & (lam <= 1)).all()
    targets = a.soft_targets(n)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    # Labels come from real pairs: y_a is the sample itself, y_b its partner in the batch.
    assert torch.equal(a.y_a, y) and set(a.y_b.tolist()) <= set(y.tolist())


def test_different_seeds_give_different_batches():
    x, y = unique_batch(16)
    for name in ("mixup", "cutmix"):
        m = create_method(name)
        assert not torch.equal(m(x, y, gen(1)).x, m(x, y, gen(2)).x)


# ---- mixup -----------------------------------------------------------------------------------------------


def test_mixup_is_the_reference_convex_combination():
    x, y = unique_batch(6)
    m = create_method("mixup", alpha=1.0)
    drawn = m.sample(6, gen(0))
    out = m.mix(x, y, **drawn)
    lam, index = float(drawn["lam"]), drawn["index"]
    assert torch.equal(out.x, lam * x + (1 - lam) * x[index])
    assert torch.equal(out.y_b, y[index]) and out.lam.dim() == 0


def test_mixup_elem_mode_mixes_each_sample_with_its_own_lambda():
    x, y = unique_batch(6)
    m = create_method("mixup", mode="elem")
    drawn = m.sample(6, gen(0))
    out = m.mix(x, y, **drawn)
    assert drawn["lam"].shape == (6,) and len(set(drawn["lam"].tolist())) == 6
    for i in range(6):
        lam, j = float(drawn["lam"][i]), int(drawn["index"][i])
        assert torch.allclose(out.x[i], lam * x[i] + (1 - lam) * x[j])


def test_p_zero_never_mixes_and_p_half_mixes_about_half():
    x, y = unique_batch(4)
    never = create_method("mixup", p=0.0)
    for seed in range(5):
        out = never(x, y, gen(seed))
        assert torch.equal(out.x, x) and float(out.lam) == 1.0
    half = create_method("mixup", p=0.5, mode="elem")
    lam = half.sample(4000, gen(0))["lam"]
    assert abs((lam < 1).float().mean().item() - 0.5) < 0.03


# ---- cutmix ----------------------------------------------------------------------------------------------


def reference_cutmix_box(lam: float, cy: int, cx: int, h: int, w: int) -> tuple[int, int, int, int]:
    """openmixup's rand_bbox with the centre given (REFERENCE.md §3), written out independently."""
    r = math.sqrt(1.0 - lam)
    ch, cw = int(h * r), int(w * r)
    return (
        min(max(cy - ch // 2, 0), h), min(max(cy + ch // 2, 0), h),
        min(max(cx - cw // 2, 0), w), min(max(cx + cw // 2, 0), w),
    )


def test_cutmix_box_matches_the_reference_and_lambda_is_one_minus_the_area():
    x, y = unique_batch(5, h=16, w=12)
    m = create_method("cutmix", alpha=1.0)
    for seed in range(50):
        drawn = m.sample(5, gen(seed))
        out = m.mix(x, y, **drawn)
        cy, cx = int(drawn["center"][0] * 16), int(drawn["center"][1] * 12)
        y1, y2, x1, x2 = reference_cutmix_box(float(drawn["lam"]), cy, cx, 16, 12)
        expected = x.clone()
        expected[:, :, y1:y2, x1:x2] = x[drawn["index"]][:, :, y1:y2, x1:x2]
        assert torch.equal(out.x, expected)
        assert float(out.lam) == 1 - (y2 - y1) * (x2 - x1) / (16 * 12)  # exact, from the clipped box
        changed = (out.x != x).any(dim=1)  # pixels replaced, per sample (unique values => exact)
        for i in range(5):
            if drawn["index"][i] != i:
                assert changed[i].sum().item() == (y2 - y1) * (x2 - x1)
        assert torch.allclose(out.mask.double().mean(dim=(1, 2, 3)), out.lam.expand(5), rtol=0, atol=1e-12)


def test_cutmix_box_is_clipped_at_the_border():
    boxes = box_bounds(torch.tensor(0.0, dtype=torch.float64), torch.tensor([0.0, 0.99]), 32, 32)
    assert boxes.tolist() == [0, 16, 15, 32]  # a full-size box centred at (0, 31) keeps one quadrant


def test_cutmix_elem_mode_gives_each_sample_its_own_box_and_lambda():
    x, y = unique_batch(8, h=32, w=32)
    m = create_method("cutmix", mode="elem", alpha=1.0)
    out = m(x, y, gen(3))
    assert out.lam.shape == (8,) and len(set(out.lam.tolist())) > 1
    assert torch.allclose(out.mask.double().mean(dim=(1, 2, 3)), out.lam, rtol=0, atol=1e-12)
    kept = out.mask.bool().expand_as(x)
    assert torch.equal(out.x[kept], x[kept])


def test_cutmix_center_is_uniform_over_the_whole_image():
    drawn = CutMix(mode="elem").sample(20000, gen(0))["center"]
    pixel = (drawn[:, 0] * 4).floor()
    counts = torch.bincount(pixel.long(), minlength=4).float() / 20000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)


# ---- the training step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vanilla", "mixup", "cutmix"])
def test_training_loss_trains_the_backbone_and_nothing_else(name):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    method = create_method(name)
    method.setup(backbone, 5)
    x, y = torch.randn(6, 3, 8, 8, requires_grad=False), torch.tensor([0, 1, 2, 3, 4, 0])
    out = method.training_loss(backbone, x, y, gen(0))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    assert list(method.parameters()) == [] and x.grad is None
    assert 0.0 <= out.logs["lam"] <= 1.0


# ---- hyper-parameters written once, one draw for the Beta mixers ----------------------------------------


@pytest.mark.parametrize("name", list_methods())  # the built-ins: collected before any test registers one
def test_hparams_are_every_init_keyword_with_its_value(name):
    from mixbench.methods.registry import method_hparam_names

    cls = get_method_class(name)
    assert list(create_method(name).hparams()) == method_hparam_names(cls)
    changed = {"label_smoothing": 0.1, **({"alpha": 0.3} if "alpha" in method_hparam_names(cls) else {})}
    assert create_method(name, **changed).hparams().items() >= changed.items()


def test_hparams_of_a_method_that_does_not_keep_its_argument_is_a_clear_error():
    class Forgetful(InputMixer):
        def __init__(self, strength: float = 1.0):
            super().__init__()

    with pytest.raises(AttributeError, match=r"Forgetful takes hyper-parameter 'strength' but keeps no attribute "
                                             r"of that name; store it as self.strength in __init__ or override"):
        Forgetful().hparams()


@pytest.mark.parametrize("name", ["mixup", "cutmix", "saliencymix"])
def test_beta_mixers_share_one_draw_of_lambda(name):
    from mixbench.methods.base import BetaMixer, draw_lam

    method = create_method(name, alpha=0.5, p=0.5, mode="elem")
    assert isinstance(method, BetaMixer)
    drawn, g = method.sample(9, gen(4)), gen(4)
    assert torch.equal(drawn["lam"], draw_lam(0.5, 0.5, "elem", 9, g))
    assert torch.equal(drawn["index"], method.permutation(9, g))


# ---- CutMix's permutation, as openmixup's _no_repeat_shuffle_idx ----------------------------------------


def test_cutmix_almost_never_pairs_a_sample_with_itself():
    # A plain permutation of 16 has a fixed point 63 % of the time; after ten redraws, 0.6 % (0.632^11).
    method = create_method("cutmix")
    self_paired = 0
    for seed in range(300):
        index = method.sample(16, gen(seed))["index"]
        assert sorted(index.tolist()) == list(range(16))
        self_paired += bool((index == torch.arange(16)).any())
    assert self_paired <= 8


def test_cutmix_redraws_at_most_ten_times_and_keeps_the_last_draw():
    from mixbench.methods.base import permutation_avoiding_self_pairs

    for seed in range(20):
        # The reference, written out: a first draw, then up to ten redraws while some sample keeps its place.
        g = gen(seed)
        draws = [torch.randperm(3, generator=g)]
        while (draws[-1] == torch.arange(3)).any() and len(draws) < 11:
            draws.append(torch.randperm(3, generator=g))
        assert torch.equal(permutation_avoiding_self_pairs(3, gen(seed)), draws[-1])
    # One sample can only be paired with itself: eleven draws, the last one kept.
    g = gen(0)
    assert torch.equal(permutation_avoiding_self_pairs(1, g), torch.zeros(1, dtype=torch.long))
    assert torch.equal(g.get_state(), (lambda h: ([torch.randperm(1, generator=h) for _ in range(11)], h)[1])(
        gen(0)).get_state())


def test_mixup_keeps_the_plain_permutation():
    index = create_method("mixup").sample(64, gen(0))["index"]
    g = gen(0)
    sample_beta(1.0, 1, g)
    assert torch.equal(index, torch.randperm(64, generator=g))

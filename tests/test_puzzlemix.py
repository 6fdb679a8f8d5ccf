"""PuzzleMix: the mask (graph cut), the transport, the saliency pass and the training step."""

from __future__ import annotations

import copy
import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixbench.methods import create_method
from mixbench.methods.cards import load_card
from mixbench.methods.puzzlemix import (
    PuzzleMix,
    apply_transport,
    grid_sizes,
    transport_cost_matrix,
    transport_sources,
)

needs_gco = pytest.mark.skipif(importlib.util.find_spec("gco") is None,
                               reason="needs gco-wrapper (pip install 'mixbench[puzzlemix]')")
CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
CIFAR_STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    g = gen(seed)
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(height, width), mode="bilinear")
    pixels = (0.8 * coarse + 0.2 * torch.rand(n, 3, height, width, generator=g)).clamp(0, 1)
    return (pixels - CIFAR_MEAN) / CIFAR_STD


def spread_saliency(n: int, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, height, width, generator=gen(seed)) + 0.2


def small_cnn(classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


# ---- an independent oracle of the reference (REFERENCE.md §5), gco called as the reference calls it --------


def oracle_puzzlemix(x, saliency, index, a, grid, t_size=-1, beta=1.2, gamma=0.5, eta=0.2, neigh=4, t_eps=0.8):
    """Reference PuzzleMix for square images and n_labels=3: graph cut per sample in gco's float mode,
    the dense greedy transport loop, the 0/1-plan matmul. Returns (mixed, mask (N, 1, H, W))."""
    import gco

    n, _, _, width = x.shape
    block = width // grid
    neigh = min(neigh, block)
    beta = beta / grid / 16

    def normalised_pool(size):
        pooled = F.avg_pool2d(saliency, size)
        return pooled / pooled.reshape(n, -1).sum(1).reshape(n, 1, 1)

    def edge_terms(top, bottom, k):  # |difference| across block edges, channel- and edge-averaged
        rows = (top[:, :, :-1] - bottom[:, :, 1:])[:, :, k - 1::k].abs().mean(1)
        cols = (top[:, :, :, :-1] - bottom[:, :, :, 1:])[:, :, :, k - 1::k].abs().mean(1)
        return F.avg_pool2d(rows, (1, k)), F.avg_pool2d(cols, (k, 1))

    u1 = normalised_pool(block)
    u2 = u1[index]
    p1 = F.avg_pool2d(x * CIFAR_STD + CIFAR_MEAN, neigh)
    pooled = {0: p1[index], 1: p1}  # 0: the partner, 1: the image itself (the reference's pw[:, i, j] order)
    vx, vy = {}, {}
    for i in (0, 1):
        for j in (0, 1):
            rows, cols = edge_terms(pooled[i], pooled[j], block // neigh)
            vx[i, j], vy[i, j] = beta * gamma * rows, beta * gamma * cols
    f1, f2 = u1.clone(), u2.clone()
    f2[:, :-1, :] += (vx[1, 0] + vx[1, 1]) / 2.0
    f1[:, :-1, :] += (vx[0, 1] + vx[0, 0]) / 2.0
    f2[:, 1:, :] += (vx[0, 1] + vx[1, 1]) / 2.0
    f1[:, 1:, :] += (vx[1, 0] + vx[0, 0]) / 2.0
    f2[:, :, :-1] += (vy[1, 0] + vy[1, 1]) / 2.0
    f1[:, :, :-1] += (vy[0, 1] + vy[0, 0]) / 2.0
    f2[:, :, 1:] += (vy[0, 1] + vy[1, 1]) / 2.0
    f1[:, :, 1:] += (vy[1, 0] + vy[0, 0]) / 2.0
    ex = ((vx[1, 0] + vx[0, 1] - vx[1, 1] - vx[0, 0]) / 2).numpy()
    ey = ((vy[1, 0] + vy[0, 1] - vy[1, 1] - vy[0, 0]) / 2).numpy()
    scale = 1000 * grid**2
    prior = eta * np.array([-np.log(a**2 + 1e-8), -np.log(2 * a * (1 - a) + 1e-8), -np.log((1 - a) ** 2 + 1e-8)])
    prior = prior / grid**2
    label_cost = np.array([[(i - j) ** 2 / 4 for j in range(3)] for i in range(3)], dtype=np.float32)
    masks = []
    for s in range(n):
        unary = np.stack([(1 - t) * f2[s].numpy() + t * f1[s].numpy() + prior[l]
                          for l, t in enumerate(np.linspace(0, 1, 3))], axis=-1)
        labels = gco.cut_grid_graph((scale * unary).astype(np.int32), label_cost,
                                    (scale * (ex[s] + beta)).astype(np.int32),
                                    (scale * (ey[s] + beta)).astype(np.int32), algorithm="swap")
        masks.append(1.0 - labels.reshape(grid, grid) / 2)
    mask = torch.tensor(np.stack(masks), dtype=torch.float32)[:, None]
    first, second = x.clone(), x[index].clone()
    t_block = block if t_size == -1 else min(t_size, block)
    t_grid = grid
    if t_block < block:
        t_grid = width // t_block
        mask = F.interpolate(mask, size=t_grid)
        u1 = normalised_pool(t_block)
        u2 = u1[index]
    first = oracle_transport(first, oracle_plan(mask[:, 0], u1, t_eps), t_grid)
    second = oracle_transport(second, oracle_plan(1 - mask[:, 0], u2, t_eps), t_grid)
    mask = F.interpolate(mask, size=width)
    return mask * first + (1 - mask) * second, mask


def oracle_plan(mask, saliency, eps):
    """The reference's dense greedy transport: (N, T, T) 0/1 plan, source rows × destination columns."""
    n, grid, _ = mask.shape
    rows = torch.arange(grid * grid) // grid
    cols = torch.arange(grid * grid) % grid
    distance = ((rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2).float() / (grid - 1) ** 2
    cost = eps * distance - saliency.reshape(n, -1, 1) * (mask > 0).float().reshape(n, 1, -1)
    for _ in range(grid):
        chosen = torch.zeros_like(cost).scatter_(-1, cost.min(-1)[1][..., None], 1)
        winners = torch.zeros_like(cost).scatter_(-2, (chosen * cost).min(-2)[1][:, None], 1) * chosen
        cost += (1 - winners) * chosen
    return winners


def oracle_transport(x, plan, grid):
    n, c, h, w = x.shape
    patches = x.reshape(n, c, grid, h // grid, grid, w // grid).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, -1)
    moved = torch.einsum("nij,nik->njk", plan, patches)  # destination j = sum_i plan[i, j] * patch_i
    return moved.reshape(n, grid, grid, c, h // grid, w // grid).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


# ---- the mask ------------------------------------------------------------------------------------------------


@needs_gco
@pytest.mark.parametrize("t_size", [-1, 4])
@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_mask_and_mix_equal_the_reference(grid, t_size):
    x, y, saliency = images(7, seed=grid), torch.arange(7), spread_saliency(7, seed=grid)
    index = torch.randperm(7, generator=gen(grid))
    method = PuzzleMix(t_size=t_size)
    for a in (0.15, 0.5, 0.9) if grid < 16 else (0.3,):  # the oracle's dense 256×256 plans are slow
        out = method.mix(x, y, saliency, index, torch.tensor(a, dtype=torch.float64), grid)
        expected_x, expected_mask = oracle_puzzlemix(x, saliency, index, a, grid, t_size=t_size)
        assert torch.equal(out.mask, expected_mask), f"grid {grid}, a {a}"
        assert torch.allclose(out.x, expected_x, rtol=0, atol=1e-6)


@needs_gco
@pytest.mark.parametrize("n_labels", [2, 3, 4])
@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_lambda_is_the_mask_mean_and_masks_take_the_label_weights(grid, n_labels):
    x, y = images(5, seed=1), torch.arange(5)
    method = PuzzleMix(n_labels=n_labels)
    out = method.mix(x, y, spread_saliency(5) ** 3, torch.tensor([2, 0, 4, 1, 3]), torch.tensor(0.4), grid)
    assert out.lam.dtype == torch.float64 and out.lam.shape == (5,)
    assert torch.equal(out.lam, out.mask.double().mean(dim=(1, 2, 3)))
    allowed = set(torch.tensor([i / (n_labels - 1) for i in range(n_labels)], dtype=torch.float32).tolist())
    assert set(out.mask.unique().tolist()) <= allowed
    assert torch.equal(out.y_a, y) and torch.equal(out.y_b, torch.tensor([2, 0, 4, 1, 3]))
    blocks = out.mask.reshape(5, grid, 32 // grid, grid, 32 // grid)  # constant within each graph-cut block
    assert (blocks == blocks[:, :, :1, :, :1]).all()


@needs_gco
def test_reference_overflows_on_concentrated_saliency_and_the_integer_cut_does_not():
    """REFERENCE.md §10.8: gco's float mode multiplies int32 unaries by 1e5 and wraps around. With all the
    saliency in one block per image, the reference's cut shows each image's salient block to the *other* one."""
    import gco

    from mixbench.methods._graphcut import solve_grid_cuts

    grid, scale, beta = 8, 1000 * 64, 1.2 / 8 / 16
    u_self = np.full((grid, grid), 0.02 / 63, np.float32)
    u_self[0, 0] = 0.98
    u_partner = u_self[::-1, ::-1].copy()
    prior = 0.2 * -np.log(np.array([0.25, 0.5, 0.25]) + 1e-8) / grid**2  # a = 0.5
    unary = (scale * np.stack([(1 - t) * u_partner + t * u_self + prior[l]
                               for l, t in enumerate((0.0, 0.5, 1.0))], -1)).astype(np.int32)
    edges_v, edges_h = np.full((7, 8), int(scale * beta), np.int32), np.full((8, 7), int(scale * beta), np.int32)
    assert int(unary.max()) * 100_000 > 2**31 - 1  # what float mode feeds to int32
    label_cost = np.array([[(i - j) ** 2 / 4 for j in range(3)] for i in range(3)], dtype=np.float32)
    reference = 1 - gco.cut_grid_graph(unary, label_cost, edges_v, edges_h, algorithm="swap").reshape(8, 8) / 2
    ours = 1 - solve_grid_cuts((unary * 4)[None], edges_v[None], edges_h[None])[0] / 2
    assert (ours[0, 0], ours[-1, -1]) == (1.0, 0.0)  # each image keeps its own salient block
    assert (reference[0, 0], reference[-1, -1]) == (0.0, 1.0)  # the overflow inverts it


@needs_gco
def test_integer_graph_cut_equals_gcos_own_call_and_threads_change_nothing():
    import gco

    from mixbench.methods._graphcut import solve_grid_cuts

    rng = np.random.default_rng(0)
    for grid in (2, 4, 8, 16):
        unary = rng.integers(0, 4000, (6, grid, grid, 3)).astype(np.int32)
        cost_v = rng.integers(0, 3000, (6, grid - 1, grid)).astype(np.int32)
        cost_h = rng.integers(0, 3000, (6, grid, grid - 1)).astype(np.int32)
        label_cost = np.array([[(i - j) ** 2 for j in range(3)] for i in range(3)], dtype=np.int32)
        expected = np.stack([gco.cut_grid_graph(unary[i], label_cost, cost_v[i], cost_h[i], algorithm="swap")
                             for i in range(6)]).reshape(6, grid, grid)
        assert np.array_equal(solve_grid_cuts(unary, cost_v, cost_h, workers=1), expected)
        assert np.array_equal(solve_grid_cuts(unary, cost_v, cost_h, workers=3), expected)


# ---- the transport ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_transport_plan_is_the_reference_greedy_plan(grid):
    """Including its ties and quirks: zero saliency, all-visible and all-hidden masks, eps 0 and large."""
    g = gen(grid)
    for trial in range(12 if grid < 16 else 6):
        mask = torch.randint(0, 3, (6, grid, grid), generator=g).float() / 2
        mask = torch.ones_like(mask) if trial % 4 == 1 else torch.zeros_like(mask) if trial % 4 == 2 else mask
        saliency = torch.rand(6, grid, grid, generator=g) ** (1 + 3 * (trial % 3))
        if trial % 2:
            saliency[:, : grid // 2] = 0
        saliency = saliency / saliency.sum((1, 2), keepdim=True)
        eps = (0.8, 0.0, 0.1, 10.0)[trial % 4]
        sources = transport_sources(mask, saliency, eps)
        plan = torch.zeros(6, grid * grid, grid * grid)
        filled = sources >= 0
        plan[torch.arange(6)[:, None].expand_as(sources)[filled], sources[filled],
             torch.arange(grid * grid).expand_as(sources)[filled]] = 1
        assert torch.equal(plan, oracle_plan(mask, saliency, eps)), f"trial {trial}"


def test_each_destination_gets_at_most_one_source_and_the_plan_depends_only_on_its_inputs():
    g = gen(0)
    mask = torch.randint(0, 2, (9, 8, 8), generator=g).float()
    saliency = torch.rand(9, 8, 8, generator=g)
    saliency /= saliency.sum((1, 2), keepdim=True)
    sources = transport_sources(mask, saliency, 0.8)
    for row in sources:
        used = row[row >= 0]
        assert len(used) == len(set(used.tolist())), "a source block went to two destinations"
    assert torch.equal(sources, transport_sources(mask.clone(), saliency.clone(), 0.8))
    for i in range(9):  # a sample's plan does not depend on the rest of the batch
        assert torch.equal(sources[i : i + 1], transport_sources(mask[i : i + 1], saliency[i : i + 1], 0.8))
    assert transport_cost_matrix(8, "cpu") is transport_cost_matrix(8, "cpu")  # built once per grid


def test_transport_moves_whole_patches_and_blanks_unfilled_destinations():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12) + 1
    sources = torch.tensor([[3, -1, 0, 1], [0, 1, 2, 3]])
    out = apply_transport(x, sources, 2)
    patch = lambda t, n, k: t[n, :, (k // 2) * 4 : (k // 2) * 4 + 4, (k % 2) * 6 : (k % 2) * 6 + 6]  # noqa: E731
    assert torch.equal(patch(out, 0, 0), patch(x, 0, 3)) and torch.equal(patch(out, 0, 2), patch(x, 0, 0))
    assert torch.equal(patch(out, 0, 3), patch(x, 0, 1)) and (patch(out, 0, 1) == 0).all()
    assert torch.equal(out[1], x[1])


# ---- the saliency pass -----------------------------------------------------------------------------------------


def model_state(model: nn.Module) -> dict:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def all_equal(first, second, equal=torch.equal) -> bool:
    pairs = list(zip(first, second, strict=True))
    return all((a is None and b is None) or (a is not None and b is not None and equal(a, b)) for a, b in pairs)


def assert_same_state(before: dict, after: dict) -> None:
    assert all_equal(before["params"], after["params"])
    assert all_equal(before["grads"], after["grads"]), ".grad changed"
    assert all_equal(before["buffers"], after["buffers"]), "BN statistics changed"
    assert before["modes"] == after["modes"], "a module's train/eval flag changed"
    assert torch.equal(before["rng"], after["rng"]), "the global RNG was used"


def test_saliency_pass_changes_no_model_state_and_is_the_input_gradient_rms():
    model = small_cnn()
    model.train()
    model[1].eval()  # a deliberately frozen BN must stay in eval mode
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)  # accumulated gradients must survive
    x, y = images(5), torch.tensor([0, 1, 2, 3, 4])
    before = model_state(model)
    saliency, grad, clean = PuzzleMix().saliency_pass(model, x, y)
    assert_same_state(before, model_state(model))
    assert clean is None and saliency.shape == (5, 32, 32)
    twin = copy.deepcopy(model).eval()
    inputs = x.clone().requires_grad_(True)
    F.cross_entropy(twin(inputs), y).backward()
    assert torch.allclose(grad, inputs.grad) and torch.allclose(saliency, inputs.grad.pow(2).mean(1).sqrt())


def test_clean_lam_trains_on_the_clean_batch_in_train_mode():
    model, x, y = small_cnn(), images(6), torch.tensor([0, 1, 2, 3, 4, 0])
    twin = copy.deepcopy(model)
    torch.manual_seed(3)
    saliency, grad, clean = PuzzleMix(clean_lam=0.5).saliency_pass(model, x, y)
    torch.manual_seed(3)  # the same dropout draw for the twin
    inputs = x.clone().requires_grad_(True)
    loss = F.cross_entropy(twin(inputs), y)
    (0.5 * loss).backward()
    close = lambda a, b: torch.allclose(a, b, atol=1e-6)  # noqa: E731
    assert all_equal((p.grad for p in model.parameters()), (q.grad for q in twin.parameters()), close)
    assert all_equal(model.buffers(), twin.buffers()), "BN saw the clean batch once"
    assert torch.allclose(grad, inputs.grad) and torch.allclose(clean, loss.detach())
    assert model.training


@needs_gco
def test_clean_lam_adds_the_clean_loss_to_the_reported_loss():
    model, x, y = small_cnn(), images(6), torch.tensor([0, 1, 2, 3, 4, 0])
    out = PuzzleMix(clean_lam=0.5, block_num=[2, 3]).training_loss(model, x, y, gen(0))
    assert out.logs["clean_loss"] > 0 and out.loss.requires_grad
    assert all(p.grad is not None for p in model.parameters()), "the clean gradients are already accumulated"


# ---- the training step ---------------------------------------------------------------------------------------


@needs_gco
def test_training_loss_is_per_sample_soft_target_ce_and_trains_the_backbone_only():
    model, x, y = small_cnn(), images(7), torch.tensor([0, 1, 2, 3, 4, 0, 1])
    model[3].p = 0.0  # no dropout, so the step can be replayed
    twin = copy.deepcopy(model)
    method = create_method("puzzlemix", block_num=5, t_size=4)
    method.setup(model, 5)
    out = method.training_loss(model, x, y, gen(1))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert list(method.parameters()) == [] and x.grad is None
    assert out.logs["grid"] in (2.0, 4.0, 8.0, 16.0) and 0 <= out.logs["lam"] <= 1
    # Replay the step's draws: the loss is the soft-target CE of the realised per-sample λ.
    drawn = method.sample(7, gen(1))
    saliency, _, _ = method.saliency_pass(twin, x, y)
    mixed = method.mix(x, y, saliency, **drawn)
    targets = mixed.soft_targets(5)
    with torch.no_grad():
        expected = torch.sum(-targets * F.log_softmax(twin(mixed.x), -1), -1).mean()
    assert torch.allclose(out.loss.detach(), expected, atol=1e-5)
    assert out.logs["lam"] == pytest.approx(float(mixed.lam.mean()))


@needs_gco
def test_same_seed_same_batch_different_seed_different_batch():
    x, y, saliency = images(8), torch.arange(8), spread_saliency(8)
    method = PuzzleMix(block_num=5, t_size=4)
    first = method.mix(x, y, saliency, **method.sample(8, gen(5)))
    again = method.mix(x, y, saliency, **method.sample(8, gen(5)))
    assert torch.equal(first.x, again.x) and torch.equal(first.lam, again.lam)
    assert any(not torch.equal(first.x, method.mix(x, y, saliency, **method.sample(8, gen(s))).x) for s in (6, 7))


def test_grid_is_drawn_from_the_exponent_range():
    assert grid_sizes(5) == [2, 4, 8, 16] and grid_sizes(4) == [2, 4, 8] and grid_sizes([2, 4]) == [4, 8]
    method = PuzzleMix(block_num=5)
    draws = [method.sample(4, gen(s))["grid"] for s in range(400)]
    counts = {g: draws.count(g) / 400 for g in (2, 4, 8, 16)}
    assert set(draws) == {2, 4, 8, 16} and all(abs(c - 0.25) < 0.07 for c in counts.values())


@needs_gco
def test_adversarial_perturbation_is_fgsm_sized_and_applied_before_mixing(monkeypatch):
    x, y, model = images(6), torch.arange(6) % 5, small_cnn()
    clean_method = PuzzleMix(transport=False, block_num=[2, 3])
    adv_method = PuzzleMix(transport=False, block_num=[2, 3], adv_p=1.0, adv_eps=8.0)
    seen = []
    original = PuzzleMix.saliency_pass

    def spy(self, backbone, inputs, targets):
        seen.append(inputs)
        return original(self, backbone, inputs, targets)

    monkeypatch.setattr(PuzzleMix, "saliency_pass", spy)
    drawn = adv_method.sample(6, gen(2))
    assert drawn["adv_first"] and drawn["adv_partner"]
    adv_method.training_loss(model, x, y, gen(2))
    pixel_step = ((seen[0] - x) * CIFAR_STD).abs()
    assert 0 < pixel_step.max() <= 8 / 255 + 1e-6, "the random start is U(±eps/255) in pixel units"
    saliency, grad, _ = original(adv_method, model, seen[0], y)
    noise = torch.full_like(x, 0.01)
    mixed_adv = adv_method.mix(x, y, saliency, noise=noise, **drawn)
    mixed_clean = clean_method.mix(x, y, saliency, **{k: drawn[k] for k in ("index", "prior", "grid")})
    change = ((mixed_adv.x - mixed_clean.x) * CIFAR_STD).abs()
    assert torch.equal(mixed_adv.mask, mixed_clean.mask)
    assert 0 < change.max() <= 0.01 + 1e-6


# ---- shapes, configuration, dependencies ---------------------------------------------------------------------


@needs_gco
def test_non_square_images_and_odd_batches_work_where_the_grid_fits():
    x, y = images(3, 32, 64), torch.arange(3)
    method = PuzzleMix(block_num=4)
    method.check_input((32, 64), "resnet18")
    for grid in (2, 4, 8):
        out = method.mix(x, y, spread_saliency(3, 32, 64), torch.tensor([1, 2, 0]), torch.tensor(0.5), grid)
        assert out.x.shape == x.shape and torch.equal(out.lam, out.mask.double().mean(dim=(1, 2, 3)))
    single = method.mix(x[:1], y[:1], spread_saliency(1, 32, 64), torch.tensor([0]), torch.tensor(0.5), 4)
    assert single.lam.shape == (1,) and torch.equal(single.y_b, y[:1])
    # 1-channel 28-px images (Fashion-MNIST): grids 2 and 4 (14- and 7-px blocks) with 7-px neighbourhoods.
    grey = PuzzleMix(block_num=3, neigh_size=7, mean=[0.286], std=[0.353])
    grey.check_input((28, 28), "resnet18")
    index = torch.tensor([4, 3, 2, 1, 0])
    out = grey.mix(torch.randn(5, 1, 28, 28), torch.arange(5), spread_saliency(5, 28, 28), index, torch.tensor(0.3), 4)
    assert torch.equal(out.lam, out.mask.double().mean(dim=(1, 2, 3)))


def test_shape_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"PuzzleMix at 224×224 px with a 16×16 grid: blocks of 14×14 px are not a "
                                         r"whole number of neigh_size=4 cells .* fix: use block_num=\[1, 4\] "
                                         r"\(grids 2, 4, 8\)"):
        PuzzleMix(block_num=5).check_input((224, 224), "resnet18")
    PuzzleMix(block_num=4).check_input((224, 224), "resnet18")
    with pytest.raises(ValueError, match=r"at 28×28 px with a 8×8 grid: the image does not divide into 8 blocks"):
        PuzzleMix(block_num=4).check_input((28, 28), "resnet18")
    with pytest.raises(ValueError, match=r"t_size=4 gives a 56×56 transport grid"):
        PuzzleMix(block_num=4, t_size=4).check_input((224, 224), "resnet18")
    with pytest.raises(ValueError, match=r"blocks of 14×14 px are not a whole number of neigh_size=4"):
        PuzzleMix().mix(torch.zeros(2, 3, 224, 224), torch.arange(2), torch.ones(2, 224, 224), torch.tensor([1, 0]),
                        torch.tensor(0.5), 16)
    with pytest.raises(ValueError, match=r"de-normalises with 3-channel mean/std but the batch has 1 channels; pass "
                                         r"mean=\[...\] and std=\[...\]"):
        PuzzleMix().mix(torch.zeros(2, 1, 32, 32), torch.arange(2), torch.ones(2, 32, 32), torch.tensor([1, 0]),
                        torch.tensor(0.5), 4)


def test_bad_hyper_parameters_are_clear():
    with pytest.raises(ValueError, match=r"block_num=1 gives no grid: the grid is 2\*\*e for e in \[1, 1\)"):
        PuzzleMix(block_num=1)
    with pytest.raises(ValueError, match=r"block_num must be an int or a pair \[lo, hi\]; got 'x'"):
        PuzzleMix(block_num="x")
    with pytest.raises(ValueError, match=r"n_labels must be 2, 3 or 4"):
        PuzzleMix(n_labels=5)
    with pytest.raises(ValueError, match=r"adv_p \(probability of the adversarial perturbation\) must be in \[0, 1\]"):
        PuzzleMix(adv_p=2)
    with pytest.raises(ValueError, match=r"give mean and std together"):
        PuzzleMix(mean=[0.5])
    with pytest.raises(ValueError, match=r"t_size must be -1"):
        PuzzleMix(t_size=0)


def test_missing_gco_names_the_extra(monkeypatch):
    from mixbench.methods import _graphcut

    _graphcut._gco_calls.cache_clear()  # forget the library bound by earlier tests; a failed import is not cached
    monkeypatch.setitem(sys.modules, "gco", None)
    monkeypatch.setitem(sys.modules, "gco.cgco", None)
    with pytest.raises(ValueError, match=r"PuzzleMix's graph cut needs gco: pip install 'mixbench\[puzzlemix\]'"):
        PuzzleMix().check_input((32, 32), "resnet18")
    with pytest.raises(ImportError, match=r"pip install 'mixbench\[puzzlemix\]'"):
        PuzzleMix().mix(images(2), torch.arange(2), spread_saliency(2), torch.tensor([1, 0]), torch.tensor(0.5), 4)


def test_card_matches_the_class():
    card = load_card("puzzlemix")
    assert card["version"] == PuzzleMix.version and card["name"] == PuzzleMix.name
    assert card["families"]["cifar"]["block_num"] == 5 and card["families"]["cifar"]["t_size"] == 4
    assert card["families"]["imagenet"]["block_num"] == 4 and card["families"]["imagenet"]["t_size"] == -1
    for family in ("cifar", "tiny", "imagenet"):
        create_method("puzzlemix", **card["defaults"], **card["families"][family])
    PuzzleMix(**card["defaults"], **card["families"]["cifar"]).check_input((32, 32), "resnet18_cifar")
    PuzzleMix(**card["defaults"], **card["families"]["tiny"]).check_input((64, 64), "resnet18")
    PuzzleMix(**card["defaults"], **card["families"]["imagenet"]).check_input((224, 224), "resnet18")

"""PuzzleMix (Kim, Choo & Song, ICML 2020): a saliency-aware block mask from a graph cut, then optimal transport.

Pipeline per training step, as openmixup's port (`augments/puzzlemix.py`, REFERENCE.md §5) of the official
`mixup_graph` (snu-mllab/PuzzleMix):

1. Saliency: one extra forward/backward of the classifier in eval mode; the saliency is the RMS over channels of
   the input gradient of the mean cross-entropy.
2. Draws: a permutation, the graph-cut prior a ~ Beta(α, α) (λ is *not* drawn: it is the realised mask mean),
   the grid 2**e with e uniform in the `block_num` exponent range (int n: [1, n); pair (lo, hi): [lo, hi)).
3. Graph cut on the grid: per block, unary costs from the block saliency each image would lose (normalised to
   sum to 1 per image), the label prior eta/grid² · -log(binomial(a)), label smoothness beta/grid/16 and data
   smoothness gamma·beta' · mean |colour difference| across block edges (on the de-normalised image pooled by
   `neigh_size`), with the asymmetric part of the data term folded into the unaries exactly as the reference.
   `n_labels=3` gives block weights {1, 0.5, 0} for the first image. Solved by gco's alpha-beta swap.
4. Transport (greedy, approximate OT as the reference): each image's salient blocks move towards destinations
   where it stays visible, at most one source block per destination; unfilled destinations become 0.
5. Mix `m·x1' + (1 - m)·x2'` with λ_i = mean of sample i's mask, trained with per-sample soft targets
   (`mixed_cross_entropy` with the (N,) λ is exactly soft-target CE), so λ is never collapsed to a batch mean.

Restored from the official code (openmixup dropped them):
* `clean_lam` > 0: the saliency pass runs in **train** mode (BN statistics update, dropout active, as the
  official code) and its clean cross-entropy, weighted by clean_lam, is back-propagated at once (its
  gradients are accumulated into the parameters, as the official code, which skips `zero_grad` in that case);
  the returned loss adds its detached value. The official weight is `2·clean_lam/num_classes` against a mixed
  loss of BCE(softmax) averaged over N·num_classes; mixbench's mixed loss is soft-target CE (openmixup's), so
  the factor that converts CE into those BCE units is dropped: the loss is CE_mix + clean_lam·CE_clean.
* `adv_p`, `adv_eps`: with probability adv_p each (independently for the first image and for its partner), an
  FGSM-style perturbation is added before transport: a random start U(±eps/255) (clipped to valid pixels) is
  applied to the input of the saliency pass, then moved by (eps+2)/255·sign(input gradient), clipped to
  ±eps/255 and scaled by u ~ U(0, 1); x' = clip(x·std + mean + noise, 0, 1), re-normalised.

Deliberate deviations from the reference (each fixes a fault; none changes the algorithm):
* **No int32 overflow in gco.** The reference hands gco a float32 label-cost matrix, which puts gco-wrapper in
  float mode and multiplies the int32 unaries by 1e5: on concentrated saliency they wrap around. Here gco gets
  int32 arrays only (label cost (l-m)², unaries ×(n_labels-1)², see `_graphcut.py`): for n_labels 2 and 3 the
  energy is the reference's exactly (the same int32 truncations of 1000·grid² × the costs), so without
  overflow the masks are identical; with overflow they are what the reference intended. For n_labels=4 the
  reference's float mode rounds the label costs (11 and 44 instead of 11.1 and 44.4); here they are exact.
* **Shape constraints are checked, not crashed into.** A grid must divide the image, the block size must be a
  multiple of the neighbourhood (224 px with a 16-grid gives 14-px blocks: a shape error in the reference) and
  the transport grid must be small enough; `check_input` and every step raise ValueError naming the fix.
  Non-square images are supported: the grid is grid×grid blocks of (H/grid)×(W/grid) px (the reference assumes
  H = W; for square images this is the reference).
* **Cost matrices are cached** per transport grid as tensors on the device (the reference rebuilds four of them
  with Python loops on every call), any grid size works (the reference only has 2, 4, 8 and 16).
* **Transport is an index gather** (destination ← its winning source block) instead of a broadcast matmul
  with the 0/1 plan, so `t_batch_size` (memory chunking) is accepted for config compatibility but unused. The
  greedy plan itself is computed exactly as the reference's dense loop, ties and quirks included (a column
  whose contenders all have positive cost gets no winner while some other row did not bid for it).
* **Graph cuts run in parallel** in a persistent thread pool (gco releases the GIL); the reference loops in
  Python or creates a new process pool per call. `graphcut_workers` sets the threads and never the result.
* **The saliency pass changes no model state**: `torch.autograd.grad` on the input only (no parameter `.grad`
  touched, unlike the reference's `zero_grad`), every module's train/eval flag restored exactly, BN running
  statistics untouched (eval mode). Under DDP it runs on the module inside the wrapper: it trains nothing, so
  no gradient sync is due (with clean_lam > 0 it runs through the wrapper, whose backward syncs).
* **All-zero saliency** (e.g. a vanished gradient) gives a uniform block saliency instead of 0/0 = NaN costs;
  edge weights are clipped at 0 (they can only go negative when colours leave [0, 1], i.e. wrong mean/std).
* **λ** is the mask mean in float64 (exact: every block covers the same number of pixels); the reference's is
  the float32 pixel mean.
* **Randomness**: every draw comes from the trial's generator (the reference uses numpy's and torch's global
  RNGs); the adversarial random start is drawn on the CPU from a seed taken from it.
* **mean / std** de-normalise the colours for the data-smoothness term (only std matters there: differences)
  and for the adversarial clip. mixbench normalises with each dataset's own statistics, and a suite passes
  them here (`mixbench.suite` fills in the dataset's mean/std when the card leaves them null). None (outside
  a suite) is the reference's rule: CIFAR statistics below 64 px wide, ImageNet ones otherwise; 1-channel
  data such as Fashion-MNIST needs them given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.distributed import unwrap
from mixbench.methods.base import Method, MixedBatch, StepOutput, mixed_cross_entropy, random_permutation, sample_beta
from mixbench.methods.registry import register_method

# The reference's default de-normalisation statistics (openmixup puzzlemix: `W < 64` -> CIFAR, else ImageNet).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# A transport grid of T blocks costs N·T² floats per iteration and T^(1/2) iterations: 32×32 is already 1M per sample.
MAX_TRANSPORT_GRID = 32


def exponent_range(block_num: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`block_num` as the reference reads it: int n -> exponents [1, n); a pair (lo, hi) -> [lo, hi)."""
    if isinstance(block_num, bool):
        raise ValueError(f"block_num must be an int or a pair [lo, hi]; got {block_num!r}")
    if isinstance(block_num, int):
        low, high = 1, block_num
    elif isinstance(block_num, (tuple, list)) and len(block_num) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in block_num
    ):
        low, high = block_num
    else:
        raise ValueError(f"block_num must be an int or a pair [lo, hi]; got {block_num!r}")
    if not 1 <= low < high:
        raise ValueError(
            f"block_num={block_num!r} gives no grid: the grid is 2**e for e in [{low}, {high}); "
            f"need 1 <= lo < hi (e.g. block_num=4 -> grids 2, 4, 8)"
        )
    return low, high


def grid_sizes(block_num: int | tuple[int, int] | list[int]) -> list[int]:
    low, high = exponent_range(block_num)
    return [2**e for e in range(low, high)]


@dataclass(frozen=True)
class GridPlan:
    """Everything the shapes fix for one grid at one image size."""

    grid: int  # grid × grid blocks for the graph cut
    block_h: int
    block_w: int
    neigh: int  # pooling for the colour differences (px)
    transport_grid: int  # transport on transport_grid × transport_grid patches
    transport_at_block_grid: bool  # True: transport saliency = the graph cut's block saliency


def plan_grid(height: int, width: int, grid: int, neigh_size: int, t_size: int) -> GridPlan:
    """The block, neighbourhood and transport geometry of one grid, or ValueError saying what does not fit."""
    where = f"PuzzleMix at {height}×{width} px with a {grid}×{grid} grid"
    if height % grid or width % grid:
        raise ValueError(f"{where}: the image does not divide into {grid} blocks per side")
    block_h, block_w = height // grid, width // grid
    # The reference: neigh = min(neigh_size, block size), blocks made of whole neigh × neigh cells.
    neigh = min(neigh_size, block_h, block_w)
    if block_h % neigh or block_w % neigh:
        raise ValueError(
            f"{where}: blocks of {block_h}×{block_w} px are not a whole number of neigh_size={neigh} cells "
            f"(the reference crashes here with a shape mismatch)"
        )
    ts = min(t_size, block_w) if t_size != -1 else block_w
    if ts < block_w:  # the reference: transport at t_size px, on a finer grid than the graph cut's
        if block_w % ts:
            raise ValueError(f"{where}: t_size={t_size} does not divide the {block_w}-px blocks")
        transport_grid = width // ts
        if height % transport_grid:
            raise ValueError(f"{where}: the height does not divide into the {transport_grid}-patch transport grid")
        at_block_grid = False
    else:
        transport_grid, at_block_grid = grid, True
    if transport_grid > MAX_TRANSPORT_GRID:
        raise ValueError(
            f"{where}: t_size={t_size} gives a {transport_grid}×{transport_grid} transport grid, whose cost "
            f"matrices take N·{transport_grid}⁴ floats (the reference only supports up to 16)"
        )
    return GridPlan(grid, block_h, block_w, neigh, transport_grid, at_block_grid)


def neighbour_penalty(first: Tensor, second: Tensor, cells_h: int, cells_w: int) -> tuple[Tensor, Tensor]:
    """Mean |colour difference| across block edges when `first` is above/left of `second` (reference's neigh_penalty).

    `first`, `second`: (N, C, h, w) images pooled to neigh cells, `cells_h × cells_w` cells per block. The last
    cell row of each block is compared with the first of the block below, channel-averaged and averaged along
    the edge: (N, grid-1, grid) for vertical neighbours and (N, grid, grid-1) for horizontal ones.
    """
    across_rows = (first[:, :, :-1, :] - second[:, :, 1:, :])[:, :, cells_h - 1::cells_h, :]
    across_cols = (first[:, :, :, :-1] - second[:, :, :, 1:])[:, :, :, cells_w - 1::cells_w]
    vertical = F.avg_pool2d(across_rows.abs().mean(1), kernel_size=(1, cells_w))
    horizontal = F.avg_pool2d(across_cols.abs().mean(1), kernel_size=(cells_h, 1))
    return vertical, horizontal


@lru_cache(maxsize=32)
def transport_cost_matrix(grid: int, device: str) -> Tensor:
    """Squared grid distance between blocks / (grid - 1)², (grid², grid²) float32: the reference's cost_matrix."""
    rows = torch.arange(grid * grid, device=device) // grid
    cols = torch.arange(grid * grid, device=device) % grid
    squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return squared.float() / float((grid - 1) ** 2)


def transport_sources(mask: Tensor, saliency: Tensor, eps: float, max_elements: int = 2**22) -> Tensor:
    """The reference's greedy transport plan as, per destination block, its source block (-1: none). (N, T) int64.

    `mask` (N, g, g) this image's weight per block (it is visible where > 0), `saliency` (N, g, g) its
    normalised block saliency. cost[i, j] = eps·C[i, j] - saliency[i]·visible[j]. For g rounds: every source
    row bids for its cheapest destination; each destination keeps the bidder with the smallest cost, where -
    as in the reference's `argmin(plan * cost)` over all rows - rows that did not bid count as cost 0 and ties
    go to the lowest row; every losing bid's cost is raised by 1. The last round's winners are the plan.
    This computes that dense loop with per-row bids only (O(N·T) per round after the O(N·T²) argmin), on
    chunks of at most `max_elements` cost entries (16 MB: the cost matrices stay in reused memory).
    """
    n, grid, _ = mask.shape
    chunk = max(1, max_elements // grid**4)
    if n > chunk:
        return torch.cat([transport_sources(mask[i : i + chunk], saliency[i : i + chunk], eps, max_elements)
                          for i in range(0, n, chunk)])
    blocks = grid * grid
    visible = (mask > 0).float().reshape(n, 1, blocks)
    # eps·C - saliency[i]·visible[j]; the product is exact (visible is 0 or 1), so one fused op rounds the same.
    cost = torch.addcmul(eps * transport_cost_matrix(grid, str(mask.device)), saliency.reshape(n, blocks, 1),
                         visible, value=-1)
    flat_cost = cost.view(-1)
    row_starts = torch.arange(n * blocks, device=mask.device).view(n, blocks) * blocks  # of each row in flat_cost
    rows = torch.arange(blocks, device=mask.device).expand(n, blocks)
    no_row = torch.full((n, blocks), blocks, device=mask.device)
    winner = no_row
    valid = torch.zeros((n, blocks), dtype=torch.bool, device=mask.device)
    for _ in range(grid):
        bid = _row_argmin(cost)  # (N, T): each source's destination
        bid_at = row_starts + bid
        bid_cost = flat_cost.index_select(0, bid_at.view(-1)).view(n, blocks)
        best = torch.full((n, blocks), math.inf, device=mask.device).scatter_reduce(
            -1, bid, bid_cost, reduce="amin", include_self=True)
        bidders = torch.zeros((n, blocks), dtype=torch.long, device=mask.device).scatter_add(
            -1, bid, torch.ones_like(bid))
        # The first (lowest) row among the bidders with the best cost.
        at_best = bid_cost == best.gather(-1, bid)
        winner = no_row.scatter_reduce(-1, bid, torch.where(at_best, rows, blocks), reduce="amin", include_self=True)
        # The first row that did not bid for destination j: row 0, except for row 0's own pick, where it is the
        # first row that bid elsewhere (T if every row bid for it).
        elsewhere = bid != bid[:, :1]
        first_elsewhere = torch.where(elsewhere.any(-1), elsewhere.int().argmax(-1), blocks)
        first_non_bidder = torch.zeros((n, blocks), dtype=torch.long, device=mask.device)
        first_non_bidder.scatter_(-1, bid[:, :1], first_elsewhere[:, None])
        everyone_bid = bidders == blocks
        valid = (bidders > 0) & (
            (best < 0) | ((best == 0) & (winner < first_non_bidder)) | ((best > 0) & everyone_bid)
        )
        won = valid.gather(-1, bid) & (winner.gather(-1, bid) == rows)
        lost = bid_at[~won]  # each losing bid gets dearer by 1 (the (row, destination) pairs are distinct)
        flat_cost.index_add_(0, lost, torch.ones(lost.shape, device=lost.device))
    return torch.where(valid, winner, -1)


def _row_argmin(values: Tensor) -> Tensor:
    """argmin over the last dim, first minimum on ties; numpy's SIMD argmin on the CPU (several times torch's)."""
    if values.device.type == "cpu":
        return torch.from_numpy(values.contiguous().numpy().argmin(axis=-1))
    return values.argmin(dim=-1)


def apply_transport(images: Tensor, sources: Tensor, grid: int) -> Tensor:
    """Move patches: destination patch j of image n becomes its source patch `sources[n, j]`, or 0 if -1.

    One gather over pixels (an index per output pixel, shared by the channels) instead of the reference's
    0/1-plan matmul, which materialises N·C·patch²·grid⁴ floats.
    """
    n, c, height, width = images.shape
    ph, pw = height // grid, width // grid
    device = images.device
    source = sources.clamp_min(0).view(n, grid, grid)
    # Source pixel of every destination pixel, laid out (dest row, row in patch, dest col, col in patch).
    rows = (source // grid)[:, :, None, :, None] * ph + torch.arange(ph, device=device)[None, None, :, None, None]
    cols = (source % grid)[:, :, None, :, None] * pw + torch.arange(pw, device=device)[None, None, None, None, :]
    pixel = (rows * width + cols).reshape(n, 1, height * width)
    moved = images.reshape(n, c, height * width).gather(2, pixel.expand(n, c, height * width))
    if (sources < 0).any():  # destinations nobody won stay empty (0), as the reference's all-zero plan column
        filled = (sources >= 0).view(n, grid, 1, grid, 1).expand(n, grid, ph, grid, pw).reshape(n, 1, height * width)
        moved.masked_fill_(~filled, 0)
    return moved.view(n, c, height, width)


def _normalised_block_saliency(saliency: Tensor, rows: int, cols: int) -> Tensor:
    """Saliency (N, H, W) averaged over rows × cols blocks, normalised to sum 1 per sample (uniform if all zero)."""
    pooled = F.avg_pool2d(saliency[:, None], (rows, cols))[:, 0]
    total = pooled.reshape(pooled.shape[0], -1).sum(1).reshape(-1, 1, 1)
    uniform = torch.full_like(pooled, 1.0 / pooled[0].numel())
    return torch.where(total > 0, pooled / torch.where(total > 0, total, 1.0), uniform)


def label_prior(a: float, n_labels: int) -> np.ndarray:
    """-log P(label) of the reference: label l (weight 1 - l/(n-1) for the first image) ~ Binomial(n-1, a), eps 1e-8."""
    eps = 1e-8
    k = n_labels - 1
    return np.array([-np.log(math.comb(k, l) * a ** (k - l) * (1 - a) ** l + eps) for l in range(n_labels)])


@register_method
class PuzzleMix(Method):
    name = "puzzlemix"
    version = 1
    paper_name = "PuzzleMix"
    display_order = 40
    cost_multiplier = 2.0
    cost_source = (
        "extra forward + input backward for the saliency, CPU graph cuts, transport "
        "(×1.25-1.5 at 224 px, up to ×5 at 32 px: claims/README.md §7)"
    )
    lam_note = ("PuzzleMix draws no λ: its label weight λ is the mask's mean; a fixed λ (--lam) sets the graph "
                "cut's prior, which only steers the mask.")

    def __init__(
        self,
        alpha: float = 1.0,
        block_num: int | list[int] = 4,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = -1,
        t_batch_size: int | None = None,
        clean_lam: float = 0.0,
        adv_p: float = 0.0,
        adv_eps: float = 10.0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        graphcut_workers: int = 0,
        label_smoothing: float = 0.0,
    ):
        super().__init__(label_smoothing=label_smoothing)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0; got {alpha}")
        exponent_range(block_num)
        if not 2 <= n_labels <= 4:
            raise ValueError(f"n_labels must be 2, 3 or 4 (the reference's label priors); got {n_labels}")
        if neigh_size < 1:
            raise ValueError(f"neigh_size must be >= 1; got {neigh_size}")
        if t_size != -1 and t_size < 1:
            raise ValueError(f"t_size must be -1 (transport at the block grid) or >= 1 px; got {t_size}")
        if not 0.0 <= adv_p <= 1.0:
            raise ValueError(f"adv_p (probability of the adversarial perturbation) must be in [0, 1]; got {adv_p}")
        if clean_lam < 0 or adv_eps < 0 or beta < 0 or gamma < 0 or eta < 0 or t_eps < 0:
            raise ValueError("beta, gamma, eta, t_eps, clean_lam and adv_eps must be >= 0")
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ValueError("give mean and std together, one value per channel (or neither: the reference's rule)")
        if std is not None and min(std) <= 0:
            raise ValueError(f"std values must be > 0; got {std}")
        self.alpha, self.block_num, self.beta, self.gamma, self.eta = alpha, block_num, beta, gamma, eta
        self.neigh_size, self.n_labels, self.transport, self.t_eps, self.t_size = (
            neigh_size, n_labels, transport, t_eps, t_size)
        self.t_batch_size = t_batch_size
        self.clean_lam, self.adv_p, self.adv_eps = clean_lam, adv_p, adv_eps
        self.mean, self.std = mean, std
        self.graphcut_workers = graphcut_workers

    # ---- checks --------------------------------------------------------------------------------------------

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        height, width = image_size
        problems = []
        for grid in grid_sizes(self.block_num):
            try:
                plan_grid(height, width, grid, self.neigh_size, self.t_size)
            except ValueError as err:
                problems.append(str(err))
        if problems:
            fits = [e for e in range(1, 7) if _fits(height, width, 2**e, self.neigh_size, self.t_size)]
            run = fits[:1]
            while run and run[-1] + 1 in fits:
                run.append(run[-1] + 1)
            hint = (f"use block_num=[{run[0]}, {run[-1] + 1}] (grids {', '.join(str(2**e) for e in run)})"
                    if run else "resize the images to a multiple of 16 px")
            raise ValueError("; ".join(problems) + f"; fix: {hint}, or change neigh_size / t_size")
        try:
            from mixbench.methods._graphcut import require_gco

            require_gco()
        except ImportError as err:
            raise ValueError(str(err)) from err

    # ---- the random draw and the deterministic core -------------------------------------------------------

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Any]:
        """Everything random in a step: partner permutation, graph-cut prior a, grid, adversarial draws."""
        low, high = exponent_range(self.block_num)
        drawn: dict[str, Any] = {
            "index": random_permutation(batch_size, gen),
            "prior": sample_beta(self.alpha, 1, gen)[0],
            "grid": 2 ** int(torch.randint(low, high, (1,), generator=gen)),
        }
        if self.adv_p > 0:
            flips = torch.rand(3, generator=gen, dtype=torch.float64)
            drawn["adv_first"] = bool(flips[0] < self.adv_p)
            drawn["adv_partner"] = bool(flips[1] < self.adv_p)
            drawn["adv_scale"] = float(flips[2])  # the official adv_mix_coef ~ U(0, 1)
            drawn["noise_seed"] = int(torch.randint(0, 2**62, (1,), generator=gen))
        return drawn

    def _stats(self, channels: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if self.mean is not None:
            mean, std = self.mean, self.std
        else:
            mean, std = (CIFAR_MEAN, CIFAR_STD) if width < 64 else (IMAGENET_MEAN, IMAGENET_STD)
        if len(mean) != channels:
            raise ValueError(
                f"PuzzleMix de-normalises with {len(mean)}-channel mean/std but the batch has {channels} channels; "
                f"pass mean=[...] and std=[...] with the dataset's normalisation (e.g. fashion_mnist: "
                f"mean=[0.286], std=[0.353])"
            )
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
        return as_tensor(mean), as_tensor(std)

    @torch.no_grad()
    def mix(
        self,
        x: Tensor,
        y: Tensor,
        saliency: Tensor,
        index: Tensor,
        prior: Tensor | float,
        grid: int,
        noise: Tensor | None = None,
        adv_first: bool = False,
        adv_partner: bool = False,
        **_: Any,
    ) -> MixedBatch:
        """The mask optimisation and transport for given draws: deterministic, no model involved.

        `saliency` (N, H, W) from `saliency_pass`; `noise` the adversarial perturbation in pixel units (used
        for the first image if `adv_first`, for the partner if `adv_partner`). Returns the mixed batch, the
        per-sample λ (mask means, float64) and the (N, 1, H, W) mask of the first image.
        """
        n, channels, height, width = x.shape
        plan = plan_grid(height, width, grid, self.neigh_size, self.t_size)
        mean, std = self._stats(channels, width, x.device)
        index = index.to(x.device)
        x = x.float()
        beta = self.beta / grid / 16

        # Unary: normalised block saliency of each image and of its partner.
        unary_self = _normalised_block_saliency(saliency.float(), plan.block_h, plan.block_w)
        unary_partner = unary_self[index]

        # Data smoothness across block edges, for the 4 label pairs (partner|partner, partner|self, ...).
        pooled_self = F.avg_pool2d(x * std + mean, plan.neigh)
        pooled_partner = pooled_self[index]
        cells_h, cells_w = plan.block_h // plan.neigh, plan.block_w // plan.neigh
        pairs = [(pooled_partner, pooled_partner), (pooled_partner, pooled_self),
                 (pooled_self, pooled_partner), (pooled_self, pooled_self)]
        penalties = [neighbour_penalty(a, b, cells_h, cells_w) for a, b in pairs]
        pw_x = torch.stack([p[0] for p in penalties], 1).view(n, 2, 2, grid - 1, grid)
        pw_y = torch.stack([p[1] for p in penalties], 1).view(n, 2, 2, grid, grid - 1)
        pw_x = beta * self.gamma * pw_x
        pw_y = beta * self.gamma * pw_y

        # Fold the asymmetric part of the pairwise term into the unaries, in the reference's order.
        u_self, u_partner = unary_self.clone(), unary_partner.clone()
        u_partner[:, :-1, :] += (pw_x[:, 1, 0] + pw_x[:, 1, 1]) / 2.0
        u_self[:, :-1, :] += (pw_x[:, 0, 1] + pw_x[:, 0, 0]) / 2.0
        u_partner[:, 1:, :] += (pw_x[:, 0, 1] + pw_x[:, 1, 1]) / 2.0
        u_self[:, 1:, :] += (pw_x[:, 1, 0] + pw_x[:, 0, 0]) / 2.0
        u_partner[:, :, :-1] += (pw_y[:, 1, 0] + pw_y[:, 1, 1]) / 2.0
        u_self[:, :, :-1] += (pw_y[:, 0, 1] + pw_y[:, 0, 0]) / 2.0
        u_partner[:, :, 1:] += (pw_y[:, 0, 1] + pw_y[:, 1, 1]) / 2.0
        u_self[:, :, 1:] += (pw_y[:, 1, 0] + pw_y[:, 0, 0]) / 2.0
        pw_x = (pw_x[:, 1, 0] + pw_x[:, 0, 1] - pw_x[:, 1, 1] - pw_x[:, 0, 0]) / 2
        pw_y = (pw_y[:, 1, 0] + pw_y[:, 0, 1] - pw_y[:, 1, 1] - pw_y[:, 0, 0]) / 2

        mask = self._graph_cut(u_partner, u_self, pw_x, pw_y, float(prior), grid, beta).to(x.device)

        first, partner = x, x[index]
        if noise is not None and (adv_first or adv_partner):
            noise = noise.to(x.device, torch.float32)
            if adv_first:
                first = ((first * std + mean + noise).clamp(0, 1) - mean) / std
            if adv_partner:
                partner = ((partner * std + mean + noise[index]).clamp(0, 1) - mean) / std

        if self.transport:
            if plan.transport_at_block_grid:
                transport_saliency = unary_self
            else:
                mask = F.interpolate(mask[:, None], size=(plan.transport_grid,) * 2, mode="nearest")[:, 0]
                transport_saliency = _normalised_block_saliency(
                    saliency.float(), height // plan.transport_grid, width // plan.transport_grid)
            # Both images' plans in one batch: the plan of a sample depends on its own inputs only.
            sources = transport_sources(torch.cat([mask, 1 - mask]),
                                        torch.cat([transport_saliency, transport_saliency[index]]), self.t_eps)
            first = apply_transport(first, sources[:n], plan.transport_grid)
            partner = apply_transport(partner, sources[n:], plan.transport_grid)

        pixel_mask = F.interpolate(mask[:, None], size=(height, width), mode="nearest")
        # mask·x1 + (1 - mask)·x2 as the reference rounds it, in place where the buffers are ours.
        mixed = first.mul_(pixel_mask) if first is not x else first * pixel_mask
        mixed.add_(partner.mul_(1 - pixel_mask))
        # Every block covers the same number of pixels, so the block mean is the pixel mean, exactly.
        lam = mask.double().mean(dim=(1, 2))
        return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam, mask=pixel_mask)

    def _graph_cut(self, u_partner: Tensor, u_self: Tensor, pw_x: Tensor, pw_y: Tensor, a: float, grid: int,
                   beta: float) -> Tensor:
        """Per-sample graph cut (reference `graphcut_multi`) -> (N, grid, grid) float32 weight of the first image."""
        from mixbench.methods._graphcut import fit_int32, solve_grid_cuts

        u_partner, u_self = u_partner.cpu().numpy(), u_self.cpu().numpy()
        pw_x, pw_y = pw_x.cpu().numpy(), pw_y.cpu().numpy()
        scale = 1000 * grid**2  # the reference's float -> int32 scale
        prior = self.eta * label_prior(a, self.n_labels) / grid**2
        weights = np.linspace(0, 1, self.n_labels)
        # Label l: the first image keeps weight 1 - l/(n-1), so it loses that share of its partner's saliency.
        unary = np.stack([(1 - t) * u_partner + t * u_self + prior[l] for l, t in enumerate(weights)], axis=-1)
        unary = (scale * unary).astype(np.int32)
        cost_v = np.maximum((scale * (pw_x + beta)).astype(np.int32), 0)
        cost_h = np.maximum((scale * (pw_y + beta)).astype(np.int32), 0)
        # Integer label cost (l - m)² instead of the reference's float (l - m)²/(n-1)²: scale the unaries instead.
        unary = unary.astype(np.int64) * (self.n_labels - 1) ** 2
        unary, cost_v, cost_h = fit_int32(unary, cost_v, cost_h, self.n_labels)
        labels = solve_grid_cuts(unary, cost_v, cost_h, workers=self.graphcut_workers)
        return torch.from_numpy(1.0 - labels / (self.n_labels - 1)).float()

    # ---- the model-aware part ------------------------------------------------------------------------------

    def saliency_pass(self, backbone: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """One forward/backward of the classifier: (saliency (N, H, W), input gradient, clean loss or None).

        clean_lam == 0: eval mode, `torch.autograd.grad` on the input only; the model is left exactly as it was
        (parameters, `.grad`, BN statistics, every module's training flag). clean_lam > 0: train mode, and
        clean_lam × the clean cross-entropy is back-propagated into the parameters' `.grad` (official semantics).
        """
        inputs = x.detach().requires_grad_(True)
        if self.clean_lam > 0:
            with torch.enable_grad():
                clean = F.cross_entropy(backbone(inputs).float(), y, label_smoothing=self.label_smoothing)
                (self.clean_lam * clean).backward()
            grad = inputs.grad
        else:
            module = unwrap(backbone)
            modes = [(m, m.training) for m in module.modules()]
            module.eval()
            try:
                with torch.enable_grad():
                    loss = F.cross_entropy(module(inputs).float(), y)
                    (grad,) = torch.autograd.grad(loss, inputs)
            finally:
                for m, mode in modes:
                    m.training = mode
            clean = None
        saliency = grad.float().pow(2).mean(dim=1).sqrt()
        return saliency.detach(), grad.detach(), None if clean is None else clean.detach()

    def _random_start(self, x: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """Official random start: U(±eps/255) noise, clipped so the pixels stay in [0, 1] -> (noise, noisy x)."""
        mean, std = self._stats(x.shape[1], x.shape[-1], x.device)
        eps = self.adv_eps / 255
        cpu = torch.Generator().manual_seed(seed)
        noise = (torch.rand(x.shape, generator=cpu) * (2 * eps) - eps).to(x.device)
        pixels = x.float() * std + mean
        noisy = (pixels + noise).clamp(0, 1)
        return noisy - pixels, ((noisy - mean) / std).to(x.dtype)

    def mix_for_display(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator,
                        lam: float | None = None) -> MixedBatch:
        """The mixed batch for the gallery: the saliency of `backbone`, then the graph cut and transport.

        `lam` fixes the graph cut's prior a (PuzzleMix draws no λ: its λ is the realised mask mean)."""
        drawn = self.sample(x.shape[0], gen)
        if lam is not None:
            drawn["prior"] = torch.tensor(float(lam), dtype=torch.float64)
        saliency, _, _ = self.saliency_pass(backbone, x, y)
        return self.mix(x, y, saliency, **drawn)

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        drawn = self.sample(x.shape[0], gen)
        adversarial = drawn.get("adv_first", False) or drawn.get("adv_partner", False)
        noise, saliency_input = (None, x)
        if adversarial:
            noise, saliency_input = self._random_start(x, drawn["noise_seed"])
        saliency, grad, clean = self.saliency_pass(backbone, saliency_input, y)
        if adversarial:
            eps = self.adv_eps / 255
            noise = (noise + (self.adv_eps + 2) / 255 * grad.float().sign()).clamp(-eps, eps) * drawn["adv_scale"]
        mixed = self.mix(x, y, saliency, noise=noise, **drawn)
        logits = backbone(mixed.x)
        loss = mixed_cross_entropy(logits, mixed.y_a, mixed.y_b, mixed.lam, self.label_smoothing)
        logs = {"lam": float(mixed.lam.mean()), "grid": float(drawn["grid"])}
        if clean is not None:
            logs["clean_loss"] = float(clean)
            # The clean term's gradients are already in .grad; its value is reported with the loss.
            loss = loss + self.clean_lam * clean
        return StepOutput(loss=loss, logs=logs)


def _fits(height: int, width: int, grid: int, neigh_size: int, t_size: int) -> bool:
    try:
        plan_grid(height, width, grid, neigh_size, t_size)
    except ValueError:
        return False
    return True

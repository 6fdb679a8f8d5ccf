"""The Method interface every mixing method implements, the mixed batch, and the mixed cross-entropy.

A method owns the training step (not just the batch), because three kinds of methods must fit one
interface: input mixers (Mixup, CutMix, SaliencyMix) mix a batch without the model; model-aware mixers
(PuzzleMix) need the classifier's input gradients; trainable mixers (AutoMix) own parameters, losses and
an EMA copy of the backbone. The engine only calls `setup`, `training_loss` and `after_step`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class MixedBatch:
    """A mixed batch: sample i is `lam[i]` of `y_a[i]` and `1 - lam[i]` of `y_b[i]`.

    `lam` is a 0-d tensor (one λ for the batch) or shape (N,) (one per sample). `mask`, where the method
    has one, is the per-pixel weight of the first source, shape (N, 1, H, W), in [0, 1].
    """

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: Tensor
    mask: Tensor | None = None

    def per_sample_lam(self) -> Tensor:
        return self.lam.expand(self.y_a.shape[0]) if self.lam.dim() == 0 else self.lam

    def soft_targets(self, num_classes: int) -> Tensor:
        """Dense targets lam*onehot(y_a) + (1-lam)*onehot(y_b); rows sum to 1."""
        lam = self.per_sample_lam().to(torch.float32)[:, None]
        a = F.one_hot(self.y_a, num_classes).to(torch.float32)
        b = F.one_hot(self.y_b, num_classes).to(torch.float32)
        return lam * a + (1 - lam) * b


@dataclass
class StepOutput:
    """What a training step hands back to the engine.

    `loss` is what the engine back-propagates. A method that already ran its backward itself (AutoMix does,
    branch by branch, to keep peak memory low) sets `backward_done=True` and returns the detached total.
    `logs` are scalars averaged per epoch into metrics.jsonl (λ, mask area, auxiliary losses).
    """

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)
    backward_done: bool = False


def mixed_cross_entropy(
    logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor | float, label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy against the pair (y_a, y_b) weighted by λ, averaged over the batch.

    Per sample this is lam_i*CE(y_a) + (1-lam_i)*CE(y_b), which equals the soft-target cross-entropy with
    targets lam_i*onehot(y_a) + (1-lam_i)*onehot(y_b) because CE is linear in the target. Computing it per
    sample keeps a per-sample λ (PuzzleMix, elementwise mode) from collapsing into the batch mean.
    """
    logits = logits.float()  # the loss in fp32 even when the forward ran under autocast
    ce_a = F.cross_entropy(logits, y_a, reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, y_b, reduction="none", label_smoothing=label_smoothing)
    lam = torch.as_tensor(lam, dtype=ce_a.dtype, device=ce_a.device)
    return (lam * ce_a + (1 - lam) * ce_b).mean()


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy against dense targets (rows summing to 1), averaged over the batch (RecursiveMix)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def sample_beta(alpha: float, size: int, gen: torch.Generator) -> Tensor:
    """Draw `size` values from Beta(alpha, alpha) as float64, controlled by the torch generator `gen`.

    torch's Beta distribution cannot take a Generator, so a 63-bit seed is drawn from `gen` and feeds a
    numpy Generator: the draw stays a pure function of the trial's generator state.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for Beta(alpha, alpha); got {alpha}")
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=gen).item())
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=size))


def random_permutation(n: int, gen: torch.Generator) -> Tensor:
    """A uniform permutation of range(n); a sample may be paired with itself (as openmixup's Mixup,
    SaliencyMix, PuzzleMix and AutoMix draw it)."""
    return torch.randperm(n, generator=gen)


def permutation_avoiding_self_pairs(n: int, gen: torch.Generator, tries: int = 10) -> Tensor:
    """A permutation redrawn up to `tries` times while some sample is paired with itself; the last draw is kept
    if every try failed (openmixup's CutMix, `_no_repeat_shuffle_idx(ignore_failure=True)`)."""
    index = torch.randperm(n, generator=gen)
    for _ in range(tries):
        if not (index == torch.arange(n)).any():
            break
        index = torch.randperm(n, generator=gen)
    return index


class Method(nn.Module):
    """Base class of every mixing method.

    Subclasses set `name` (the registry key) and `version` (bump it whenever the method's output for a fixed
    seed changes), take their hyper-parameters as keyword arguments of `__init__`, and implement
    `training_loss`. A method that has parameters of its own is an nn.Module; the engine optimizes them
    with the backbone's (see `param_groups`) and saves them in checkpoints.

    What reports and the cost model need to know about a method lives here too, so a plug-in method gets a
    full row: `paper_name` (its spelling in papers and published claims; empty: `name`), `display_order`
    (its place in tables and its plot colour; plug-ins go after the built-ins), `cost_multiplier` and
    `cost_source` (training cost of a step relative to vanilla on the same backbone and batch, and where
    that number comes from) and `eval_passes` (models evaluated every epoch, a val-split forward each).
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    paper_name: ClassVar[str] = ""
    display_order: ClassVar[int] = 1000
    cost_multiplier: ClassVar[float] = 1.0
    cost_source: ClassVar[str] = "not estimated: counted as vanilla"
    eval_passes: ClassVar[int] = 1
    # Whether the mix depends on the model (saliency, a learned mask): a gallery then shows it with a trained
    # network (`mixbench.display`), never a random one. Input mixers set it False.
    mixes_with_model: ClassVar[bool] = True
    # How the label weight λ relates to the mask in this method, for the gallery's note ("" when λ is the mask's
    # mean or there is no mask).
    lam_note: ClassVar[str] = ""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.num_classes = 0

    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        """Build what the method needs once the backbone exists (AutoMix: the Mix Block, the EMA encoder)."""
        self.num_classes = num_classes

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        raise NotImplementedError

    def after_step(self, backbone: nn.Module) -> None:
        """Called after every optimizer step (AutoMix: momentum update of the EMA encoder)."""

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Parameter groups of the method's own trainable parameters (empty for stateless mixers)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "name": self.name}] if params else []

    def eval_models(self, backbone: nn.Module) -> dict[str, nn.Module]:
        """Models evaluated each epoch, by name; the first one is the headline. AutoMix adds its EMA encoder."""
        return {"model": backbone}

    def set_progress(self, step: int, total_steps: int) -> None:
        """Told before each step where training stands (schedules inside a method, e.g. AutoMix momentum)."""

    def hparams(self) -> dict[str, Any]:
        """The resolved hyper-parameters, as recorded with every trial: every keyword of `__init__` (of this
        class and its bases), read back from the attribute of the same name. A method that stores one
        differently overrides this."""
        from mixbench.methods.registry import method_hparam_names

        values = {}
        for name in method_hparam_names(type(self)):
            if not hasattr(self, name):
                raise AttributeError(
                    f"{type(self).__qualname__} takes hyper-parameter {name!r} but keeps no attribute of that name; "
                    f"store it as self.{name} in __init__ or override hparams()"
                )
            values[name] = getattr(self, name)
        return values

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        """Raise ValueError (what is wrong and the fix) if the method cannot run at this size or on this backbone.

        Called before a suite runs (`mixbench check`), so a constraint fails in seconds, not hours into a run.
        """


class InputMixer(Method):
    """A method that mixes the input batch without looking at the model, then trains on the mix.

    Subclasses implement the random draw `sample(batch_size, gen) -> dict` and the deterministic core
    `mix(x, y, **drawn) -> MixedBatch`; tests compare the core against the reference for fixed draws.
    The draw's "lam" entry, where there is one, is the mixing ratio a gallery may fix (`mixbench show --lam`).
    """

    mixes_with_model: ClassVar[bool] = False

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def mix(self, x: Tensor, y: Tensor, **drawn: Tensor) -> MixedBatch:
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor, gen: torch.Generator) -> MixedBatch:  # type: ignore[override]
        return self.mix(x, y, **self.sample(x.shape[0], gen))

    def training_loss(self, backbone: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> StepOutput:
        mixed = self(x, y, gen)
        logits = backbone(mixed.x)
        loss = mixed_cross_entropy(logits, mixed.y_a, mixed.y_b, mixed.lam, self.label_smoothing)
        return StepOutput(loss=loss, logs={"lam": float(mixed.lam.float().mean())})


class BetaMixer(InputMixer):
    """An input mixer that draws λ ~ Beta(α, α) (mixing with probability `p`, per batch or per sample as `mode`
    says) and a partner permutation: Mixup, CutMix and SaliencyMix share this draw and these arguments."""

    def __init__(self, alpha: float = 1.0, p: float = 1.0, mode: str = "batch", label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        check_mix_args(alpha, p, mode)
        self.alpha, self.p, self.mode = alpha, p, mode

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        lam = draw_lam(self.alpha, self.p, self.mode, batch_size, gen)
        return {"lam": lam, "index": self.permutation(batch_size, gen)}

    def permutation(self, batch_size: int, gen: torch.Generator) -> Tensor:
        """Who each sample is mixed with: a uniform permutation, unless the reference draws otherwise."""
        return random_permutation(batch_size, gen)


def draw_lam(alpha: float, p: float, mode: str, batch_size: int, gen: torch.Generator) -> Tensor:
    """λ for a batch ("batch": 0-d) or per sample ("elem": (N,)); with probability 1-p a draw is λ=1 (no mix)."""
    n = 1 if mode == "batch" else batch_size
    lam = sample_beta(alpha, n, gen)
    if p < 1.0:
        apply = torch.rand(n, generator=gen, dtype=torch.float64) < p
        lam = torch.where(apply, lam, torch.ones_like(lam))
    return lam[0] if mode == "batch" else lam


def check_mix_args(alpha: float, p: float, mode: str, unit: str = "λ") -> None:
    """α of a Beta draw, the mixing probability and the batch/elem mode; `unit` is what one draw per batch gives."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0; got {alpha}")
    check_p_mode(p, mode, unit)


def check_p_mode(p: float, mode: str, unit: str = "λ") -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p (probability of mixing) must be in [0, 1]; got {p}")
    if mode not in ("batch", "elem"):
        raise ValueError(f"mode must be 'batch' (one {unit} per batch) or 'elem' (one per sample); got {mode!r}")

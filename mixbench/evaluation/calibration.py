"""Calibration of a classifier from its logits: ECE (15 and 10 bins), MCE, NLL, Brier, temperature scaling.

ECE and MCE come from torchmetrics (`multiclass_calibration_error`: top-label confidence, equal-width bins over
[0, 1]; norm "l1" is the expected, "max" the maximum calibration error). 15 bins is Guo et al.'s reading (and
torchmetrics'), 10 bins openmixup's `ece_score`. torchmetrics has neither NLL nor a multiclass Brier score:
NLL is torch's cross-entropy, Brier the mean over samples of Σ_k (p_k − 1[y = k])² (Brier 1950, multiclass form,
range 0..2). Every value is a fraction (ECE 0.05 = 5 %).

Temperature scaling (Guo et al. 2017) needs data the model was not trained on and the metric is not measured on:
the val split is divided by a seeded permutation into a calibration half (fits T) and an evaluation half (ECE
after scaling, `ece_ts`, is measured there; the other metrics use the whole split).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15
ECE_BINS_OPENMIXUP = 10
LOG_T_MAX = math.log(100)


def calibration_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """ECE (15 and 10 bins), MCE (15 bins), NLL and Brier of `logits` (N, K) against `labels` (N)."""
    logits, labels = logits.float().cpu(), labels.long().cpu()
    probs = logits.softmax(dim=1)
    k = logits.shape[1]

    def calibration_error(bins: int, norm: str) -> float:
        return float(multiclass_calibration_error(probs, labels, num_classes=k, n_bins=bins, norm=norm))

    onehot = F.one_hot(labels, k).float()
    return {
        "ece": calibration_error(ECE_BINS, "l1"),
        "ece_10": calibration_error(ECE_BINS_OPENMIXUP, "l1"),
        "mce": calibration_error(ECE_BINS, "max"),
        "nll": float(F.cross_entropy(logits, labels)),
        "brier": float((probs - onehot).pow(2).sum(dim=1).mean()),
    }


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> dict[str, list]:
    """What a reliability diagram draws: per equal-width confidence bin, its count, mean confidence and accuracy
    (None where empty). The bins are torchmetrics' ([lo, hi), left-closed); a confidence of exactly 1, which
    torchmetrics counts in a bin of its own, is drawn in the last one."""
    probs = logits.float().cpu().softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = predicted.eq(labels.cpu()).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    conf_sum = torch.zeros(bins).scatter_add_(0, index, confidence)
    acc_sum = torch.zeros(bins).scatter_add_(0, index, correct)
    shown = count > 0
    return {
        "edges": edges.tolist(),
        "count": count.int().tolist(),
        "confidence": [float(c / n) if s else None for c, n, s in zip(conf_sum, count, shown, strict=True)],
        "accuracy": [float(a / n) if s else None for a, n, s in zip(acc_sum, count, shown, strict=True)],
    }


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the NLL of `logits / T` (L-BFGS over log T, kept within [0.01, 100]: a model
    at chance level would otherwise drive T to infinity)."""
    logits, labels = logits.float().cpu(), labels.long().cpu()
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(-LOG_T_MAX, LOG_T_MAX).exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(-LOG_T_MAX, LOG_T_MAX).exp())


def split_halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the calibration half and the evaluation half of a split of `n` items (seeded permutation)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n // 2], order[n // 2:]


def temperature_scaled(logits: torch.Tensor, labels: torch.Tensor, seed: int) -> dict[str, float]:
    """T fitted on the calibration half; ECE and NLL of the evaluation half before and after dividing by T."""
    fit, held = split_halves(labels.numel(), seed)
    temperature = fit_temperature(logits[fit], labels[fit])
    before = calibration_metrics(logits[held], labels[held])
    after = calibration_metrics(logits[held] / temperature, labels[held])
    return {"temperature": temperature, "ece_ts_before": before["ece"], "ece_ts": after["ece"],
            "nll_ts": after["nll"]}


def calibration_report(logits: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
    """Everything `robustness.json` stores about calibration: metrics, temperature scaling, reliability bins."""
    return {**calibration_metrics(logits, labels), **temperature_scaled(logits, labels, seed),
            "reliability": reliability_bins(logits, labels)}

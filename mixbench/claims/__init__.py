"""Published claims, and the rule that matches a trial to a claim and measures the claim's own statistic.

The data
--------
`published.csv` (package data, beside this file) is the project's collection of published numbers, each
copied from the public source its row names: 437 rows for vanilla, Mixup, CutMix,
SaliencyMix, PuzzleMix and AutoMix. Every row names its `source`, pinned to a commit where it is a repository:
mostly `Westlake-AI/openmixup@37e1372` (docs/en/mixup_benchmarks/*.md), the AutoMix paper's listing on
paperswithcode.com, `clovaai/CutMix-PyTorch@2d8eb68`, `snu-mllab/PuzzleMix@e2dbf3a`,
`hongyi-zhang/mixup@4ca5f03` and the SaliencyMix paper (ICLR 2021) with `afm-shahab-uddin/SaliencyMix@9ee02b8`.
Issue 15 added 188 rows at the end, generated from the same openmixup tables (CIFAR-10/100, Tiny-ImageNet,
ImageNet PyTorch-style/RSB/DeiT, and the downstream ones) for FMix, ResizeMix, GridMix and SmoothMix: each
copies the Mixup row of its table cell (backbone, epochs, statistic, recipe) with the method's value and α.
Its `note` says what the number is (`stat=...`), the α and the recipe. Users add their own claims with a CSV
of the same columns (`mixbench report --claims FILE`), read with `load_claims`.

The matching rule
-----------------
A claim is compared with the trials of one method label (all its seeds) when

1. **dataset**: the trial's dataset maps to the claim's (its spec's `claims_name`: cifar10 → CIFAR-10, ...), or the
   claim already uses the mixbench name;
2. **backbone**: the claim's `timm_model` names the trial's backbone (`claim_backbone`):
   "resnet18 [CIFAR-stem variant; not stock timm]" is mixbench's `resnet18_cifar` (likewise
   `resnext50_32x4d_cifar`), WRN-28-k (not in timm) is `wrn28_k`, anything else is the stock timm name
   (resnet18/34/50/101, resnext101_32x4d, ...); a user's claim may also give a mixbench name there;
3. **method**: the claim's `method` is the trial's registered method name or its label;
4. **image size**: the claim's resolution equals the trial's; a claim that trains and tests at different
   sizes ("160 train / 224 test") matches no trial, since mixbench evaluates at its training size;
5. **epochs**: the trials that ran the claim's number of epochs; without finished ones, the longest finished
   budget below it (status *partial*). A longer budget is a different recipe and is not compared. A claim
   whose epochs are not stated takes the longest finished budget.

Only accuracy claims (`top1_acc`, `top5_acc`) are compared; the cost claims (GPU memory, hours) were taken
on unstated hardware and are left to the ratio columns of the cost table.

The statistic
-------------
Each claim is compared on its own statistic (`parse_statistic` reads `stat=` in the note; a note without one
is searched for "median ... last N", "best ... last N", "converged"/"final" or "best"; otherwise the median of
the last 10 epochs is assumed and the table says so). It is computed per trial from `metrics.jsonl`, then
averaged over seeds (mean ± sample std), which is also what "mean of BEST top-1 over 3 trials" asks for.

"Median of the last N epochs" has two readings (`last_n_window`): openmixup's summary script keeps every
evaluation with `epoch >= E - N`, i.e. **N + 1 values** (11 for "last 10"); the exact reading keeps N. The
published openmixup numbers were made with the first, so `MEDIAN_WINDOW = "openmixup"` is what claims are
compared with; `exact` is what `TrialRecord.top1_median_last_n` holds.

The status
----------
*reproduced* when the claim lies inside the 95 % Student-t interval of the measured mean over seeds
(`mixbench.stats.claim_tolerance`: with 1 seed there is no interval and with 2 it can be vanishingly thin, so
there the claim may also be 0.3 points away); else *below* or *above*; *partial* when the trials ran fewer
epochs than the claim; *not run* when no trial of that setting finished.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from mixbench.results import TrialRecord
from mixbench.stats import Interval, claim_tolerance, t_interval_from

COLUMNS = ("dataset", "backbone", "timm_model", "method", "epochs", "metric", "value", "image_size", "source", "note")

METHOD_NAMES = {
    "vanilla": "Vanilla",
    "mixup": "Mixup",
    "cutmix": "CutMix",
    "saliencymix": "SaliencyMix",
    "puzzlemix": "PuzzleMix",
    "automix": "AutoMix",
}

ACCURACY_METRICS = {"top1_acc": "top1", "top5_acc": "top5"}  # claim metric -> metrics.jsonl key

ASSUMED_LAST_N = 10  # openmixup's most common window, for claims that do not state their statistic

Window = Literal["openmixup", "exact"]
MEDIAN_WINDOW: Window = "openmixup"

Status = Literal["reproduced", "below", "above", "partial", "not run"]


# ---- names -----------------------------------------------------------------------------------------------


def claim_dataset(dataset: str) -> str:
    """The claims' name of a mixbench dataset (its spec's `claims_name`; a dataset without one keeps its name)."""
    from mixbench.data.registry import dataset_spec

    try:
        return dataset_spec(dataset).claims_name or dataset
    except ValueError:  # a label of the user's own data, or a plug-in this install does not have
        return dataset


def claim_backbone(timm_model: str, backbone: str = "") -> str | None:
    """The mixbench backbone a claim's `timm_model` (and `backbone` label) denotes; None where there is none."""
    timm_model = timm_model.strip()
    cifar = re.fullmatch(r"(\S+) \[CIFAR-stem variant[^\]]*\]", timm_model)
    if cifar:
        return f"{cifar[1]}_cifar"
    if timm_model.startswith("none"):
        # Not in timm: only openmixup's WideResNet-28-k has a mixbench twin.
        wide = re.match(r"WRN-28-(\d+)\b", backbone)
        return f"wrn28_{wide[1]}" if wide else None
    return timm_model or None


def short_backbone(label: str) -> str:
    """A claim's backbone label without its long CIFAR-stem explanation, for table cells."""
    return re.sub(r"\s*\(CIFAR variant[^)]*\)", " (CIFAR)", label).strip()


def method_display(method: str, label: str | None = None) -> str:
    """How a method appears in the claims table: the paper's spelling, or the suite's own label."""
    if label and label != method:
        return label
    return METHOD_NAMES.get(method, method)


def image_sizes(text: str) -> tuple[int, int] | None:
    """(train, test) resolution of a claim: "224" -> (224, 224), "160 train / 224 test" -> (160, 224)."""
    numbers = [int(n) for n in re.findall(r"\d+", text or "")]
    if not numbers:
        return None
    return numbers[0], numbers[-1]


# ---- the statistic ---------------------------------------------------------------------------------------


def last_n_window(values: Sequence[tuple[int, float]], n: int, window: Window = MEDIAN_WINDOW) -> list[float]:
    """The values (epoch, value) that "the last N epochs" keeps, in epoch order.

    `openmixup`: every evaluation with epoch >= E - N, E the last epoch (N + 1 values, as
    tools/summary/find_classification_val_median.py does); `exact`: the last N values.
    """
    if not values:
        return []
    if window == "openmixup":
        last_epoch = values[-1][0]
        return [v for epoch, v in values if epoch >= last_epoch - n]
    if window == "exact":
        return [v for _, v in values[-n:]]
    raise ValueError(f"unknown window {window!r}; use 'openmixup' (N+1 values) or 'exact' (N values)")


def median_last_n(values: Sequence[tuple[int, float]], n: int, window: Window = MEDIAN_WINDOW) -> float | None:
    kept = last_n_window(values, n, window)
    return statistics.median(kept) if kept else None


@dataclass(frozen=True)
class Statistic:
    """What a published number is, computed per trial from its per-epoch history."""

    kind: Literal["median_last_n", "best_last_n", "best", "last"]
    n: int | None = None
    basis: Literal["stat", "note", "assumed"] = "stat"  # where it was read: `stat=`, the note's words, nowhere

    def describe(self) -> str:
        text = {
            "median_last_n": f"median of last {self.n} ep",
            "best_last_n": f"best of last {self.n} ep",
            "best": "best epoch",
            "last": "last epoch",
        }[self.kind]
        return text + (" (assumed)" if self.basis == "assumed" else "")

    def of(self, values: Sequence[tuple[int, float]], window: Window = MEDIAN_WINDOW) -> float | None:
        """The statistic of one trial's (epoch, value) history."""
        if not values:
            return None
        if self.kind == "median_last_n":
            return median_last_n(values, self.n or ASSUMED_LAST_N, window)
        if self.kind == "best_last_n":
            return max(last_n_window(values, self.n or ASSUMED_LAST_N, window))
        if self.kind == "best":
            return max(v for _, v in values)
        return values[-1][1]


def _statistic_in(text: str, basis: Literal["stat", "note"]) -> Statistic | None:
    median = re.search(r"median\b[^;]*?\blast (\d+)", text, re.IGNORECASE)
    if median:
        return Statistic("median_last_n", int(median[1]), basis)
    best_window = re.search(r"\bbest\b[^;]*?\blast (\d+)", text, re.IGNORECASE)
    if best_window:
        return Statistic("best_last_n", int(best_window[1]), basis)
    if re.search(r"\b(converged|final)\b", text, re.IGNORECASE):
        return Statistic("last", None, basis)
    if re.search(r"\bbest\b|model_best", text, re.IGNORECASE):
        return Statistic("best", None, basis)
    return None


def parse_statistic(note: str) -> Statistic:
    """The statistic a claim reports, from its note: `stat=...` first, then the note's own words.

    Without `stat=`, the note is read clause by clause (split on ';'), skipping clauses that say the
    statistic is "not stated"; the first clause naming one decides. Nothing found: median of the last 10,
    marked as assumed.
    """
    note = note or ""
    stated = re.search(r"\bstat=([^;]*)", note)
    if stated:
        found = _statistic_in(stated[1], "stat")
        if found:
            return found
    for clause in note.split(";"):
        if "not stated" in clause.lower():
            continue
        found = _statistic_in(clause, "note")
        if found:
            return found
    return Statistic("median_last_n", ASSUMED_LAST_N, "assumed")


# ---- claims ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    dataset: str
    backbone: str
    timm_model: str
    method: str
    epochs: int | None
    metric: str
    value: float
    image_size: str
    source: str
    note: str

    @property
    def statistic(self) -> Statistic:
        return parse_statistic(self.note)

    @property
    def mixbench_backbone(self) -> str | None:
        return claim_backbone(self.timm_model, self.backbone)

    @property
    def is_accuracy(self) -> bool:
        return self.metric in ACCURACY_METRICS

    @property
    def short_source(self) -> str:
        """The source up to its path or description, e.g. Westlake-AI/openmixup@37e1372."""
        return re.split(r"[:(]| \+ ", self.source, maxsplit=1)[0].strip()

    def describe_metric(self) -> str:
        name = "top-1" if self.metric == "top1_acc" else "top-5" if self.metric == "top5_acc" else self.metric
        return f"{name}, {self.statistic.describe()}"


PUBLISHED = "published.csv"


def published_claims_path() -> Path:
    return Path(str(resources.files(__package__) / PUBLISHED))


def _to_claim(row: dict[str, str], where: str) -> Claim:
    try:
        value = float(row["value"])
    except ValueError:
        raise ValueError(f"{where}: value {row['value']!r} is not a number") from None
    epochs_text = (row["epochs"] or "").strip()
    try:
        epochs = int(float(epochs_text)) if epochs_text else None
    except ValueError:
        raise ValueError(f"{where}: epochs {epochs_text!r} is not a number (leave it empty if unknown)") from None
    return Claim(
        dataset=row["dataset"].strip(), backbone=row["backbone"].strip(), timm_model=row["timm_model"].strip(),
        method=row["method"].strip(), epochs=epochs, metric=row["metric"].strip(), value=value,
        image_size=(row["image_size"] or "").strip(), source=(row["source"] or "").strip(),
        note=(row["note"] or "").strip(),
    )


def read_claims(path: str | Path) -> list[Claim]:
    """Claims from a CSV with the columns of `published.csv` (COLUMNS); a missing column is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such claims file; fix: give a CSV with columns {', '.join(COLUMNS)}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a claims file has the columns "
                             f"{', '.join(COLUMNS)} (see mixbench/claims/published.csv)")
        return [_to_claim(row, f"{path}:{i + 2}") for i, row in enumerate(reader)]


def load_claims(extra: Iterable[str | Path] = (), published: bool = True) -> list[Claim]:
    """The published claims (unless `published=False`) followed by those of each `extra` file."""
    claims = read_claims(published_claims_path()) if published else []
    for path in extra:
        claims.extend(read_claims(path))
    return claims


# ---- matching a claim with trials --------------------------------------------------------------------------


class TrialHistory(Protocol):
    """A trial's record and its per-epoch metrics rows (what `mixbench.report.TrialResult` holds)."""

    record: TrialRecord
    history: list[dict[str, Any]]


def trial_image_size(record: TrialRecord) -> int | None:
    """The resolution a trial trained and evaluated at: the recipe's, else its dataset's default."""
    size = (record.config.get("recipe") or {}).get("image_size")
    if size:
        return int(size)
    try:
        from mixbench.suite import DatasetConfig

        return DatasetConfig.model_validate(record.config.get("dataset") or {"name": record.dataset}).info().image_size
    except (ImportError, ValueError, AttributeError, OSError):  # a dataset this install does not know
        return None


def same_setting(claim: Claim, record: TrialRecord) -> bool:
    """Rules 1, 2 and 4: the claim's dataset, backbone and image size are the trial's (epochs aside)."""
    if claim.dataset not in (claim_dataset(record.dataset), record.dataset):
        return False
    if claim.mixbench_backbone != record.backbone:
        return False
    sizes = image_sizes(claim.image_size)
    size = trial_image_size(record)
    if sizes is None or size is None:
        return True
    return sizes == (size, size)


def same_method(claim: Claim, record: TrialRecord) -> bool:
    """Rule 3."""
    return claim.method in (record.method, record.method_label)


def metric_history(trial: TrialHistory, key: str) -> list[tuple[int, float]]:
    return [(int(row["epoch"]), float(row[key])) for row in trial.history if row.get(key) is not None]


def trial_statistic(
    trial: TrialHistory, statistic: Statistic, key: str, window: Window = MEDIAN_WINDOW
) -> float | None:
    """The statistic of one trial; a trial without metrics.jsonl falls back on what its record summarises."""
    values = metric_history(trial, key)
    if values:
        return statistic.of(values, window)
    record = trial.record
    if statistic.kind == "best":
        return getattr(record, f"{key}_best", None)
    if statistic.kind == "last":
        return getattr(record, key, None)
    if statistic.kind == "median_last_n" and window == "exact" and statistic.n == record.last_n:
        return getattr(record, f"{key}_median_last_n", None)
    return None


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    method_label: str  # the trials' label (the claim's method when no trial ran it)
    status: Status
    measured: float | None = None  # mean over seeds
    std: float | None = None  # sample std over seeds; None with one seed
    seeds: int = 0  # seeds that entered `measured`
    seeds_total: int = 0  # trials at the compared budget, whatever their status
    epochs: int | None = None  # the budget compared
    note: str = ""  # what else the reader must know: unfinished trials, the budget used

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.claim.value

    @property
    def tolerance(self) -> float:
        return claim_tolerance(self.std, self.seeds)

    @property
    def interval(self) -> Interval | None:
        """95 % t-interval of the measured mean; None with one seed."""
        return None if self.measured is None else t_interval_from(self.measured, self.std, self.seeds)

    @property
    def delta_interval(self) -> Interval | None:
        """The interval of measured − claimed."""
        ci = self.interval
        return None if ci is None else Interval(ci.low - self.claim.value, ci.high - self.claim.value, ci.method)


def verdict(delta: float, std: float | None, seeds: int) -> Status:
    if abs(delta) <= claim_tolerance(std, seeds):
        return "reproduced"
    return "below" if delta < 0 else "above"


def status_counts(records: Iterable[TrialRecord], skip: str | None = None) -> str:
    """"1 failed, 2 running": how many trials are in each status (but `skip`), for notes and table cells."""
    counts = Counter(r.status for r in records if r.status != skip)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def compare(claim: Claim, trials: Sequence[TrialHistory], method_label: str | None = None,
            window: Window = MEDIAN_WINDOW) -> ClaimResult:
    """Compare one claim with the trials of one method label (already matched on setting and method)."""
    label = method_label or (trials[0].record.method_label if trials else claim.method)
    if not trials:
        return ClaimResult(claim, label, "not run")
    finished = sorted({t.record.epochs for t in trials if t.record.status == "done"})
    eligible = [e for e in finished if claim.epochs is None or e <= claim.epochs]
    if not eligible:
        longer = [e for e in finished if claim.epochs is not None and e > claim.epochs]
        note = (f"only longer budgets finished ({', '.join(map(str, longer))} ep)" if longer
                else f"trials: {status_counts(t.record for t in trials)}")
        return ClaimResult(claim, label, "not run", seeds_total=len(trials), note=note)
    epochs = eligible[-1]
    at_budget = [t for t in trials if t.record.epochs == epochs]
    key = ACCURACY_METRICS[claim.metric]
    values = [trial_statistic(t, claim.statistic, key, window) for t in at_budget if t.record.status == "done"]
    values = [v for v in values if v is not None and math.isfinite(v)]
    unfinished = [t for t in at_budget if t.record.status != "done"]
    note = f"also {status_counts(t.record for t in unfinished)}" if unfinished else ""
    if not values:
        return ClaimResult(claim, label, "not run", seeds_total=len(at_budget), epochs=epochs,
                           note=f"no {key} recorded" + (f"; {note}" if note else ""))
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    partial = claim.epochs is not None and epochs < claim.epochs
    status: Status = "partial" if partial else verdict(mean - claim.value, std, len(values))
    if partial:
        note = f"{epochs} of {claim.epochs} ep" + (f"; {note}" if note else "")
    return ClaimResult(claim, label, status, mean, std, len(values), len(at_budget), epochs, note)


def compare_all(claims: Sequence[Claim], trials: Sequence[TrialHistory],
                window: Window = MEDIAN_WINDOW) -> list[ClaimResult]:
    """Every accuracy claim whose setting (dataset, backbone, image size) some trial has, compared.

    A claim whose method no trial ran is listed as not run; one whose method ran under several labels
    (e.g. mixup at two α) is compared with each label.
    """
    results = []
    for claim in claims:
        if not claim.is_accuracy:
            continue
        in_setting = [t for t in trials if same_setting(claim, t.record)]
        if not in_setting:
            continue
        matched = [t for t in in_setting if same_method(claim, t.record)]
        labels = sorted({t.record.method_label for t in matched})
        if not labels:
            results.append(ClaimResult(claim, claim.method, "not run", note="method not in the results"))
        for label in labels:
            group = [t for t in matched if t.record.method_label == label]
            results.append(compare(claim, group, label, window))
    return results

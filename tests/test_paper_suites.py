"""The six paper suites: their recipes are the paper's, every AutoMix claim has a trial, and each suite file
passes `check`, prints its `--dry-run` estimate and runs end to end with `--tiny` (all methods, all backbones)
through the command line. This file is what CI runs to prove the suite files; see docs/cost_model.md.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mixbench.cli import main
from mixbench.report import load_results
from mixbench.suite import TrialConfig, expand, load_suite

REPO = Path(__file__).parents[1]
SUITES = ("cifar10", "cifar100", "tiny_imagenet", "imagenet", "inat2018", "places205", "cub200", "aircraft",
          "inat2017")
METHODS = {"vanilla", "mixup", "cutmix", "saliencymix", "puzzlemix", "automix"}
# Issue 15's mixers, where openmixup's tables benchmark them, and timm's switch everywhere.
ISSUE15 = {name: {"fmix", "resizemix", "gridmix", "smoothmix", "mixup_cutmix"}
           for name in ("cifar10", "cifar100", "tiny_imagenet")}
ISSUE15 |= {name: {"fmix", "resizemix", "mixup_cutmix"}
            for name in ("imagenet", "inat2018", "places205", "cub200", "aircraft", "inat2017")}
for name in ("cifar10", "cifar100", "tiny_imagenet", "imagenet"):  # ManifoldMix is in these tables too
    ISSUE15[name] = ISSUE15[name] | {"manifoldmix"}


def methods_of(name: str) -> set[str]:
    return METHODS | ISSUE15[name]


def suite_file(name: str) -> Path:
    return REPO / "suites" / f"{name}.yaml"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `check --tiny` writes its fixtures under ./results
    for name in SUITES:
        monkeypatch.delenv(f"MIXBENCH_DATA_{name.upper()}", raising=False)


def trials_of(name: str, tmp_path: Path) -> dict[tuple[str, str], TrialConfig]:
    """The suite's trials (first seed) by (backbone, method), resolved against a stand-in data root."""
    path = suite_file(name)
    suite = load_suite(path)
    trials = expand(suite, path, {ds.name: str(tmp_path) for ds in suite.datasets})
    return {(t.backbone.name, t.method): t for t in trials if t.seed == suite.seeds[0]}


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- the recipes ----------------------------------------------------------------------------------------------


def test_every_suite_has_all_six_methods_and_the_papers_backbones(tmp_path):
    backbones = {
        "cifar10": {"resnext50_32x4d_cifar"},
        "cifar100": {"resnext50_32x4d_cifar", "wrn28_8"},
        "tiny_imagenet": {"resnet18_cifar", "resnext50_32x4d_cifar"},
        "imagenet": {"resnet18", "resnet34", "resnet50", "resnet101"},
        "inat2018": {"resnet50", "resnext101_32x4d"},
        "places205": {"resnet50"},
        "cub200": {"resnet18", "resnext50_32x4d"},
        "aircraft": {"resnet18", "resnext50_32x4d"},
        "inat2017": {"resnet18", "resnet50", "resnext101_32x4d"},
    }
    for name in SUITES:
        trials = trials_of(name, tmp_path)
        assert {b for b, _ in trials} == backbones[name], name
        assert {m for _, m in trials} == methods_of(name), name
        assert len(trials) == len(backbones[name]) * len(methods_of(name))
        text = suite_file(name).read_text()
        assert "Claims it reproduces" in text and "Where the sources disagree" in text, name


def test_every_automix_paper_claim_has_a_trial_with_its_budget(tmp_path):
    from mixbench.claims import claim_backbone

    names = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "Tiny-ImageNet": "tiny_imagenet",
             "ImageNet-1k": "imagenet", "iNaturalist2018": "inat2018", "Places205": "places205"}
    with open(REPO / "mixbench" / "claims" / "published.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if "automix-unveiling" in r["source"] and r["metric"] == "top1_acc"]
    assert len(rows) == 12  # the PwC listing of the AutoMix paper's results
    for row in rows:
        trials = trials_of(names[row["dataset"]], tmp_path)
        backbone = claim_backbone(row["timm_model"], row["backbone"])
        trial = trials.get((backbone, "automix"))
        assert trial is not None, f"no trial for {row['dataset']} {row['backbone']}"
        if row["epochs"] and not math.isnan(float(row["epochs"])):
            assert trial.recipe.epochs == int(float(row["epochs"])), row
        assert (trial.recipe.image_size or 0) == int(row["image_size"]), row


def test_cifar_recipes(tmp_path):
    for name in ("cifar10", "cifar100"):
        t = trials_of(name, tmp_path)
        rx = t["resnext50_32x4d_cifar", "vanilla"].recipe
        assert (rx.epochs, rx.batch_size, rx.image_size, rx.optimizer.lr, rx.optimizer.momentum) == (800, 100, 32,
                                                                                                        0.1, 0.9)
        assert (rx.optimizer.weight_decay, rx.schedule.name, rx.schedule.min_lr, rx.last_n) == (1e-4, "cosine", 0, 10)
        alphas = {m: t["resnext50_32x4d_cifar", m].hparams.get("alpha") for m in METHODS - {"vanilla"}}
        assert alphas == {"mixup": 1.0, "cutmix": 0.2, "saliencymix": 0.2, "puzzlemix": 1.0, "automix": 2.0}
        automix = t["resnext50_32x4d_cifar", "automix"]
        assert automix.recipe.schedule.min_lr == 0.05 and automix.hparams["lam_concat"] is False
        assert automix.hparams["ema_momentum_end"] == 0.999999 and automix.hparams["mask_layer"] == 2
    c10, c100 = trials_of("cifar10", tmp_path), trials_of("cifar100", tmp_path)
    # The "wd 5e-4 for cutting-based methods" note is CIFAR-100 ResNeXt-50 only.
    assert c10["resnext50_32x4d_cifar", "cutmix"].recipe.optimizer.weight_decay == 1e-4
    for method in ("cutmix", "saliencymix"):
        assert c100["resnext50_32x4d_cifar", method].recipe.optimizer.weight_decay == 5e-4
    for method in ("mixup", "puzzlemix", "automix"):
        assert c100["resnext50_32x4d_cifar", method].recipe.optimizer.weight_decay == 1e-4
    for method in METHODS:
        wrn = c100["wrn28_8", method].recipe
        assert (wrn.epochs, wrn.optimizer.lr, wrn.optimizer.weight_decay) == (400, 0.03, 1e-3), method
    wrn_automix = c100["wrn28_8", "automix"]
    assert wrn_automix.recipe.schedule.min_lr == 1e-3
    assert wrn_automix.hparams["mask_layer"] == 1 and wrn_automix.hparams["mb_momentum"] == 0.0
    assert c100["wrn28_8", "mixup"].recipe.schedule.min_lr == 0.0


def test_tiny_imagenet_recipe(tmp_path):
    t = trials_of("tiny_imagenet", tmp_path)
    for backbone in ("resnet18_cifar", "resnext50_32x4d_cifar"):
        r = t[backbone, "vanilla"].recipe
        assert (r.epochs, r.batch_size, r.image_size, r.optimizer.lr, r.optimizer.weight_decay) == (400, 100, 64,
                                                                                                      0.2, 1e-4)
        alphas = {m: t[backbone, m].hparams.get("alpha") for m in METHODS - {"vanilla"}}
        assert alphas == {"mixup": 1.0, "cutmix": 1.0, "saliencymix": 1.0, "puzzlemix": 1.0, "automix": 2.0}
        automix = t[backbone, "automix"]
        assert automix.recipe.schedule.min_lr == 0.05
        assert (automix.hparams["mb_lr"], automix.hparams["mb_min_lr"], automix.hparams["lam_concat"]) == (0.1, 1e-3,
                                                                                                            False)


def test_imagenet_family_recipes(tmp_path):
    expected_alpha = {  # (suite, backbone) -> α per method
        ("imagenet", "resnet18"): {"mixup": 0.2, "cutmix": 0.2, "saliencymix": 0.2, "puzzlemix": 1.0, "automix": 2.0},
        ("imagenet", "resnet50"): {"mixup": 0.2, "cutmix": 1.0, "saliencymix": 1.0, "puzzlemix": 1.0, "automix": 2.0},
        ("inat2018", "resnext101_32x4d"): {"mixup": 0.2, "cutmix": 1.0, "saliencymix": 1.0, "puzzlemix": 1.0,
                                           "automix": 2.0},
        ("places205", "resnet50"): {"mixup": 0.2, "cutmix": 0.2, "saliencymix": 0.2, "puzzlemix": 1.0,
                                    "automix": 2.0},
    }
    budget = {"imagenet": (300, 10), "inat2018": (100, 5), "places205": (100, 5)}
    for (name, backbone), alphas in expected_alpha.items():
        t = trials_of(name, tmp_path)
        assert {m: t[backbone, m].hparams.get("alpha") for m in alphas} == alphas, (name, backbone)
        r = t[backbone, "vanilla"].recipe
        assert (r.epochs, r.last_n) == budget[name]
        assert (r.batch_size, r.image_size, r.optimizer.lr, r.optimizer.weight_decay, r.schedule.min_lr) == (
            256, 224, 0.1, 1e-4, 0.0)
        assert t[backbone, "vanilla"].resources.gpus_per_trial == 4 and r.num_workers == 8
        automix = t[backbone, "automix"]
        assert automix.recipe.schedule.min_lr == 0.0
        assert (automix.hparams["lam_concat"], automix.hparams["mask_loss_anneal"], automix.hparams["mb_lr"]) == (
            True, True, 0.1)
        assert automix.hparams["mb_min_lr"] == (1e-4 if name == "inat2018" else 1e-3)
        assert automix.hparams["ema_momentum_end"] == 0.99999


def test_issue15_mixers_follow_the_openmixup_tables(tmp_path):
    c100, tiny = trials_of("cifar100", tmp_path), trials_of("tiny_imagenet", tmp_path)
    imagenet, places = trials_of("imagenet", tmp_path), trials_of("places205", tmp_path)
    # α: CIFAR FMix 0.2, ResizeMix 1, GridMix 0.2; Tiny FMix 1; ImageNet ResNet-18 0.2 for FMix/ResizeMix (the docs'
    # note), else 1; Places205 FMix 0.2.
    assert [c100["wrn28_8", m].hparams["alpha"] for m in ("fmix", "resizemix", "gridmix")] == [0.2, 1.0, 0.2]
    assert [tiny["resnet18_cifar", m].hparams["alpha"] for m in ("fmix", "resizemix", "gridmix")] == [1.0, 1.0, 0.2]
    assert [imagenet["resnet18", m].hparams["alpha"] for m in ("fmix", "resizemix")] == [0.2, 0.2]
    assert [imagenet["resnet50", m].hparams["alpha"] for m in ("fmix", "resizemix")] == [1.0, 1.0]
    assert [places["resnet50", m].hparams["alpha"] for m in ("fmix", "resizemix")] == [0.2, 1.0]
    # ResNeXt-50 on CIFAR-100: wd 5e-4 for the docs' cutting-based list, FMix and ResizeMix included.
    for method, wd in (("fmix", 5e-4), ("resizemix", 5e-4), ("gridmix", 1e-4), ("smoothmix", 1e-4)):
        assert c100["resnext50_32x4d_cifar", method].recipe.optimizer.weight_decay == wd, method
    # SmoothMix reproduces openmixup's λ in the paper suites; the switch is timm's recipe with label smoothing.
    assert c100["wrn28_8", "smoothmix"].hparams["openmixup_lam"] is True
    switch = imagenet["resnet50", "mixup_cutmix"].hparams
    assert (switch["mixup_alpha"], switch["cutmix_alpha"], switch["switch_prob"], switch["label_smoothing"]) == (
        0.8, 1.0, 0.5, 0.1)


# ---- check, dry run, --tiny through the command line -------------------------------------------------------


def test_fine_grained_and_inat2017_recipes_and_their_claims(tmp_path):
    from mixbench.claims import claim_backbone, claim_dataset

    for name in ("cub200", "aircraft"):
        t = trials_of(name, tmp_path)
        for backbone in ("resnet18", "resnext50_32x4d"):
            r = t[backbone, "vanilla"].recipe
            assert (r.epochs, r.batch_size, r.image_size, r.optimizer.lr, r.optimizer.weight_decay) == (200, 16, 224,
                                                                                                          1e-3, 5e-4)
            assert (r.schedule.name, r.schedule.min_lr, r.last_n) == ("cosine", 0.0, 10)
            assert t[backbone, "vanilla"].backbone.kwargs == {"pretrained": True, "pretrained_cfg": "tv_in1k"}
            alphas = {m: t[backbone, m].hparams.get("alpha") for m in METHODS - {"vanilla"}}
            assert alphas == {"mixup": 0.2, "cutmix": 1.0, "saliencymix": 0.2, "puzzlemix": 1.0, "automix": 2.0}
            automix = t[backbone, "automix"].hparams
            assert (automix["mb_lr"], automix["mb_min_lr"], automix["ema_momentum_end"]) == (0.01, 5e-4, 0.99999)
    inat = trials_of("inat2017", tmp_path)
    assert {b: inat[b, "automix"].hparams["mb_min_lr"] for b in ("resnet18", "resnet50", "resnext101_32x4d")} == {
        "resnet18": 1e-3, "resnet50": 1e-4, "resnext101_32x4d": 1e-4}
    r = inat["resnet50", "vanilla"].recipe
    assert (r.epochs, r.batch_size, r.optimizer.lr, r.last_n) == (100, 256, 0.1, 5)
    # Every published row of the three datasets names a cell of its suite (same backbone, method, epochs, size).
    names = {claim_dataset(n): n for n in ("cub200", "aircraft", "inat2017")}
    assert set(names) == {"CUB-200-2011", "FGVC-Aircraft", "iNaturalist2017"}
    with open(REPO / "mixbench" / "claims" / "published.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] in names and r["metric"] == "top1_acc"]
    assert len(rows) == 12 + 12 + 17 + 4 + 4 + 6  # the six methods, then FMix and ResizeMix (issue 15)
    grids = {name: trials_of(name, tmp_path) for name in names.values()}
    for row in rows:
        trial = grids[names[row["dataset"]]].get((claim_backbone(row["timm_model"], row["backbone"]), row["method"]))
        assert trial is not None, row
        assert (trial.recipe.epochs, trial.recipe.image_size) == (int(row["epochs"]), int(row["image_size"])), row


def test_tiny_keeps_the_suites_overrides_and_writes_each_fixture_once(tmp_path):
    from mixbench.tiny import prepare_tiny

    tiny = prepare_tiny(suite_file("cifar100"), results=tmp_path)
    marker = tmp_path / ".tiny" / "data" / "cifar100" / ".mixbench-fixture.json"
    stamp = marker.stat().st_mtime_ns
    again = prepare_tiny(suite_file("cifar100"), results=tmp_path)
    assert marker.stat().st_mtime_ns == stamp and again.suite_path == tiny.suite_path
    suite = load_suite(tiny.suite_path)
    assert suite.name == "cifar100-tiny" and suite.seeds == [0] and tiny.image_size == 32
    trials = {(t.backbone.name, t.method): t for t in expand(suite, tiny.suite_path)}
    assert len(trials) == 2 * len(methods_of("cifar100"))
    wrn = trials["wrn28_8", "automix"]
    # The suite's overrides still apply (WRN AutoMix's Mix Block stage, floor, lr) ...
    assert (wrn.hparams["mask_layer"], wrn.recipe.schedule.min_lr, wrn.recipe.optimizer.lr) == (1, 1e-3, 0.03)
    # ... but none undoes the tiny recipe (the WRN override sets 400 epochs).
    assert (wrn.recipe.epochs, wrn.recipe.batch_size, wrn.recipe.image_size, wrn.recipe.num_workers) == (1, 2, 32, 0)
    assert (wrn.dataset.limit_per_class, wrn.dataset.val_limit_per_class, wrn.resources.gpus_per_trial) == (2, 1, 1)
    assert Path(wrn.dataset.root).is_relative_to(tmp_path / ".tiny" / "data" / "cifar100")



@pytest.mark.parametrize("name", SUITES)
def test_check_passes_on_fixture_roots(name, capsys):
    code, out = cli(capsys, "check", str(suite_file(name)), "--tiny")
    assert code == 0, out
    assert f"{suite_file(name)}: OK, " in out
    assert f"({name}-tiny)" in out
    assert "ok: " in out and "2 classes" in out


@pytest.mark.parametrize("name", SUITES)
def test_dry_run_prints_the_grid_and_its_gpu_hours(name, capsys, tmp_path):
    suite = load_suite(suite_file(name))
    n = len(suite.backbones) * len(suite.methods) * len(suite.seeds)
    code, out = cli(capsys, "run", str(suite_file(name)), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, out
    assert f"{name}: {n} trials, {n} to run" in out
    assert f"{name}: estimated cost" in out and "GPU-h/trial" in out
    assert f"estimate: {n} trials, " in out and " GPU-hours (" in out
    for backbone in suite.backbones:
        assert f"│ {backbone.name} " in out
    assert not list((tmp_path / "r").rglob("config.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SUITES)
def test_tiny_runs_the_whole_suite_end_to_end(name, capsys, tmp_path):
    """Every backbone of every suite trains with vanilla and with AutoMix (the method that reaches deepest into a
    backbone: stage hooks, Mix Block, EMA copy); CIFAR-100, whose table has every CNN mixer, runs them all. The
    other method x backbone pairs pass `check --tiny` above, and each mixer runs end to end in the smoke suites:
    running all ~190 pairs here would cost CI half an hour for little more coverage."""
    suite = load_suite(suite_file(name))
    methods = methods_of(name) if name == "cifar100" else {"vanilla", "automix"}
    code, out = cli(capsys, "run", str(suite_file(name)), "--tiny", "--jobs", "2", "--no-live",
                    "--results", str(tmp_path), "--only", f"method={','.join(sorted(methods))}")
    assert code == 0, out
    records = [t.record for t in load_results(tmp_path / f"{name}-tiny")]
    assert len(records) == len(suite.backbones) * len(methods)
    for record in records:
        assert record.status == "done", f"{record.backbone} {record.method}: {record.reason}"
        assert record.epochs == record.epochs_done == 1 and record.top1 is not None
        assert record.config["recipe"]["batch_size"] == 2 and record.config["dataset"]["limit_per_class"] == 2
    assert {r.method for r in records} == methods
    assert {r.backbone for r in records} == {b.name for b in suite.backbones}
    assert {r.config["recipe"]["image_size"] for r in records} == {32}
    assert (tmp_path / ".tiny" / "suites" / f"{name}.yaml").is_file()

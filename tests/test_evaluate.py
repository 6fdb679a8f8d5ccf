"""The evaluate stage: FGSM, occlusion, the suite's evaluation block, and `mixbench evaluate` on finished trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from trial_configs import synthetic_trial

from mixbench.data import dataset_info, device_augment, load_split
from mixbench.evaluation.fgsm import fgsm_pixels
from mixbench.evaluation.occlusion import patch_mask
from mixbench.evaluation.pixels import normalise, to_pixels
from mixbench.suite import EvaluationConfig, SuiteError, load_suite


def trained_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor, object]:
    """A small CNN trained for a few dozen steps on the synthetic shapes (CPU, seconds)."""
    torch.manual_seed(0)
    info = dataset_info("synthetic")
    train = load_split("synthetic", None, "train", image_size=32, limit_per_class=30)
    val = load_split("synthetic", None, "val", image_size=32, limit_per_class=10)
    augment = device_augment(info, train=False, image_size=32)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        index = torch.randint(0, len(train), (32,), generator=gen)
        loss = F.cross_entropy(model(augment(train.images[index])), train.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval(), val.images, val.labels, augment


def test_fgsm_raises_the_loss_of_a_trained_model_within_the_pixel_budget():
    model, images, labels, augment = trained_model()
    pixels = to_pixels(images, augment)
    kept = pixels.clone()
    adversarial = fgsm_pixels(model, pixels, labels, augment, epsilon=8 / 255)
    assert torch.equal(pixels, kept)  # the caller's tensor is untouched
    assert (adversarial - pixels).abs().max() <= 8 / 255 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    with torch.no_grad():
        clean_logits = model(normalise(pixels, augment))
        adv_logits = model(normalise(adversarial, augment))
    clean_loss, adv_loss = F.cross_entropy(clean_logits, labels), F.cross_entropy(adv_logits, labels)
    assert clean_logits.argmax(1).eq(labels).float().mean() > 0.3  # it did learn something to attack
    assert adv_loss > clean_loss * 1.2
    assert adv_logits.argmax(1).eq(labels).sum() < clean_logits.argmax(1).eq(labels).sum()
    assert all(p.grad is None for p in model.parameters())  # the attack takes no parameter gradient


def test_pixels_round_trip_to_what_the_eval_preset_feeds_the_model():
    info = dataset_info("fashion_mnist")
    augment = device_augment(info, train=False, image_size=32)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(normalise(to_pixels(images, augment), augment), augment(images, None), atol=1e-5)


def test_occlusion_drops_the_asked_fraction_of_patches_per_image():
    gen = torch.Generator().manual_seed(0)
    mask = patch_mask(6, 32, 4, 0.25, gen)
    assert mask.shape == (6, 1, 32, 32)
    per_patch = mask[:, 0, ::8, ::8]  # one value per 8×8 patch
    assert torch.equal(mask, per_patch.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None])
    assert (per_patch == 0).sum(dim=(1, 2)).tolist() == [4] * 6  # round(16 × 0.25) per image
    assert not torch.equal(per_patch[0], per_patch[1])  # each image draws its own patches
    assert torch.equal(mask, patch_mask(6, 32, 4, 0.25, torch.Generator().manual_seed(0)))
    uneven = patch_mask(2, 30, 4, 0.5, gen)  # 30 px in 4 patches: 8, 7, 8, 7 px
    assert [(uneven[i] == 0).float().mean().item() for i in range(2)] == pytest.approx([0.5, 0.5], abs=0.06)
    with pytest.raises(ValueError, match=r"a 40×40 grid of patches does not fit a 32 px image; .*between 1 and 32"):
        patch_mask(1, 32, 40, 0.5, gen)


def write_suite(tmp_path: Path, evaluation: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\ndatasets: [synthetic]\nbackbones: [test_resnet]\nmethods: [vanilla]\n"
                    f"recipe: {{epochs: 1, batch_size: 8}}\nevaluation: {evaluation}\n")
    return path


def test_check_rejects_unknown_corruptions_and_severities_naming_the_allowed_values(tmp_path):
    with pytest.raises(SuiteError, match=r"suite.yaml: evaluation.corruptions: .*unknown corruption 'rain'; "
                                         r"allowed: all, none or a list of gaussian_noise, shot_noise"):
        load_suite(write_suite(tmp_path, "{corruptions: [contrast, rain]}"))
    with pytest.raises(SuiteError, match=r"suite.yaml: evaluation.severities: .*severity \[0, 6\] outside 1-5; "
                                         r"allowed: a non-empty list of 1, 2, 3, 4, 5"):
        load_suite(write_suite(tmp_path, "{severities: [0, 3, 6]}"))
    with pytest.raises(SuiteError, match=r"evaluation.corruption: unknown key.*did you mean 'corruptions'"):
        load_suite(write_suite(tmp_path, "{corruption: all}"))
    assert load_suite(write_suite(tmp_path, "{corruptions: all}")).evaluation.corruption_names[0] == "gaussian_noise"


def test_the_evaluation_block_leaves_the_trial_id_alone():
    plain = synthetic_trial("s", "vanilla", 1, seed=0)
    asking = synthetic_trial("s", "vanilla", 1, seed=0, evaluation={"corruptions": "all", "fgsm": False})
    assert plain.trial_id == asking.trial_id
    assert asking.evaluation.corruption_names and not plain.evaluation.corruption_names


def test_corruptions_option_replaces_the_suites_choice():
    from mixbench.evaluate import with_corruptions

    options = EvaluationConfig()
    assert with_corruptions(options, "contrast,fog").corruption_names == ["contrast", "fog"]
    assert with_corruptions(options, "all").corruptions == "all"
    with pytest.raises(SuiteError, match="--corruptions contrast,rain: .*unknown corruption 'rain'"):
        with_corruptions(options, "contrast,rain")


EVALUATION = {"corruptions": ["contrast", "gaussian_noise"], "severities": [1, 5], "occlusion": [0.5],
              "occlusion_grid": 4}


@pytest.mark.slow
def test_mixbench_evaluate_fills_every_record_once_and_then_does_nothing(tmp_path, one_thread):
    from mixbench.cli import main
    from mixbench.engine import run_trial

    results = tmp_path / "results" / "smoke"
    dirs = []
    for method in ("vanilla", "automix"):
        config = synthetic_trial("smoke", method, 1, seed=0, evaluation=EVALUATION)
        dirs.append(results / config.dirname)
        run_trial(config, dirs[-1])
    # the end of each trial measured it all: every model of every trial (AutoMix: EMA and online)
    for trial_dir, models in zip(dirs, (["model"], ["ema", "online"]), strict=True):
        record = json.loads((trial_dir / "record.json").read_text())
        assert sorted(record["evaluation"]) == sorted(models)
        for summary in record["evaluation"].values():
            assert set(summary["corruption_top1_by_name"]) == {"contrast", "gaussian_noise"}
            assert 0 <= summary["ece"] <= 1 and summary["fgsm_top1"] <= 100 and "0.5" in summary["occlusion_top1"]
        assert record["time_eval_s"] > 0
    assert len(list((tmp_path / "results" / ".cache" / "corruptions").rglob("*.npy"))) == 4  # shared by both

    # results of an older mixbench: no evaluation yet
    for trial_dir in dirs:
        (trial_dir / "robustness.json").unlink()
        record = json.loads((trial_dir / "record.json").read_text())
        record.pop("evaluation"), record.pop("time_eval_s")
        (trial_dir / "record.json").write_text(json.dumps(record))
    lines: list[str] = []
    from mixbench import evaluate as ev

    counts = ev.evaluate_finished(dirs, log=lines.append)
    assert counts == {"evaluated": 2, "up to date": 0, "skipped": 0}
    parts = len(ev.part_keys(synthetic_trial("smoke", "vanilla", 1, seed=0, evaluation=EVALUATION).evaluation,
                             "cifar"))
    assert len([line for line in lines if "top-1" in line]) == 3 * parts  # 1 + 2 models, each part once
    stamps = {p: p.stat().st_mtime_ns for d in dirs for p in (d / "record.json", d / "robustness.json")}
    for trial_dir in dirs:
        assert json.loads((trial_dir / "record.json").read_text())["evaluation"]

    # the second time: nothing to do, nothing rewritten
    assert main(["evaluate", str(results)]) == 0
    assert ev.evaluate_finished(dirs, log=lines.append) == {"evaluated": 0, "up to date": 2, "skipped": 0}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # resume: a part lost (an interrupted evaluation) is the only one measured again
    state = json.loads((dirs[1] / "robustness.json").read_text())
    del state["parts"]["ema"]["occlusion/s0/g4/0.5"]
    (dirs[1] / "robustness.json").write_text(json.dumps(state))
    lines.clear()
    assert ev.evaluate_finished(dirs, log=lines.append)["evaluated"] == 1
    assert [line.split(": ", 1)[1] for line in lines if "top-1" in line] == [
        lines[-1].split(": ", 1)[1]] and "ema occlusion/s0/g4/0.5" in lines[-1]


def test_mixbench_check_names_the_evaluation_field(tmp_path, capsys):
    from mixbench.cli import main

    assert main(["check", str(write_suite(tmp_path, "{corruptions: [snowfall], severities: [1, 9]}"))]) == 2
    out = capsys.readouterr().out
    assert "evaluation.corruptions" in out and "unknown corruption 'snowfall'" in out and "jpeg_compression" in out
    assert "evaluation.severities" in out and "severity [9] outside 1-5" in out


def test_check_refuses_frost_without_its_photographs(tmp_path, monkeypatch):
    from mixbench.evaluate import evaluation_problems
    from mixbench.evaluation import corruptions
    from mixbench.suite import expand

    path = write_suite(tmp_path, "{corruptions: [frost, contrast]}")
    suite = load_suite(path)
    trials = expand(suite, path)
    monkeypatch.setattr(corruptions, "FROST_PACKAGES", ())
    monkeypatch.setenv("MIXBENCH_FROST_DIR", str(tmp_path))
    problems = evaluation_problems(suite, trials, str(path))
    assert len(problems) == 1
    assert "evaluation.corruptions: corruption frost needs Hendrycks' frost photographs" in problems[0]
    assert evaluation_problems(load_suite(write_suite(tmp_path, "{corruptions: [contrast]}")), trials,
                               str(path)) == []


def imagefolder_suite(tmp_path: Path, corruptions: str, recipe: str = "") -> Path:
    """A suite on a user's tree of 64 px images (the size the imagefolder infers)."""
    from mixbench.data.folder import write_user_tree

    root = write_user_tree(tmp_path / "own", {"a": 2, "b": 2}, size=(64, 64))
    path = tmp_path / "own.yaml"
    path.write_text(f"name: own\ndatasets: [{{name: imagefolder, root: {root}, label: own}}]\n"
                    f"backbones: [resnet_tiny_cifar]\nmethods: [vanilla]\n"
                    f"recipe: {{epochs: 1, batch_size: 2{recipe}}}\n"
                    f"evaluation: {{corruptions: {corruptions}}}\n")
    return path


def test_check_passes_corruptions_on_images_above_32_px(tmp_path, monkeypatch, capsys):
    """64 px images get Tiny-ImageNet-C's parameters, larger ones ImageNet-C's: every corruption passes check,
    but frost on images larger than its photographs (314 px under the ImageNet protocol)."""
    from mixbench.cli import main
    from mixbench.evaluate import corruption_protocol
    from mixbench.evaluation.corruptions import frost_dir
    from mixbench.suite import expand

    frost_dir()  # installed here: `pip install --no-deps imagecorruptions`
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path / "cache"))
    path = imagefolder_suite(tmp_path, "all")
    trial = expand(load_suite(path), path)[0]
    assert corruption_protocol(trial, trial.evaluation) == "tiny_imagenet"
    assert main(["check", str(path)]) == 0, capsys.readouterr().out
    path = imagefolder_suite(tmp_path, "[frost, contrast]", ", image_size: 320")  # the eval view at 320 px
    trial = expand(load_suite(path), path)[0]
    assert corruption_protocol(trial, trial.evaluation) == "imagenet"
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr()
    assert (f"{path}: evaluation.corruptions: frost crops Hendrycks' frost photographs, at most 314 px under the "
            f"imagenet protocol, but own images are 320 px; fix: leave frost out of "
            f"evaluation.corruptions") in out.out + out.err


def test_a_failed_evaluation_leaves_the_trained_trial_done(monkeypatch, capsys, tmp_path):
    from types import SimpleNamespace

    from mixbench import evaluate

    def broken(trial):
        raise RuntimeError("disk full")

    monkeypatch.setattr(evaluate, "evaluate_trial", broken)
    evaluate.after_training(SimpleNamespace(out_dir=tmp_path / "suite" / "trial"))
    err = capsys.readouterr().err
    assert "evaluation of trial failed (RuntimeError: disk full); the trial stays done" in err
    assert f"mixbench evaluate {tmp_path / 'suite'}" in err

"""What a careless user meets at the command line: one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mixbench.cli import main

REPO = Path(__file__).parents[1]
HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def suite(tmp_path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        name: errs
        datasets: [{name: synthetic, limit_per_class: 2, val_limit_per_class: 1}]
        backbones: [test_resnet]
        methods: [vanilla]
        recipe: {epochs: 1, batch_size: 4, num_workers: 0}
    """))
    return path


def one_error_line(capsys) -> str:
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HELPERS)]), "MIXBENCH_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mixbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


# ---- the suite file -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "expected"), [
    ("name: ../outside", r"s.yaml: name: '../outside' is not a valid suite name: it names a folder, so only "
                         r"letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit; fix: "
                         r"e.g. 'outside'"),
    ("methods: [{name: mixup, label: a/b}]", r"s.yaml: methods\[0\].label: 'a/b' is not a valid method label: .*; "
                                             r"fix: e.g. 'a-b'"),
    ("seeds: [0, 1180591620717411303424]", r"s.yaml: seeds: seed 1180591620717411303424 is outside 0..2147483647 "
                                           r"\(2\^31 - 1\); fix: use a seed in that range"),
    ("seeds: [-1]", r"s.yaml: seeds: seed -1 is outside 0..2147483647"),
    ("seeds: [0, 1, 0]", r"s.yaml: seeds: seed 0 listed twice; a seed is one trial per setting; fix: list each "
                         r"seed once"),
    ("methods: [vanilla, {name: cutmix, alpha: 1.0}, {name: cutmix, alpha: 0.2}]",
     r"s.yaml: methods: methods\[1\] and methods\[2\] are both 'cutmix'; fix: remove one, or tell two settings "
     r"apart with label:, e.g. \{name: cutmix, label: cutmix-b\}"),
])
def test_names_labels_and_seeds_are_checked_in_the_schema(suite, tmp_path, capsys, edit, expected):
    key = edit.split(":")[0]
    lines = [line for line in suite.read_text().splitlines() if not line.startswith(f"{key}:")]
    suite.write_text("\n".join([*lines, edit]) + "\n")
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    import re

    assert re.search(expected, one_error_line(capsys))
    assert not (tmp_path / "r").exists() and not (tmp_path / "outside").exists()


# ---- run's options -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["read-only folder", "a file in the way"])
def test_an_unwritable_results_folder_is_one_line_before_anything_runs(suite, tmp_path, capsys, how):
    results = tmp_path / "r"
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the other case covers the same check")
        results.mkdir()
        results.chmod(stat.S_IRUSR | stat.S_IXUSR)
    else:
        results.write_text("not a folder")
    assert main(["run", str(suite), "--results", str(results)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {results}/errs: results folder is not writable (")
    assert line.endswith("fix: pass --results DIR with a folder you can write, or change results_dir: in the suite")


def test_gpus_must_be_ids_of_visible_gpus(suite, tmp_path, capsys):
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--gpus", "abc"]) == 2
    assert one_error_line(capsys) == ("error: --gpus abc: expected GPU ids separated by commas, e.g. --gpus 0,1; "
                                      "fix: give ids (nvidia-smi lists them) or leave --gpus out to use every "
                                      "visible GPU")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--gpus", "0"]) == 2
    line = one_error_line(capsys)
    if torch.cuda.is_available():
        assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--gpus", "999"]) == 2
        assert "--gpus 999: visible GPUs are" in one_error_line(capsys)
    else:
        assert line == ("error: --gpus 0: torch sees no GPU on this machine (torch.cuda.is_available() is False); "
                        "fix: leave --gpus out to run on the CPU, or install a CUDA build of torch")
    assert not list((tmp_path / "r").rglob("record.json"))


@pytest.mark.parametrize("command", ["run", "check", "status"])
def test_a_misspelt_data_root_name_is_an_error_not_ignored(suite, tmp_path, capsys, command):
    assert main([command, str(suite), "--data-root", f"synthetik={tmp_path}"]) == 2
    assert one_error_line(capsys) == (f"error: --data-root synthetik={tmp_path}: the suite has no dataset "
                                      f"'synthetik'; fix: did you mean synthetic? name one of synthetic, e.g. "
                                      f"--data-root synthetic={tmp_path}")


def test_status_accepts_the_data_root_the_suite_ran_with(suite, tmp_path, capsys):
    assert main(["status", str(suite), "--results", str(tmp_path / "r"), "--data-root", str(tmp_path)]) == 0
    assert "errs: 1 trials: 1 pending" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "status"])
def test_only_a_value_no_trial_has_is_an_error(suite, tmp_path, capsys, command):
    assert main([command, str(suite), "--results", str(tmp_path / "r"), "--only", "method=nonexistent"]) == 2
    assert one_error_line(capsys) == (f"error: --only method=nonexistent: no trial of {suite} has method "
                                      f"nonexistent; fix: choose from vanilla")


def test_show_with_no_samples_is_an_error(tmp_path, capsys):
    assert main(["show", "mixup", "--n", "0", "--out", str(tmp_path / "g.png")]) == 2
    assert one_error_line(capsys) == ("error: --n 0: a gallery shows at least one sample; fix: --n 4 (one sample "
                                      "per class)")
    assert not (tmp_path / "g.png").exists()


def test_threads_must_be_positive(suite, tmp_path, capsys):
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--threads", "0"]) == 2
    assert one_error_line(capsys) == ("error: --threads 0: a trial needs at least one thread; fix: --threads 1 or "
                                      "more, or leave it out")


# ---- bench -------------------------------------------------------------------------------------------------


def test_mixbench_bench_passes_every_option_to_the_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--quiet", "--sizes", "nonexistent"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown size nonexistent; choose from" in err and "usage: mixbench bench" in err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0 and "--quiet" in capsys.readouterr().out


def test_bench_memory_profiling_prints_no_profiler_lines(capfd):
    import timm
    from torch.profiler import ProfilerActivity, profile

    import mixbench.models  # noqa: F401  (the CIFAR variants)
    from mixbench.bench import BenchSize, StepRunner
    from mixbench.methods.registry import create_method

    size = BenchSize("t", 2, 16, "test_resnet", 3, "cifar")
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    runner = StepRunner(create_method("mixup"), timm.create_model("test_resnet", num_classes=3), size, x, y)
    capfd.readouterr()
    assert runner.peak_bytes() > 0
    print("still heard", file=sys.stderr)
    silenced = capfd.readouterr().err
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):  # what kineto prints unsilenced
        runner.step()
    plain = capfd.readouterr().err
    if "profiler_start" not in plain:
        pytest.skip("this torch's profiler prints nothing to silence")
    assert "profiler_start" not in silenced and "USDT" not in silenced
    assert silenced.strip() == "still heard"  # stderr itself works afterwards


# ---- the end of a run ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_full_report_hint_names_the_results_folder_shell_quoted_and_works(suite, tmp_path):
    results = tmp_path / "my results"
    done = run_cli("run", str(suite), "--results", str(results), "--no-live", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    hint = f"(full report: mixbench report {shlex.quote(str(results / 'errs'))})"
    assert hint in done.stdout.replace("\n", "")
    command = shlex.split(hint.removeprefix("(full report: ").removesuffix(")"))
    report = run_cli(*command[1:], cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (results / "errs" / "report" / "README.md").is_file()


# ---- dry run without a GPU ------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU prints")
def test_a_dry_run_without_a_gpu_says_its_figures_are_gpu_estimates_and_adds_a_cpu_one(suite, tmp_path, capsys):
    from mixbench.results import TrialRecord, write_config, write_record
    from mixbench.suite import expand, load_suite

    suite.write_text(suite.read_text() + "seeds: [0, 1]\n")
    results = tmp_path / "r"
    assert main(["run", str(suite), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "no GPU on this machine: the GPU-hours above are estimates for one A100-SXM4" in out
    assert "CPU estimate: no CPU record of these settings yet" in out

    measured = expand(load_suite(suite))[0]  # seed 0 ran on this CPU at 10 images/s
    trial_dir = results / "errs" / measured.dirname
    write_config(trial_dir, measured.model_dump(mode="json"))
    write_record(trial_dir, TrialRecord(
        trial_id=measured.trial_id, suite="errs", dataset="synthetic", backbone="test_resnet", method="vanilla",
        method_label="vanilla", method_version=1, hparams={}, seed=0, status="done", epochs=1, epochs_done=1,
        images_per_sec=10.0, device="cpu", config=measured.model_dump(mode="json")))
    assert main(["run", str(suite), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    # seed 1 is left: 2 images per class × 10 classes × 1 epoch at 10 images/s
    assert ("CPU estimate: 2 s of training for 1 of the 1 trials to run, at the images/s earlier CPU records of the "
            "same settings measured (evaluation not included)") in out


# ---- damaged files at the command line -------------------------------------------------------------------------


def test_status_shows_a_damaged_record_as_one_line_and_report_names_a_damaged_metrics_file(suite, tmp_path, capsys):
    from mixbench.results import write_config, write_metrics
    from mixbench.suite import expand, load_suite

    trial = expand(load_suite(suite))[0]
    trial_dir = tmp_path / "r" / "errs" / trial.dirname
    write_config(trial_dir, trial.model_dump(mode="json"))
    (trial_dir / "record.json").write_text('{"trial_id": "x", "status": ')
    assert main(["status", str(suite), "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.replace("\n", "")
    assert "Traceback" not in out and "damaged" in out and "errs: 1 trials: 1 damaged" in out

    (trial_dir / "record.json").unlink()
    write_metrics(trial_dir, [{"epoch": 1, "top1": 50.0}])
    with open(trial_dir / "metrics.jsonl", "a") as f:
        f.write("\x00\x00 torn")
    assert main(["report", str(tmp_path / "r" / "errs"), "--out", str(tmp_path / "rep")]) == 2
    assert one_error_line(capsys).startswith(f"error: {trial_dir}/metrics.jsonl: line 2 is not JSON (")

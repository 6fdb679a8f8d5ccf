"""Trials as several processes (DDP; gloo on CPU): the same training as one process where it must be, method
gradients averaged, drifting processes caught, busy trials left alone, resume with another process count."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from trial_configs import synthetic_trial

from mixbench.cli import main as mixbench
from mixbench.data.fixtures import write_tiny_imagenet
from mixbench.data.loader import num_batches, shard
from mixbench.engine import TrialFailed, run_trial
from mixbench.results import load_records, read_record, write_config
from mixbench.runner.local import trial_command
from mixbench.suite import TrialConfig

HELPERS = Path(__file__).parent / "helpers"
ONE_THREAD = {"MIXBENCH_THREADS": "1", "OMP_NUM_THREADS": "1"}  # CPU float reductions depend on the thread count


def trial(method: str = "vanilla", epochs: int = 1, **changes) -> TrialConfig:
    return synthetic_trial("ddp", method, epochs, seed=5, **changes)


def run_processes(trial_dir: Path, config: TrialConfig, nprocs: int, *extra: str) -> subprocess.CompletedProcess:
    """The trial as the local runner launches it: `torch.distributed.run` with `nprocs` processes."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_config(trial_dir, config.model_dump(mode="json"))
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(HELPERS), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([*trial_command(trial_dir, nprocs), *extra], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_processes_shards_make_up_the_single_process_batches():
    """DistributedSampler-style sharding: step k's global batch is the same images for 1 and for 2 processes."""
    n, global_batch, seed = 40, 8, 3
    for epoch in (0, 1):
        single, _ = shard(n, train=True, seed=seed, epoch=epoch, rank=0, world_size=1)
        ranks = [shard(n, train=True, seed=seed, epoch=epoch, rank=r, world_size=2)[0] for r in (0, 1)]
        steps = num_batches_for(n, global_batch, world_size=1)
        assert steps == num_batches_for(n, global_batch // 2, world_size=2) == 5
        for k in range(steps):
            local = [set(r[k * 4:(k + 1) * 4].tolist()) for r in ranks]
            assert not local[0] & local[1]
            assert local[0] | local[1] == set(single[k * 8:(k + 1) * 8].tolist())
        assert sorted(torch.cat(ranks).tolist()) == list(range(n))  # every image once per epoch
    again = shard(n, train=True, seed=seed, epoch=1, rank=0, world_size=2)[0]
    first = shard(n, train=True, seed=seed, epoch=0, rank=0, world_size=2)[0]
    assert not torch.equal(again, first)  # reseeded every epoch


def num_batches_for(n: int, batch_size: int, world_size: int) -> int:
    class Sized:
        def __len__(self) -> int:
            return n

    return num_batches(Sized(), batch_size, train=True, world_size=world_size)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path, monkeypatch, capsys):
    # Deterministic where DDP must equal one process: vanilla (no mixing draws), a file dataset (its random crops
    # are seeded per image, not per process) and a backbone without BatchNorm (no per-process statistics).
    write_tiny_imagenet(tmp_path / "data", n_train_per_class=8, n_val_per_class=2, size=16)
    suite = tmp_path / "ddp.yaml"
    suite.write_text(textwrap.dedent(f"""
        name: ddp
        datasets: [{{name: tiny_imagenet, root: {tmp_path / 'data'}, limit_per_class: 8, val_limit_per_class: 2}}]
        backbones: [test_vit]
        methods: [vanilla]
        seeds: [3]
        recipe: {{epochs: 2, batch_size: 8, image_size: 16, num_workers: 0}}
        resources: {{gpus_per_trial: 2}}
    """))
    for key, value in ONE_THREAD.items():
        monkeypatch.setenv(key, value)
    # The local runner on CPU: gpus_per_trial 2 launches the trial as 2 gloo processes.
    assert mixbench(["run", str(suite), "--results", str(tmp_path / "r"), "--no-live"]) == 0, capsys.readouterr()
    (ddp,) = load_records(tmp_path / "r" / "ddp")
    assert ddp.status == "done", ddp.reason
    ddp_dir = tmp_path / "r" / "ddp" / TrialConfig.model_validate(ddp.config).dirname
    single_config = TrialConfig.model_validate({**ddp.config, "resources": {"gpus_per_trial": 1}})
    assert single_config.trial_id == ddp.trial_id  # how many processes run a trial is not part of its identity
    single = run_processes(tmp_path / "single", single_config, 1)
    assert single.returncode == 0, single.stderr

    assert ddp.world_size == 2 and ddp.world_sizes == [2] and ddp.per_process_batch == 4
    assert (ddp.mix_scope, ddp.mix_draws, ddp.batch_norm, ddp.grad_sync) == ("local", "shared", "per_process", "ddp")
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(ddp_dir / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and a["train_images"] == b["train_images"] == 48  # the same images
    for key, value in a["model"].items():
        # Only the order of float additions differs (a mean of two means vs one mean; the all-reduce).
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        assert row_a["top1"] == row_b["top1"]  # evaluation summed over both processes' shards of val
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_automix_stays_the_same_on_every_process_and_resumes_with_one(tmp_path, one_thread):
    # AutoMix's Mix Block and mix head live in the method, outside DDP's wrapper, and its mixed branch runs the bare
    # backbone: the engine averages those gradients itself, and checks after each epoch that the weights agree.
    config = trial("automix", epochs=2, hparams={"mask_layer": 1})
    first = run_processes(tmp_path / "t", config, 2, "--stop-after-epoch", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    record = read_record(tmp_path / "t")
    assert record.epochs_done == 1 and record.world_size == 2 and record.grad_sync == "ddp+all_reduce"
    # The checkpoint of two processes resumes with one: the same global batches, the same lr schedule.
    record = run_trial(config, tmp_path / "t")
    assert record.status == "done" and record.epochs_done == 2
    assert record.world_size == 1 and record.world_sizes == [2, 1]
    assert record.models["ema"]["top1"] is not None


@pytest.mark.slow
def test_processes_whose_weights_drift_apart_fail_the_trial(tmp_path):
    done = run_processes(tmp_path / "t", trial("ddp_methods:AroundTheWrapper"), 2)
    assert done.returncode != 0
    record = read_record(tmp_path / "t")
    assert record.status == "failed"
    assert "the processes' weights differ after epoch 1 (backbone." in record.reason
    assert "fix: the method must run the backbone through the model it is given" in record.reason


@pytest.mark.slow
def test_a_busy_ddp_trial_is_skipped_not_failed(tmp_path):
    from mixbench.engine import trial_lock
    from mixbench.runner.local import Job, LocalRunner

    config = trial(resources={"gpus_per_trial": 2})
    job = Job(config, tmp_path / "t")
    job.trial_dir.mkdir()
    with trial_lock(job.trial_dir):  # "another process" runs it
        LocalRunner(gpus=[], jobs=1).run([job])
    assert (job.state, job.note) == ("skipped", "running in another process")
    assert read_record(job.trial_dir) is None  # neither process wrote anything


def test_a_checkpoint_whose_epochs_have_another_step_count_is_refused(tmp_path, one_thread):
    config = trial("vanilla", epochs=2)
    run_trial(config, tmp_path / "t", stop_after_epoch=1)
    state = torch.load(tmp_path / "t" / "last.pt", weights_only=True)
    state.update(world_size=4, steps_per_epoch=6)  # as if 4 processes had padded their shards into a 6th step
    torch.save(state, tmp_path / "t" / "last.pt")
    with pytest.raises(TrialFailed, match=r"last.pt was written by 4 processes with 6 steps per epoch, but with 1 an "
                                          r"epoch has 5 steps, so the lr schedule and the global batches would not "
                                          r"line up; fix: resume with 4 processes \(resources.gpus_per_trial\)"):
        run_trial(config, tmp_path / "t")

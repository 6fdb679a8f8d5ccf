"""Shared pytest fixtures. Each fixture is self-contained; add new ones below."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node Slurm cluster on localhost for the session (tests/slurm_cluster.py); skipped where it cannot run."""
    from slurm_cluster import LocalSlurm, why_it_cannot_run

    reason = why_it_cannot_run()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def one_thread(monkeypatch):
    """Trials run in this process with one thread (run_trial reads MIXBENCH_THREADS): CPU float reductions depend
    on the thread count, and one thread is fastest on a busy 2-core machine. The session's count is restored."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("MIXBENCH_THREADS", "1")
    yield
    torch.set_num_threads(threads)

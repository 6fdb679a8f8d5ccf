"""The rich live view of a running suite: each trial's status, epoch, top-1 and ETA, read from its record."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text

from mixbench.runner.local import Job, job_record

STYLE = {"done": "green", "failed": "red", "damaged": "red", "running": "cyan", "interrupted": "yellow",
         "skipped": "dim"}


def _eta(job: Job, epochs_done: int, epochs: int, per_epoch: float | None) -> str:
    if job.state != "running" or not per_epoch:
        return ""
    left = per_epoch * (epochs - epochs_done)
    return time.strftime("%H:%M:%S", time.gmtime(left)) if left < 86400 else f"{left / 3600:.0f} h"


def jobs_table(jobs: list[Job], title: str = "") -> Table:
    table = Table(title=title, expand=False)
    for column in ("trial", "status", "epoch", "top-1", "ETA", "note"):
        table.add_column(column, overflow="fold", max_width=60 if column == "note" else None)
    for job in jobs:
        record = job_record(job)
        epochs = job.config.recipe.epochs
        done = record.epochs_done if record else 0
        top1 = f"{record.top1:.2f}" if record and record.top1 is not None else ""
        per_epoch = record.time_per_epoch_s if record else None
        state = job.state if job.state != "skipped" else (record.status if record else "skipped")
        table.add_row(job.config.dirname, Text(state, style=STYLE.get(state, "")), f"{done}/{epochs}", top1,
                      _eta(job, done, epochs, per_epoch), job.note)
    return table

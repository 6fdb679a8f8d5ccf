"""Batching: one epoch of `(uint8 images N,C,H,W, int64 labels N)` on CPU, for one process of a DDP job.

Train epochs: a permutation drawn from `torch.Generator().manual_seed(epoch_seed(seed, epoch))`, so an
epoch's order depends only on (seed, epoch) and a resumed run sees the same order. Sharded like
DistributedSampler (the permutation padded by repeating its start to a multiple of world_size, then
`rank::world_size`), and the last incomplete batch dropped. Eval epochs: file order, `rank::world_size`
without padding (no image counted twice), last batch kept.

In-memory datasets are sliced directly. File datasets go through a DataLoader whose batch sampler hands
each worker `(index, item_seed)` keys; the item seeds come from the same epoch generator, so the random
crops and flips of an epoch are identical whatever the number of workers. The DataLoader is kept on the
dataset and reused, so `persistent_workers` keeps its workers across epochs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from mixbench.data.dataset import InMemoryDataset, MixDataset

Batch = tuple[torch.Tensor, torch.Tensor]
PREFETCH_FACTOR = 4  # batches each worker keeps ready; JPEG decoding times vary a lot from batch to batch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch` of a run seeded `seed`; a hash: nearby pairs do not collide."""
    digest = hashlib.blake2b(f"mixbench-epoch:{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # non-negative int64


def num_batches(ds: MixDataset, batch_size: int, *, train: bool, world_size: int = 1) -> int:
    """Batches per epoch for one process (eval: for rank 0, whose shard is the largest)."""
    per_rank = math.ceil(len(ds) / world_size)
    return per_rank // batch_size if train else math.ceil(per_rank / batch_size)


def shard(n: int, *, train: bool, seed: int, epoch: int, rank: int, world_size: int
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This rank's dataset indices in epoch order, and (train) a random seed per dataset index."""
    if not train:
        return torch.arange(rank, n, world_size), None
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=gen)
    item_seeds = torch.randint(0, 2**62, (n,), generator=gen)
    padded = math.ceil(n / world_size) * world_size
    order = order.repeat(math.ceil(padded / n))[:padded]
    return order[rank::world_size], item_seeds


def batches(ds: MixDataset, batch_size: int, *, train: bool, seed: int, epoch: int, num_workers: int = 0,
            rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> Iterator[Batch]:
    """One epoch of batches for process `rank` of `world_size`; `batch_size` is per process."""
    if batch_size <= 0 or not 0 <= rank < world_size or num_workers < 0:
        raise ValueError(f"batches: need batch_size > 0, 0 <= rank < world_size and num_workers >= 0; got "
                         f"batch_size={batch_size}, rank={rank}, world_size={world_size}, "
                         f"num_workers={num_workers}")
    if train and num_batches(ds, batch_size, train=True, world_size=world_size) == 0:
        raise ValueError(f"{ds.info.name} {ds.split}: {math.ceil(len(ds) / world_size)} images per process "
                         f"are fewer than batch_size {batch_size}, so a training epoch would be empty; "
                         f"fix: lower batch_size or raise limit_per_class")
    order, item_seeds = shard(len(ds), train=train, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    pin = pin_memory and torch.cuda.is_available()
    if isinstance(ds, InMemoryDataset):
        return _slices(ds, order, batch_size, drop_last=train, pin=pin)
    return _through_loader(ds, order, item_seeds, batch_size, train=train, seed=seed, epoch=epoch,
                           num_workers=num_workers, pin=pin, rank=rank, world_size=world_size)


def _slices(ds: InMemoryDataset, order: torch.Tensor, batch_size: int, *, drop_last: bool, pin: bool
            ) -> Iterator[Batch]:
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        images, labels = ds.images.index_select(0, index), ds.labels.index_select(0, index)
        yield (images.pin_memory(), labels.pin_memory()) if pin else (images, labels)


class EpochBatchSampler(Sampler[list]):
    """Lists of dataset keys for the epoch last set: plain indices (eval) or (index, item_seed) (train)."""

    def __init__(self, batch_size: int, drop_last: bool):
        self.batch_size, self.drop_last = batch_size, drop_last
        self.order: list[int] = []
        self.seeds: list[int] | None = None

    def set_epoch(self, order: torch.Tensor, item_seeds: torch.Tensor | None) -> None:
        self.order = order.tolist()
        self.seeds = None if item_seeds is None else item_seeds[order].tolist()

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[list]:
        for b in range(len(self)):
            chunk = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if self.seeds is None:
                yield self.order[chunk]
            else:
                yield list(zip(self.order[chunk], self.seeds[chunk], strict=True))


def _through_loader(ds: MixDataset, order: torch.Tensor, item_seeds: torch.Tensor | None, batch_size: int,
                    *, train: bool, seed: int, epoch: int, num_workers: int, pin: bool, rank: int,
                    world_size: int) -> Iterator[Batch]:
    key = (batch_size, train, num_workers, pin, rank, world_size)
    loader = ds._loaders.get(key)
    if loader is None:
        loader = DataLoader(
            ds, batch_sampler=EpochBatchSampler(batch_size, drop_last=train), num_workers=num_workers,
            pin_memory=pin, persistent_workers=num_workers > 0,
            prefetch_factor=PREFETCH_FACTOR if num_workers > 0 else None, generator=torch.Generator(),
        )
        ds._loaders[key] = loader
    # Set the epoch only when iteration starts: the previous epoch's iterator may still be draining.
    loader.batch_sampler.set_epoch(order, item_seeds)
    # Seeds the workers' global torch RNG when they start (once, with persistent workers); only transforms
    # drawing from global state would see it, mixbench's own use the item seeds.
    loader.generator.manual_seed(epoch_seed(seed, epoch))
    yield from loader

"""Step-indexed data order: which clips every optimizer step reads, as a pure function of the step
(exact resume, the same global batches on any number of processes)."""

from __future__ import annotations

import torch


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches for steps ``start_step .. max_steps - 1``, a pure function of the step.

    Every optimizer step consumes ``grad_accum`` micro-batches of ``global_batch / grad_accum``
    clips, split across processes. Sample number v (counting from the start of training) maps to
    the *epoch-tagged* index ``e * n + perm_e[v % n]`` with ``e = v // n`` and ``perm_e`` a
    permutation seeded by (seed, e) (identity when ``shuffle`` is off); :class:`EpochView` turns it
    back into (epoch, index). Resuming at a step reproduces the data exactly, and a run on k
    processes sees the same global batches as a run on one.
    """

    def __init__(
        self, n: int, global_batch: int, *, rank: int = 0, world: int = 1, grad_accum: int = 1, seed: int = 0,
        start_step: int = 0, max_steps: int, shuffle: bool = True,
    ) -> None:
        if n <= 0:
            raise ValueError("the dataset is empty")
        if global_batch % (world * grad_accum):
            raise ValueError(
                f"batch_size {global_batch} must be divisible by processes x grad_accum = {world} x {grad_accum}"
            )
        self.n, self.rank, self.world, self.accum = n, rank, world, grad_accum
        self.micro_global = global_batch // grad_accum
        self.local = self.micro_global // world
        self.seed, self.start, self.stop, self.shuffle = seed, start_step, max_steps, shuffle
        self._perm_epoch, self._perm = -1, None

    def _index(self, v: int) -> int:
        epoch = v // self.n
        if not self.shuffle:
            return v
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return epoch * self.n + int(self._perm[v % self.n])

    def __iter__(self):
        for step in range(self.start, self.stop):
            for a in range(self.accum):
                base = (step * self.accum + a) * self.micro_global + self.rank * self.local
                yield [self._index(v) for v in range(base, base + self.local)]

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum


class EpochView(torch.utils.data.Dataset):
    """Reads epoch-tagged indices ``e * n + i``: item i of ``dataset`` with its augmentation epoch
    set to e (datasets with ``set_epoch`` draw fresh crops/flips per epoch; works in workers too)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, v: int):
        epoch, i = divmod(int(v), self.n)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[i]

"""``BiasedDataset``: tensors x, y, s (and ``aligned``) that live on one device and batch themselves."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Iterator, NamedTuple

import torch


def check_subsample(subsample, n: int | None = None, name: str = "the split") -> None:
    """``subsample`` must be None or a positive whole count, no larger than ``n`` (when the split's size is known).

    Checked before any data is built, so a typo fails at once instead of after minutes of loading.
    """
    if subsample is None:
        return
    if isinstance(subsample, bool) or not isinstance(subsample, numbers.Integral):
        raise ValueError(f"subsample must be a whole number of samples (or None for all), got {subsample!r}.")
    if subsample < 1:
        raise ValueError(f"subsample must be a positive number of samples (or None for all), got {subsample}.")
    if n is not None and subsample > n:
        raise ValueError(f"subsample={subsample} is larger than {name}, which has {n} samples; pass at most {n}.")


def subsample_index(n: int, subsample: int | None, generator: torch.Generator) -> torch.Tensor | slice:
    """Which of n samples a quick run keeps: a random ``subsample`` of them (all of them, in order, for None or n)."""
    if subsample is None or subsample >= n:
        return slice(None)
    return torch.randperm(n, generator=generator)[:subsample]


class Batch(NamedTuple):
    x: torch.Tensor  # inputs, (B, ...)
    y: torch.Tensor  # targets, (B,) int64
    s: torch.Tensor  # bias / sensitive attribute, (B,) int64 or (B, k) codes
    index: torch.Tensor  # positions in the data set, (B,) int64 (per-sample state such as LfF's EMA)


@dataclass
class BiasedDataset:
    """An in-memory data set with a bias attribute.

    ``x`` inputs (float32), ``y`` targets (int64), ``s`` bias/sensitive attribute (int64 labels, or a float code
    such as the 24-dim colour code of the Kim protocol), ``aligned`` (bool, or None where the notion does not exist)
    marks bias-aligned samples. ``group`` is the bias attribute as one int64 label per sample, what group metrics
    use (it defaults to ``s`` when ``s`` is already 1-D). ``num_classes`` and ``num_groups`` count the values of y and
    s.
    """

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor
    aligned: torch.Tensor | None = None
    group: torch.Tensor | None = None
    num_classes: int = 0
    num_groups: int = 0
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.x.ndim < 2:
            raise ValueError(
                f"{self.name or 'BiasedDataset'}: x must hold one row per sample, (N, features) or (N, C, H, W); got "
                f"shape {tuple(self.x.shape)}. For one feature per sample pass x[:, None]."
            )
        if self.y.ndim != 1:
            raise ValueError(f"{self.name or 'BiasedDataset'}: y must be one class id per sample, shape (N,); got "
                             f"shape {tuple(self.y.shape)} (for logits or one-hot labels pass .argmax(1)).")
        n = len(self.x)
        if self.group is None and self.s.ndim == 1:
            self.group = self.s
        for key in ("y", "s", "aligned", "group"):
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.name or 'BiasedDataset'}: x has {n} rows but {key} has {len(value)}.")
        if self.y.dtype != torch.int64:
            raise ValueError(f"y must be int64 class ids, got {self.y.dtype}.")
        if not self.num_classes:
            self.num_classes = int(self.y.max()) + 1 if n else 0
        if n and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(
                f"labels y must lie in [0, {self.num_classes}), found min {int(self.y.min())} max {int(self.y.max())}."
            )

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        extra = f", aligned={int(self.aligned.sum())}/{len(self)}" if self.aligned is not None else ""
        return (
            f"BiasedDataset({self.name!r}, n={len(self)}, x={tuple(self.x.shape[1:])}, classes={self.num_classes}, "
            f"groups={self.num_groups}{extra}, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device) -> "BiasedDataset":
        """The same data on ``device`` (one copy per tensor; a no-op where it already is)."""
        # asynchronous only towards a GPU: a non-blocking copy *to* the CPU could be read before it has landed
        non_blocking = torch.device(device).type == "cuda"
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(
            self, x=move(self.x), y=move(self.y), s=move(self.s), aligned=move(self.aligned), group=move(self.group)
        )

    def subset(self, index: torch.Tensor) -> "BiasedDataset":
        index = torch.as_tensor(index, device=self.device)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return replace(
            self, x=self.x[index], y=self.y[index], s=self.s[index], aligned=pick(self.aligned), group=pick(self.group)
        )

    def random_split(self, fraction: float, seed: int = 0) -> tuple["BiasedDataset", "BiasedDataset"]:
        """Split at random into (1 - fraction, fraction) parts, e.g. a validation set drawn from the biased train set."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction}.")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_second = int(round(fraction * len(self)))
        return self.subset(order[n_second:].to(self.device)), self.subset(order[:n_second].to(self.device))

    def batches(
        self, batch_size: int, shuffle: bool = False, drop_last: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Yield batches without leaving the device: one ``randperm`` per epoch, then slicing and gathering.

        No DataLoader, no per-sample Python: on a GPU the whole epoch is a few kernel launches per batch.
        """
        n = len(self)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if shuffle:
            # drawn where the generator lives (a CPU generator cannot draw on a GPU), then moved
            where = generator.device if generator is not None else self.device
            order = torch.randperm(n, device=where, generator=generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield Batch(self.x[index], self.y[index], self.s[index], index)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

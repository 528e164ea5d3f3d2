"""The style statistics of the whole training photo, estimated over the crops training sees.

A pixel optimum of the whole photo matches the style's statistics (Gram matrices, steerable
statistics) over the whole photo, so it can put the style's texture where the photo is busy and
little where it is flat. Training sees 80-px crops, and a loss on each crop alone asks every crop,
a crop of clear sky too, for all of the style. Here each crop's statistics are mixed with their
running mean over recent crops before they are compared with the style's:

    mixed = share * crop's + (1 - share) * running mean

so a crop is asked only for its share of what the whole photo lacks; the term is divided by
`share` so that the gradient on each crop, 2 (mixed - style's), is as large as before. Each photo
trained on has its own means. Crops of generated scenes (train.py) are asked for all of the style,
as before: they stand for the photos the rule will meet, which it should restyle as fully as its
own (mixed with the photo's means, they were restyled less, and so were unseen photos).

Training scores a batch in parts side by side (train.train_step), so the mean is only read while a
batch is scored: each part records its crops' statistics in its own `part()`, and `commit` folds
the parts into the mean in their order once the batch is done, the same for any split. Like the
pool, the mean is not kept in checkpoints: a resumed run estimates it again within ~20 iterations.
"""

from __future__ import annotations

import torch

DECAY = 0.95  # the running mean's memory: about the last 20 iterations' crops
SCENE = -1  # the source of a crop cut from a generated scene (train.CropSampler)


class RunningStatistics:
    """Running means of named statistics over training crops, one for each photo trained on, and how
    much each crop is asked for."""

    def __init__(self, share: float, decay: float = DECAY):
        self.share, self.decay = share, decay
        self.means: dict[tuple[object, int], torch.Tensor] = {}

    def part(self, sources: list[int]) -> StatisticsPart:
        """What one part of a batch mixes its crops' statistics with; `sources` says which photo each
        crop was cut from (its index), or SCENE."""
        return StatisticsPart(self, sources)

    def commit(self, parts: list[StatisticsPart]) -> None:
        """Fold a scored batch's crops, its parts in order, into their photos' running means."""
        seen: dict[tuple[object, int], list[torch.Tensor]] = {}
        for part in parts:
            for key, value in part.seen:
                seen.setdefault(key, []).append(value)
        for key, values in seen.items():
            batch = torch.stack(values).mean(0)
            mean = self.means.get(key)
            self.means[key] = batch if mean is None else torch.lerp(batch, mean, self.decay)


class StatisticsPart:
    def __init__(self, owner: RunningStatistics, sources: list[int]):
        self.owner, self.sources, self.seen = owner, sources, []

    @property
    def share(self) -> float:
        return self.owner.share

    def __call__(self, key: object, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) each crop's statistic `key` -> mixed with the running mean of the crop's photo
        (its own value, not differentiated, for a generated scene and before there is a mean); the
        crops are recorded for `commit`."""
        share, rows = self.share, []
        for value, source in zip(x, self.sources, strict=True):
            mean = value.detach()
            if source != SCENE:
                self.seen.append(((key, source), value.detach()))
                mean = self.owner.means.get((key, source), mean)
            rows.append(share * value + (1 - share) * mean)
        return torch.stack(rows)

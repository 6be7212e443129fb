"""Measures read on a companion of the explained model: a model trained for the check, not
the model itself. The league trains each companion once per model as a unit of the runner
(``companion.train``, :mod:`attnexplain.experiments.companions`) and hands it to these
measures as their ``model``; ``scores`` stay the explained model's.

- Data randomisation (Adebayo et al. 2018): the companion is the same recipe trained on
  shuffled labels (:func:`shuffled_labels`), a model that learned nothing about the task.
  The measure is the Spearman rho of the magnitudes of the method's scores on the two
  models, per instance: a method whose scores survive the labels' destruction explains the
  input, not what the model learned. Lower is better.
- F-Fidelity (Zheng et al., ICLR 2025): the companion is the model fine-tuned on training
  texts with a random share of up to ``beta`` of their tokens deleted
  (:func:`random_deletion`), so that inputs with holes are inputs it knows. For an
  explanation size of a% of the tokens (the top a% by the scores), FFid+ deletes a random
  ``beta`` share of the explanation and FFid- a random ``beta`` share of the rest; each is
  p(x) - p(variant) on the companion (p its probability of the class it predicts on x),
  the mean over ``samples`` draws and the sizes ``percents``. At most ``beta`` of a text is
  ever deleted, never more than fine-tuning deleted. FFid+ is higher for the more faithful
  method (comprehensiveness), FFid- lower (sufficiency).

Our reading of F-Fidelity on text: tokens are deleted (the sequence closes up, as in every
erasure here), not replaced by a mask token, and the explained model is fine-tuned from its
own weights for a few epochs with its own recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnexplain.attribution.adapter import Model, output_distribution
from attnexplain.attribution.erasure import erase, erased_probabilities
from attnexplain.data.batching import Batch
from attnexplain.data.registry import Dataset
from attnexplain.device import draw, seeded_generator
from attnexplain.errors import InvalidInputError
from attnexplain.measures.measure import Explainer
from attnexplain.metrics import rank_ssim, spearman, top_k_mask

SHUFFLED_LABELS = "shuffled-labels"
RANDOM_DELETION = "random-deletion"
COMPANIONS = (SHUFFLED_LABELS, RANDOM_DELETION)


def shuffled_labels(dataset: Dataset, seed: int = 0) -> Dataset:
    """``dataset`` with the labels of its train and dev splits permuted (seeded), the texts
    and test split untouched: Adebayo et al.'s data randomisation."""
    generator = np.random.default_rng(seed)
    splits = {
        name: split.assign(label=generator.permutation(split["label"].to_numpy()))
        if name in ("train", "dev")
        else split
        for name, split in dataset.splits.items()
    }
    return Dataset(dataset.name, dataset.classes, splits, dataset.min_df)


def deletion_counts(sizes: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """Tokens to delete of pools of ``sizes`` [N] tokens at ``shares`` [N] in [0, 1]:
    ceil(share x size), so that a positive share of a non-empty pool deletes at least one."""
    return torch.ceil(shares * sizes - 1e-9).long().clamp_min(0)


def random_subset(
    pool: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``counts`` [N] positions of each row of ``pool`` [N, tokens] bool, drawn uniformly
    without replacement from ``generator``: [N, tokens] bool."""
    noise = draw(torch.rand, tuple(pool.shape), generator, pool.device)
    return top_k_mask(noise, pool, counts)


def random_deletion(beta: float, pad: int) -> Callable[[Batch], Batch]:
    """F-Fidelity's fine-tuning transform: each row of a training batch loses a share of
    its content tokens drawn uniformly from [0, ``beta``] (at least one token kept; ``pad``
    the model's padding id), drawn from torch's global generator (seeded per epoch by the
    training loop)."""
    if not 0 < beta < 1:
        raise InvalidInputError(f"beta must lie in (0, 1), got {beta}")

    def transform(batch: Batch) -> Batch:
        content = batch.content_mask
        sizes = content.sum(-1)
        shares = beta * draw(torch.rand, (len(batch),), None, content.device)
        counts = torch.minimum(deletion_counts(sizes, shares), (sizes - 1).clamp_min(0))
        deleted = random_subset(content, counts, None)
        rows = torch.arange(len(batch))
        return erase(batch, rows, ~deleted, pad)

    return transform


@dataclass(frozen=True)
class DataRandomisation:
    """Similarity (Spearman of magnitudes, or ``rank-ssim``) of the method's scores on the
    explained model and on the companion trained on shuffled labels (``model`` here), per
    instance: [batch] float64, NaN where undefined. Lower is better."""

    similarity: str = "spearman"

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        moved = explain(model, batch).abs()
        if self.similarity == "spearman":
            return spearman(scores.abs(), moved, batch.content_mask).statistic.double()
        if self.similarity == "rank-ssim":
            return rank_ssim(scores.abs(), moved, batch.content_mask).double()
        raise InvalidInputError(
            f"unknown similarity {self.similarity!r}; choose spearman or rank-ssim"
        )


@dataclass(frozen=True)
class FFidelity:
    """F-Fidelity's FFid+ (``part="explanation"``) or FFid- (``part="rest"``) on the
    fine-tuned companion (``model`` here): module docstring. [batch] float64."""

    part: str = "explanation"
    beta: float = 0.5
    percents: Sequence[int] = (10, 30, 50, 70, 90)
    samples: int = 5
    seed: int = 0

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        if self.part not in ("explanation", "rest"):
            raise InvalidInputError(f"part must be 'explanation' or 'rest', got {self.part!r}")
        if not 0 < self.beta < 1 or self.samples < 1:
            raise InvalidInputError(
                f"beta must lie in (0, 1) and samples be >= 1, got {self.beta}, {self.samples}"
            )
        content = batch.content_mask
        size = content.sum(-1)
        generator = seeded_generator(self.seed * 1_000_003 + int(batch.index[0]))
        rows, keeps = [], []
        for percent in self.percents:
            top = top_k_mask(scores, content, torch.ceil(percent * size / 100 - 1e-9).long())
            pool = top if self.part == "explanation" else content & ~top
            counts = torch.minimum(
                deletion_counts(
                    pool.sum(-1), torch.full((len(batch),), self.beta, device=pool.device)
                ),
                (size - 1).clamp_min(0),
            )
            for _ in range(self.samples):
                keeps.append(content & ~random_subset(pool, counts, generator))
                rows.append(torch.arange(len(batch), device=content.device))
        full = output_distribution(model, batch)
        predicted = full.argmax(-1)
        variants = erased_probabilities(model, batch, torch.cat(rows), torch.cat(keeps))
        chosen = variants.gather(-1, predicted.repeat(len(rows)).unsqueeze(-1)).squeeze(-1)
        drops = full.gather(-1, predicted.unsqueeze(-1)).squeeze(-1) - chosen.reshape(
            len(rows), len(batch)
        )
        return drops.mean(0).double()

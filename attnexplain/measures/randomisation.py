"""Model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"):
destroy what the model learned and see whether the explanation notices. A method whose
scores barely move when the model is randomised explains the input, not the model.

The model's layers, top-down, are the blocks of :func:`model_layers` (the classifier first,
then down through the encoder; a transformer's layers one by one). Two randomisations, on a
deep copy (the model itself is never touched):

- cascading: stage i re-initialises the top i + 1 layers;
- independent: stage i re-initialises layer i alone.

At each stage the method explains the same batch on the randomised copy, and its scores are
compared with the original's per instance by the magnitudes' Spearman rho or rank SSIM
(:func:`~attnexplain.metrics.rank_ssim`): magnitudes, because a randomised model may flip a
signed score without the method having noticed anything. The measure is the mean similarity
over the stages (the area under Adebayo's curve, as AOPC is ERASER's): near 1, the scores
did not follow the model (the check fails); lower is better.

The word embeddings are not randomised: they are the input's representation (a token's
vector is what it reads), and what a method must follow is the computation on them. A
method that reads only the embeddings (their norms, a fixed projection) therefore keeps its
scores, and fails.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError
from attnexplain.measures.measure import Explainer
from attnexplain.metrics import rank_ssim, spearman

MODES = ("cascading", "independent")
SIMILARITIES = ("spearman", "rank-ssim")
_FALLBACK_STD = 0.02  # a parameter no module re-initialises: drawn like transformers' init


def _holds(module: nn.Module, kind: type[nn.Module]) -> bool:
    return any(isinstance(m, kind) for m in module.modules())


def _blocks(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The blocks of ``module`` bottom-up in registration order: each child with parameters
    is one block, except that input embeddings (a child holding an ``nn.Embedding`` and no
    layer stack) are left out and a child holding a layer stack (``nn.ModuleList``) is
    opened, its list's items being blocks of their own."""
    for name, child in module.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, nn.ModuleList):
            for index, item in enumerate(child):
                yield f"{name}.{index}", item
        elif _holds(child, nn.ModuleList):
            yield from ((f"{name}.{inner}", block) for inner, block in _blocks(child))
        elif not _holds(child, nn.Embedding):
            yield name, child


def model_layers(model: nn.Module) -> list[str]:
    """The names of ``model``'s randomisable layers, top-down (the order modules are
    registered in is the order they compute in, for the package's classic models and for
    transformers' classifiers), e.g. ``['decoder', 'scorer', 'encoder']`` for a classic
    model and ``['model.classifier', 'model.bert.pooler', 'model.bert.encoder.layer.1',
    ...]`` for a BERT classifier."""
    return [name for name, _ in _blocks(model)][::-1]


def randomised(model: Model, layers: list[str], seed: int = 0) -> Model:
    """A deep copy of ``model`` with the named ``layers`` (:func:`model_layers`)
    re-initialised: every submodule's own ``reset_parameters``, and N(0, 0.02) for a
    parameter none covers. Deterministic in ``seed``; the global random state is kept."""
    copied = copy.deepcopy(model)
    modules = dict(_blocks(copied))
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise InvalidInputError(
            f"unknown layers {unknown}; the model's are {', '.join(model_layers(model))}"
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in layers:
            reset: set[int] = set()
            for module in modules[name].modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                    reset |= {id(p) for p in module.parameters()}
            for parameter in modules[name].parameters():
                if id(parameter) not in reset:
                    parameter.normal_(0.0, _FALLBACK_STD)
    return copied


def randomisation_stages(model: Model, mode: str) -> list[list[str]]:
    """The layers each stage randomises: top-down prefixes (``cascading``) or one layer
    each (``independent``)."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown randomisation {mode!r}; choose one of {MODES}")
    layers = model_layers(model)
    if not layers:
        raise InvalidInputError(
            f"{type(model).__name__} has no layer to randomise above its embeddings"
        )
    if mode == "cascading":
        return [layers[: i + 1] for i in range(len(layers))]
    return [[layer] for layer in layers]


def similarity_curve(
    model: Model,
    batch: Batch,
    scores: torch.Tensor,
    explain: Explainer,
    mode: str = "cascading",
    similarity: str = "spearman",
    seed: int = 0,
) -> torch.Tensor:
    """Similarity of the scores on each randomised copy to ``scores`` [batch, tokens]:
    [batch, stages] float64, stages as :func:`randomisation_stages`; NaN where the
    similarity is undefined (constant scores)."""
    if similarity not in SIMILARITIES:
        raise InvalidInputError(f"unknown similarity {similarity!r}; choose one of {SIMILARITIES}")
    mask = batch.content_mask
    columns = []
    for stage, layers in enumerate(randomisation_stages(model, mode)):
        moved = explain(randomised(model, layers, seed + stage), batch).abs()
        if similarity == "spearman":
            columns.append(spearman(scores.abs(), moved, mask).statistic)
        else:
            columns.append(rank_ssim(scores.abs(), moved, mask))
    return torch.stack(columns, -1)


@dataclass(frozen=True)
class ModelRandomisation:
    """The mean over the stages of :func:`similarity_curve`: how much of the explanation
    survives destroying the model (module docstring). Lower is better; near 1 fails."""

    mode: str = "cascading"
    similarity: str = "spearman"
    seed: int = 0

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """scores [batch, tokens] -> [batch] float64 (NaN where undefined at every stage)."""
        curve = similarity_curve(
            model, batch, scores, explain, self.mode, self.similarity, self.seed
        )
        return curve.nanmean(-1)

"""Captum's infidelity and max-sensitivity (Yeh et al. 2019) on text, through Captum itself.

Both see the model as a function of a per-token gate g [batch, tokens] that scales each
content token's input embedding (g = 1: the input as it is), so that token scores and
perturbations live in the same space:

- infidelity: E[(sum_t I_t s_t - (f(g) - f(g - I)))^2] over random perturbations I that
  drop each content token with probability ``drop`` (I_t = 1: its embedding zeroed), f the
  probability of the class predicted on x; ``normalize`` lets Captum rescale the scores by
  their best fitting factor first, so methods are compared whatever their units. Lower is
  better.
- max-sensitivity: the largest relative change (Frobenius norm) of the method's scores when
  every embedding is scaled by 1 + u_t, u_t uniform in [-``radius``, ``radius``]. Lower is
  steadier. The method runs on the perturbed model through a hook on the word embeddings,
  so it must run the model on the batch as given: erasure and sampling methods
  (leave-one-out, LIME, KernelSHAP) run it on other inputs and are refused.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from attnexplain.attribution.adapter import (
    EmbeddingForward,
    Model,
    pad_id,
    predicted_class,
)
from attnexplain.attribution.erasure import erase
from attnexplain.data.batching import Batch
from attnexplain.device import draw, seeded_generator
from attnexplain.errors import InvalidInputError
from attnexplain.measures.measure import Explainer


def _captum_metric(name: str):
    """``captum.metrics.<name>``, imported on first use (Captum is slow to import)."""
    return getattr(importlib.import_module("captum.metrics"), name)


def _text_only(batch: Batch, measure: str) -> None:
    if batch.pixels is not None:
        raise InvalidInputError(
            f"{measure} gates word embeddings and has no image form here: measure images "
            "with comprehensiveness / sufficiency"
        )


def _gated(forward: EmbeddingForward):
    """``f(gate [B, T], content [B, T, E], *trailing) -> probabilities [B, C]``: the model
    with each content embedding scaled by its gate (Captum expands content with the rows)."""

    def gated(gate: torch.Tensor, content: torch.Tensor, *trailing) -> torch.Tensor:
        return forward(content * gate.unsqueeze(-1), *trailing)

    return gated


@dataclass(frozen=True)
class Infidelity:
    """``captum.metrics.infidelity`` of the token scores under random token drops (module
    docstring). Lower is better."""

    drop: float = 0.2
    n_perturb_samples: int = 20
    normalize: bool = True
    seed: int = 0

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """scores [batch, tokens] -> [batch] float64."""
        _text_only(batch, "infidelity")
        if not 0 < self.drop <= 1:
            raise InvalidInputError(f"drop must lie in (0, 1], got {self.drop}")
        forward = EmbeddingForward(model)
        content, trailing = forward.inputs(batch)
        generator = seeded_generator(self.seed)

        def perturb(gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = batch.content_mask.repeat_interleave(len(gate) // len(batch), 0)
            draws = draw(torch.rand, gate.shape, generator, gate.device)
            dropped = ((draws < self.drop) & mask).to(gate.dtype)
            return dropped, gate - dropped

        with torch.no_grad():
            values = _captum_metric("infidelity")(
                _gated(forward),
                perturb,
                torch.ones(batch.content_mask.shape, device=content.device),
                scores.to(content.dtype).masked_fill(~batch.content_mask, 0),
                additional_forward_args=(content, *trailing),
                target=predicted_class(model, batch),
                n_perturb_samples=self.n_perturb_samples,
                normalize=self.normalize,
            )
        return values.double()


@contextmanager
def scaled_embeddings(model: Model, gate: torch.Tensor) -> Iterator[None]:
    """Within the block, ``model``'s word embeddings of a batch of ``gate``'s shape
    [batch, tokens] come out scaled by ``gate``; a lookup of another shape is refused."""

    def scale(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if output.shape[:2] != gate.shape:
            raise InvalidInputError(
                "sensitivity-max perturbs the embeddings of the batch as given, and this "
                "method runs the model on other inputs (erasure or sampling): measure it "
                "with infidelity instead"
            )
        return output * gate.unsqueeze(-1).to(output.dtype)

    handle = EmbeddingForward(model).words.register_forward_hook(scale)
    try:
        yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class SensitivityMax:
    """``captum.metrics.sensitivity_max`` of the method under embedding scalings within
    ``radius`` (module docstring). Lower is better."""

    radius: float = 0.02
    n_perturb_samples: int = 10
    seed: int = 0

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """scores [batch, tokens] (Captum recomputes them at the unperturbed input) ->
        [batch] float64."""
        _text_only(batch, "sensitivity-max")
        pad = pad_id(model)

        def explanation(gates: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
            (gate,) = gates  # Captum's inputs and explanations are tuples of tensors
            rows = torch.arange(len(batch), device=gate.device)
            rows = rows.repeat_interleave(len(gate) // len(batch))
            repeated = erase(batch, rows, batch.content_mask[rows], pad)
            with scaled_embeddings(model, gate), torch.enable_grad():  # Captum turns it off
                return (explain(model, repeated).masked_fill(~repeated.content_mask, 0),)

        gate = torch.ones(batch.content_mask.shape, device=batch.token_ids.device)
        with torch.random.fork_rng(devices=[]):  # Captum draws from the global generator
            torch.manual_seed(self.seed)
            values = _captum_metric("sensitivity_max")(
                explanation,
                gate,
                perturb_radius=self.radius,
                n_perturb_samples=self.n_perturb_samples,
            )
        return values.double()

"""What the per-layer attention methods (gradient rollout, value zeroing, ALTI) share: the
explained row of a transformer, its layer stack, and the target class's logit."""

from __future__ import annotations

import torch
from torch import nn

from attnexplain.data.batching import Batch, model_inputs
from attnexplain.models.hf import HFClassifier


def explained_rows(model: HFClassifier, batch: Batch) -> torch.Tensor:
    """[batch] long: the row the classifier reads ([CLS] = 0 for encoders, the last real
    token for decoders), as the model's site split defines it."""
    return model._site_split().query_rows(batch)


def layer_stack(model: HFClassifier) -> nn.ModuleList:
    """The transformer's layers, one attention site each, in forward order."""
    return model._site_split().layers


def rows_of(matrices: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row ``rows[b]`` of each instance's matrix: [batch, tokens, tokens] -> [batch, tokens]."""
    return matrices[torch.arange(len(rows), device=rows.device), rows]


def target_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target class's logit [batch] from logits [batch, classes]; a binary model with one
    sigmoid logit z has log-odds z for class 1 and -z for class 0."""
    if logits.shape[-1] == 1:
        return torch.where(target == 1, logits[:, 0], -logits[:, 0])
    return logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)


def run(
    model: HFClassifier,
    token_ids: torch.Tensor,
    padding_mask: torch.Tensor,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [rows, classes] of the wrapped transformer for ids, mask and a text pair's
    segments (or None) [rows, tokens]."""
    return model.model(**model_inputs(token_ids, padding_mask, segments=segments)).logits

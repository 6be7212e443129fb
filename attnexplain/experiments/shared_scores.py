"""Attribution scores that several experiments of a run compute on the same batches, computed
once per process.

J&W's correlation, Serrano & Smith's flip fraction and the league all score every instance
with J&W's gradient, and the correlation and the league both with leave-one-out, which costs a
forward pass per token. :func:`method_scores` remembers the scores of :data:`SHARED_METHODS`
(deterministic: the same model and batch give the same scores bit for bit) for a checkpoint
loaded from a folder, keyed by the folder and its modification time, the site, the device and
the batch's contents, so an experiment whose batches match an earlier one's (the same rows
in the same order, which the same ``batch_size`` gives) reuses its scores. Anything else is
computed as :func:`~attnexplain.attribution.attribute` computes it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from attnexplain.attribution import attribute
from attnexplain.data.batching import Batch
from attnexplain.device import to_numpy
from attnexplain.models.checkpoint import Checkpoint

SHARED_METHODS = frozenset({"jw-gradient", "leave-one-out"})
MAX_REMEMBERED_BYTES = 128 * 2**20  # the oldest scores are forgotten beyond it

_remembered: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def method_scores(checkpoint: Checkpoint, batch: Batch, method: str) -> torch.Tensor:
    """``attribute(checkpoint.model, batch, method).scores`` [batch, tokens], remembered for
    the methods of :data:`SHARED_METHODS` (module docstring)."""
    key = _key(checkpoint, batch, method)
    if key is None:
        return attribute(checkpoint.model, batch, method).scores
    if key not in _remembered:
        _remembered[key] = attribute(checkpoint.model, batch, method).scores
        while sum(map(_size, _remembered.values())) > MAX_REMEMBERED_BYTES:
            _remembered.popitem(last=False)
    _remembered.move_to_end(key)
    return _remembered[key].clone()


def _size(scores: torch.Tensor) -> int:
    return scores.numel() * scores.element_size()


def _key(checkpoint: Checkpoint, batch: Batch, method: str) -> tuple | None:
    """What the scores depend on, or None where they are not remembered."""
    if method not in SHARED_METHODS or checkpoint.origin is None:
        return None
    model = checkpoint.model
    return (
        checkpoint.origin,
        getattr(model, "site_layer", None),
        getattr(model, "attention_mode", None),
        method,
        str(batch.token_ids.device),
        torch.is_autocast_enabled(batch.token_ids.device.type),
        _fingerprint(batch),
    )


def _fingerprint(batch: Batch) -> str:
    """A digest of everything in ``batch`` a model reads."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (
        batch.token_ids,
        batch.lengths,
        batch.content_mask,
        batch.segments,
        batch.pixels,
        batch.pair_ids,
        batch.pair_lengths,
    ):
        if tensor is not None:
            digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
            digest.update(to_numpy(tensor).tobytes())
        else:
            digest.update(b"-")
    return digest.hexdigest()

"""The few things attributions need that the two model families spell differently: encoding a
batch, the word embeddings, the attention site, the padding id, and the model as a function
of its input embeddings (what gradients and Captum differentiate or perturb).

Every other attribution module is family-blind and goes through these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from attnexplain.data.batching import Batch, segment_inputs
from attnexplain.errors import InvalidInputError
from attnexplain.hooks import CLASSIC_SITE, list_sites
from attnexplain.models.classic import AttendingClassifier, ClassicModel
from attnexplain.models.hf import HFClassifier
from attnexplain.models.pair import PairModel

if TYPE_CHECKING:
    from attnexplain.attribution.pixels import PixelForward

Model = ClassicModel | PairModel | HFClassifier


def check_model(model: object) -> None:
    """Raise :class:`InvalidInputError` unless ``model`` is one of the package's models: a
    ClassicModel, an AttentionCNN or an HFClassifier."""
    if not isinstance(model, (AttendingClassifier, HFClassifier)):
        raise InvalidInputError(
            "attributions work on attnexplain's ClassicModel, AttentionCNN and HFClassifier "
            f"(wrap a transformers classifier as HFClassifier(model)); got {type(model).__name__}"
        )


def input_forward(model: Model, batch: Batch) -> EmbeddingForward | PixelForward:
    """``model`` as a function of its tokens' input vectors for ``batch``: word embeddings
    for text (:class:`EmbeddingForward`), blocks of pixels for images
    (:class:`~attnexplain.attribution.pixels.PixelForward`)."""
    if batch.pixels is None:
        return EmbeddingForward(model)
    from attnexplain.attribution.pixels import PixelForward
    from attnexplain.data.image_tokens import BlockLayout

    return PixelForward(model, BlockLayout.of(batch))


def site_name(model: Model) -> str:
    """The hook name of the attention site that ``model.attention`` reads."""
    if isinstance(model, HFClassifier):
        return list_sites(model)[model.site_layer]
    return CLASSIC_SITE


def pad_id(model: Model) -> int:
    """The id that pads sequences for ``model`` (classic: the zero-embedding PAD id; a
    transformer masks padding out, so any id will do where it names none)."""
    if isinstance(model, HFClassifier):
        return getattr(model.model.config, "pad_token_id", None) or 0  # ViT: none
    embedding = getattr(model, "embedding", None)  # image models have none
    return 0 if embedding is None else embedding.padding_idx or 0


@torch.no_grad()
def output_distribution(model: Model, batch: Batch) -> torch.Tensor:
    """Class probabilities [batch, num_classes] of a plain forward pass."""
    return model.probabilities(model.forward_batch(batch))


def predicted_class(model: Model, batch: Batch) -> torch.Tensor:
    """[batch] long: the class the model predicts for each row."""
    return output_distribution(model, batch).argmax(-1)


class EmbeddingForward(nn.Module):
    """``model`` as a function of its input word embeddings, split in two parts that add up:

        forward(content [B, T, E], framing [B, T, E], padding_mask [B, T], content_mask [B, T],
                segments [B, T] or None, pair_ids [B, Q] or None, pair_lengths [B] or None)
            -> class probabilities [B, num_classes]

    ``content`` holds the word embeddings of the content tokens (zero elsewhere) and
    ``framing`` those of the special tokens and padding (zero at content tokens). Gradient and
    perturbation methods act on ``content`` only, so their all-zero baseline erases the content
    tokens and keeps ``<SOS>``/``<EOS>`` or ``[CLS]``/``[SEP]`` as they are; for a classic model
    a zero embedding is exactly its PAD token. Rows may be repeated (Captum expands the
    trailing arguments alongside the inputs). A pair model's question (``pair_ids``) is an
    input held fixed: it is encoded as it is, never attributed or perturbed.
    """

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.words: nn.Embedding = (
            model.model.get_input_embeddings()
            if isinstance(model, HFClassifier)
            else model.embedding
        )

    @property
    def embedding_dim(self) -> int:
        return self.words.embedding_dim

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(content, (framing, padding_mask, content_mask, segments, pair_ids,
        pair_lengths))`` for ``batch``, detached (``segments``: a transformer's text pair's,
        ``pair_ids`` and ``pair_lengths``: a pair model's question, else None)."""
        with torch.no_grad():
            embedded = self.words(batch.token_ids)
        is_content = batch.content_mask.unsqueeze(-1)
        content = embedded * is_content
        framing = embedded * ~is_content
        question = (
            (batch.pair_ids, batch.pair_lengths)
            if isinstance(self.model, PairModel)
            else (None, None)
        )
        return content, (framing, batch.padding_mask, batch.content_mask, batch.segments, *question)

    def forward(
        self,
        content: torch.Tensor,
        framing: torch.Tensor,
        padding_mask: torch.Tensor,
        content_mask: torch.Tensor,
        segments: torch.Tensor | None = None,
        pair_ids: torch.Tensor | None = None,
        pair_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embedded = content + framing
        if isinstance(self.model, HFClassifier):
            logits = self.model.model(
                inputs_embeds=embedded, attention_mask=padding_mask, **segment_inputs(segments)
            ).logits
        else:
            # encode reads token ids only to look up embeddings, which are given here.
            lengths = padding_mask.sum(-1)
            question = (
                {} if pair_ids is None else {"pair_ids": pair_ids, "pair_lengths": pair_lengths}
            )
            state = self.model.encode(None, lengths, content_mask, embedded=embedded, **question)
            logits = self.model.decode(state, self.model.attention(state))
        return self.model.probabilities(logits)

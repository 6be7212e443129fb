"""A transformers causal language model as a classifier of its next token.

:class:`NextTokenLM` wraps any ``...ForCausalLM`` whose attention the hooks support (Llama,
Qwen2, Mistral, Gemma, Phi-3, GPT-2, ...) so that it looks like the sequence classifiers
:class:`~attnexplain.models.hf.HFClassifier` wraps: ``model(**inputs).logits`` [batch,
classes] are the LM's logits at each row's last real (unpadded) position, over the whole
vocabulary (class = token id) or over a list of candidate token ids (class i = candidate i).
``HFClassifier(NextTokenLM(lm))`` then splits at a site like any decoder classifier (its
query row is the last real token), and every attribution method and experiment explains "the
next token" as it explains a class.

>>> model = HFClassifier(NextTokenLM(AutoModelForCausalLM.from_pretrained(folder)))
>>> attribute(model, collate([ids], framing=Framing(0, 0, 0)), "jw-gradient", target=token)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attnexplain.errors import HookError, InvalidInputError


@dataclass
class NextTokenOutput:
    """What a sequence classifier's forward returns, as far as this package reads it:
    ``logits`` [batch, classes]."""

    logits: torch.Tensor


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch] long: the index of each row's last real token in ``attention_mask`` [batch,
    tokens] (1: real, 0: padding), left or right padded."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool() * positions).amax(-1)


class NextTokenLM(nn.Module):
    """``lm`` (a transformers ``...ForCausalLM``) read at each row's last real token.

    Parameters
    ----------
    lm : the causal LM; its train / eval mode is kept.
    candidates : token ids the classes stand for, or None for the whole vocabulary.

    ``forward(input_ids or inputs_embeds, attention_mask=None, position_ids=None, **kwargs)``
    -> :class:`NextTokenOutput` with logits [batch, classes] (the LM's head runs on the last
    real positions only). ``config``, ``get_input_embeddings`` and
    ``set_attn_implementation`` are the LM's, and the hooks capture and intervene on the LM
    (this class implements :class:`attnexplain.hooks.HookTarget`).

    Raises :class:`HookError` for a model whose attention the hooks cannot reach and
    :class:`InvalidInputError` for a model with no LM head or candidates outside its
    vocabulary.
    """

    def __init__(self, lm: nn.Module, candidates: Sequence[int] | None = None) -> None:
        super().__init__()
        # Imported here: it needs transformers, which `import attnexplain` avoids.
        from attnexplain.hooks.transformers_backend import attention_sites

        head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
        if head is None:
            raise InvalidInputError(
                f"{type(lm).__name__} has no language-model head: load the model with "
                "AutoModelForCausalLM.from_pretrained(folder, attn_implementation='eager')"
            )
        sites = attention_sites(lm)
        if not sites:
            raise HookError(
                f"{type(lm).__name__} does not dispatch its attention through transformers' "
                "AttentionInterface, so attnexplain cannot capture or intervene on it: use a "
                "causal LM that does (Llama, Qwen2, Mistral, Gemma, Phi-3, GPT-2, ...)"
            )
        if not all(getattr(module, "is_causal", False) for module in sites.values()):
            raise HookError(
                f"{type(lm).__name__}'s attention is not causal: the next token is read at "
                "the last real position only for a decoder language model"
            )
        vocabulary = head.weight.shape[0]
        ids = None if candidates is None else torch.as_tensor(list(candidates), dtype=torch.long)
        if ids is not None and (ids.numel() == 0 or ids.min() < 0 or ids.max() >= vocabulary):
            raise InvalidInputError(
                f"candidates must be a non-empty list of token ids in [0, {vocabulary}), got "
                f"{list(candidates)}"
            )
        self.lm = lm
        self.num_labels = vocabulary if ids is None else len(ids)
        self.register_buffer("candidates", ids, persistent=False)
        self.train(lm.training)

    @property
    def config(self):
        """The LM's transformers config."""
        return self.lm.config

    def hooked_module(self) -> nn.Module:
        """The LM: the hooks attach to it."""
        return self.lm

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def set_attn_implementation(self, implementation: str) -> None:
        self.lm.set_attn_implementation(implementation)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> NextTokenOutput:
        """Logits [batch, classes] at the last real token of each row of ``input_ids``
        [batch, tokens] (or ``inputs_embeds`` [batch, tokens, dim]) under ``attention_mask``
        [batch, tokens] (default: no padding)."""
        given = input_ids if input_ids is not None else inputs_embeds[..., 0]
        mask = (
            torch.ones_like(given, dtype=torch.long) if attention_mask is None else attention_mask
        )
        logits = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            position_ids=position_ids,
            logits_to_keep=last_positions(mask).unsqueeze(1),
            use_cache=False,
            **kwargs,
        ).logits[:, 0]
        return NextTokenOutput(logits if self.candidates is None else logits[:, self.candidates])


def is_causal_lm(config) -> bool:
    """Whether a transformers ``config`` describes a causal language model (its
    ``architectures`` end in ``ForCausalLM`` or ``LMHeadModel``)."""
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in config.architectures or ())


def load_causal_lm(
    folder: str | os.PathLike, revision: str | None = None
) -> tuple[nn.Module, object]:
    """A causal LM and its tokenizer from a folder ``save_pretrained`` wrote (or a hub id,
    where the machine reaches a hub; ``revision`` pins it), in eval mode with eager
    attention.

    Raises :class:`InvalidInputError` for a folder that holds no causal LM and tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnexplain.models.imported import quiet_loading

    try:
        with quiet_loading():
            lm = AutoModelForCausalLM.from_pretrained(
                folder, revision=revision, attn_implementation="eager"
            )
            tokenizer = AutoTokenizer.from_pretrained(folder, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(
            f"{folder} does not hold a causal language model and its tokenizer "
            f"({reason}): pass a folder that model.save_pretrained and "
            "tokenizer.save_pretrained wrote"
        ) from exc
    return lm.eval(), tokenizer

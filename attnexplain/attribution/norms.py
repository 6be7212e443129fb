"""Norm-based attention (Kobayashi et al. 2020): weigh each token by the size of what it
actually adds to the attended output, not by its attention weight alone.

Transformers: at the site's query row q, token j contributes
    sum_h alpha^h_qj f^h(x_j),   f^h(x) = (x W_V^h + b_V^h) W_O^h
(x: the hidden states entering the attention, after any pre-attention LayerNorm), and the
attention output at q is the sum of these vectors over j plus the output bias b_O.
Classic models: the decoder reads c = sum_t alpha_t h_t, so token t contributes alpha_t h_t.

The per-layer pieces (:class:`AttentionBlock`, :func:`head_vectors`, :func:`inputs_of`) are
shared with the other decompositions of the attention block (ALTI).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.errors import HookError
from attnexplain.models.hf import HFClassifier

# (value projection, output projection, LayerNorm after the residual or None) as attribute
# paths from the attention module; "^." starts from its parent. Post-LN BERT-style encoders,
# DistilBERT, Llama-style (pre-norm) decoders.
_PARTS = (
    ("value", "^.output.dense", "^.output.LayerNorm"),
    ("v_lin", "out_lin", "^.sa_layer_norm"),
    ("v_proj", "o_proj", None),
)


@dataclass(frozen=True)
class AttentionBlock:
    """One layer's attention: the module the hooks see, its value and output projections, and
    the LayerNorm applied to residual + attention output (None where the model normalises
    before the attention instead)."""

    attention: nn.Module
    value: nn.Linear
    output: nn.Linear
    norm: nn.LayerNorm | None


def _module_at(model: nn.Module, module: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` from ``module`` (``^.`` paths start from its parent)."""
    if not path.startswith("^."):
        return module.get_submodule(path)
    own = next(name for name, m in model.named_modules() if m is module)
    return model.get_submodule(f"{own.rpartition('.')[0]}.{path[2:]}")


def attention_block(model: HFClassifier, layer: int) -> AttentionBlock:
    """The parts of layer ``layer``'s attention (negative counts from the end).

    Raises :class:`HookError` for an attention module with no value / output projections
    this module knows (GPT-2's fused Conv1D, for instance).
    """
    # Imported here: it needs transformers, which `import attnexplain` avoids.
    from attnexplain.hooks.transformers_backend import attention_sites

    inner = model.model
    module = list(attention_sites(inner).values())[layer]
    for value_name, output_path, norm_path in _PARTS:
        if isinstance(getattr(module, value_name, None), nn.Linear):
            return AttentionBlock(
                module,
                getattr(module, value_name),
                _module_at(inner, module, output_path),
                None if norm_path is None else _module_at(inner, module, norm_path),
            )
    raise HookError(
        f"decomposing the attention needs the value and output projections of the attention, "
        f"and {type(module).__name__} has none it knows; it supports BERT, RoBERTa, ELECTRA, "
        "DistilBERT and Llama-style models"
    )


def site_projections(model: HFClassifier) -> tuple[nn.Module, nn.Linear, nn.Linear]:
    """The site layer's attention module, value projection and output projection."""
    block = attention_block(model, model.site_layer)
    return block.attention, block.value, block.output


@contextmanager
def inputs_of(modules: Sequence[nn.Module]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden states [batch, tokens, dim] entering each of ``modules`` during the
    block: ``recorded[k]`` is the latest input of ``modules[k]``."""
    recorded: dict[int, torch.Tensor] = {}

    def grabber(index: int):
        def grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
            recorded[index] = args[0] if args else kwargs["hidden_states"]

        return grab

    handles = [
        module.register_forward_pre_hook(grabber(k), with_kwargs=True)
        for k, module in enumerate(modules)
    ]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def head_vectors(block: AttentionBlock, x: torch.Tensor, heads: int) -> torch.Tensor:
    """f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h for every token and head: x [batch, tokens, dim]
    -> [batch, tokens, heads, dim]. Grouped-query attention: each key/value head serves
    heads // kv_heads query heads."""
    head_dim = block.output.in_features // heads
    values = block.value(x).unflatten(-1, (-1, head_dim))
    values = values.repeat_interleave(heads // values.shape[2], dim=2)  # [B, T, heads, d]
    weight = block.output.weight.unflatten(1, (heads, head_dim))  # [dim, heads, d]
    return torch.einsum("bthd,ehd->bthe", values, weight)


def contribution_vectors(model: Model, batch: Batch) -> torch.Tensor:
    """What each token adds to the attended output at the site (see the module docstring).

    Returns [batch, tokens, dim]: classic alpha_t h_t (dim = H, summing over t gives the
    decoder's context vector); transformers sum_h alpha^h_qj f^h(x_j) (dim = model width;
    the sum over j plus b_O is the output projection's output at query row q).
    """
    if not isinstance(model, HFClassifier):
        state = model.encode_batch(batch)
        return model.attention(state).unsqueeze(-1) * state.hidden
    block = attention_block(model, model.site_layer)
    with inputs_of([block.attention]) as recorded:
        state = model.encode_batch(batch)
    alpha = state.attention  # [batch, heads, tokens]
    return torch.einsum("bht,bthe->bte", alpha, head_vectors(block, recorded[0], alpha.shape[1]))


@torch.no_grad()
def attention_norm(model: Model, batch: Batch) -> torch.Tensor:
    """||contribution of token t|| [batch, tokens] (Kobayashi's layer-level norm)."""
    return contribution_vectors(model, batch).norm(dim=-1)

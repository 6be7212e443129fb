"""Norm-based attention (Kobayashi et al. 2020): weigh each token by the size of what it
actually adds to the attended output, not by its attention weight alone.

Transformers: at the site's query row q, token j contributes
    sum_h alpha^h_qj f^h(x_j),   f^h(x) = (x W_V^h + b_V^h) W_O^h
(x: the hidden states entering the attention, after any pre-attention LayerNorm), and the
attention output at q is the sum of these vectors over j plus the output bias b_O.
Classic models: the decoder reads c = sum_t alpha_t h_t, so token t contributes alpha_t h_t.
"""

from __future__ import annotations

import torch
from torch import nn

from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.errors import HookError
from attnexplain.models.hf import HFClassifier

# (value projection, output projection) as attribute paths from the attention module; "^."
# starts from its parent. Post-LN BERT-style encoders, DistilBERT, Llama-style decoders.
_PROJECTIONS = (("value", "^.output.dense"), ("v_lin", "out_lin"), ("v_proj", "o_proj"))


def site_projections(model: HFClassifier) -> tuple[nn.Module, nn.Linear, nn.Linear]:
    """The site layer's attention module, value projection and output projection."""
    # Imported here: it needs transformers, which `import attnexplain` avoids.
    from attnexplain.hooks.transformers_backend import attention_sites

    inner = model.model
    module = list(attention_sites(inner).values())[model.site_layer]
    path = next(name for name, m in inner.named_modules() if m is module)
    for value_name, output_path in _PROJECTIONS:
        if isinstance(getattr(module, value_name, None), nn.Linear):
            if output_path.startswith("^."):
                parent = path.rpartition(".")[0]
                output = inner.get_submodule(f"{parent}.{output_path[2:]}")
            else:
                output = module.get_submodule(output_path)
            return module, getattr(module, value_name), output
    raise HookError(
        f"norm-based attention needs the value and output projections of the attention, and "
        f"{type(module).__name__} has none it knows; it supports BERT, RoBERTa, ELECTRA, "
        "DistilBERT and Llama-style models"
    )


def contribution_vectors(model: Model, batch: Batch) -> torch.Tensor:
    """What each token adds to the attended output at the site (see the module docstring).

    Returns [batch, tokens, dim]: classic alpha_t h_t (dim = H, summing over t gives the
    decoder's context vector); transformers sum_h alpha^h_qj f^h(x_j) (dim = model width;
    the sum over j plus b_O is the output projection's output at query row q).
    """
    if not isinstance(model, HFClassifier):
        state = model.encode_batch(batch)
        return model.attention(state).unsqueeze(-1) * state.hidden
    module, value, output = site_projections(model)
    grabbed: dict[str, torch.Tensor] = {}

    def grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
        grabbed["x"] = args[0] if args else kwargs["hidden_states"]

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        state = model.encode_batch(batch)
    finally:
        handle.remove()
    alpha = state.attention  # [batch, heads, tokens]
    heads = alpha.shape[1]
    values = value(grabbed["x"]).unflatten(-1, (-1, output.in_features // heads))
    # Grouped-query attention: each key/value head serves heads // kv_heads query heads.
    values = values.repeat_interleave(heads // values.shape[2], dim=2)  # [B, T, heads, d]
    weighted = alpha.transpose(1, 2).unsqueeze(-1) * values
    return weighted.flatten(2) @ output.weight.T


@torch.no_grad()
def attention_norm(model: Model, batch: Batch) -> torch.Tensor:
    """||contribution of token t|| [batch, tokens] (Kobayashi's layer-level norm)."""
    return contribution_vectors(model, batch).norm(dim=-1)

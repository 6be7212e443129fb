"""Token attributions for both model families behind one verb.

>>> from attnexplain.attribution import attribute, list_methods
>>> list_methods()                     # ['attention', 'attention-rollout', ..., 'kernel-shap']
>>> describe_methods()                 # name, family, uses_target, options, gradients, ...
>>> result = attribute(model, batch, "integrated-gradients", n_steps=100)
>>> result.scores                      # [batch, tokens], 0 outside result.content_mask
>>> result.to_frame()                  # instance, position, token, method, score

Methods are plain functions ``(model, batch, [target,] **options) -> MethodOutput`` listed in
:data:`METHODS` by name, so configs and the command line can name them.
"""

from attnexplain.attribution.attention_graph import (
    attention_flow,
    attention_rollout,
    residual_attention,
)
from attnexplain.attribution.registry import (
    FAMILIES,
    METHODS,
    MethodSpec,
    attribute,
    describe_methods,
    get_method,
    list_methods,
)
from attnexplain.attribution.result import Attribution, MethodOutput

__all__ = [
    "FAMILIES",
    "METHODS",
    "Attribution",
    "MethodOutput",
    "MethodSpec",
    "attention_flow",
    "attention_rollout",
    "attribute",
    "describe_methods",
    "get_method",
    "list_methods",
    "residual_attention",
]

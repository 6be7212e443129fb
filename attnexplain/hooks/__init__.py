"""Attention capture and intervention, for transformers and classic models alike.

>>> with capture(model) as cache:
...     model(**inputs)
>>> cache["layers.0.attn.pattern"]                   # [batch, heads, queries, keys]
>>> with intervene(model, {"layers.5.attn.pattern": permute()}):
...     model(**inputs)

TransformerLens's idioms work too: ``cache["pattern", 0]`` and
``run_with_hooks(model, **inputs, hooks=[(("pattern", 5), permute())])``.
"""

from attnexplain.hooks.api import (
    capture,
    intervene,
    list_sites,
    run_with_cache,
    run_with_hooks,
)
from attnexplain.hooks.cache import AttentionCache
from attnexplain.hooks.interventions import (
    Intervention,
    SiteCall,
    permute,
    replace,
    uniform,
    zero_keys,
)
from attnexplain.hooks.sites import CLASSIC_SITE, Site, layer_site
from attnexplain.hooks.target import HookTarget

__all__ = [
    "CLASSIC_SITE",
    "AttentionCache",
    "HookTarget",
    "Intervention",
    "Site",
    "SiteCall",
    "capture",
    "intervene",
    "layer_site",
    "list_sites",
    "permute",
    "replace",
    "run_with_cache",
    "run_with_hooks",
    "uniform",
    "zero_keys",
]

"""Explain generation: for every token a causal LM generates, a score for every token before
it (prompt and earlier generated tokens), from each attribution method.

Explaining step k is explaining the prefix (prompt + the first k generated tokens) as one
forward pass of the LM read as a classifier of its next token
(:class:`~attnexplain.models.causal_lm.NextTokenLM`), with the generated token as the
explained class: :func:`attnexplain.attribute` on that prefix gives exactly step k's row.
Gradient, erasure and the other attention methods run so, on the prefixes, a batch of steps
at a time. ``attention`` and ``attention-rollout`` are read instead from the attention the
hooks capture while the LM generates with its KV cache (the row of each step, from the pass
that produced the token); with ``use_cache=False`` they run on the prefixes too, and both
give the same scores (tests: 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from attnexplain.attribution import attribute, get_method
from attnexplain.attribution.attention import aggregate_heads
from attnexplain.attribution.attention_graph import attention_rollout, max_over_outputs
from attnexplain.data.batching import collate
from attnexplain.data.text import Framing
from attnexplain.device import to_numpy
from attnexplain.errors import InvalidInputError
from attnexplain.hooks import capture, list_sites
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.generation import Generation, generate
from attnexplain.models.hf import HFClassifier

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_GENERATION_METHODS = ("attention", "attention-rollout", "input-x-gradient", "leave-one-out")
# methods whose scores are linear in the explained output: their contrast with a foil is the
# target's scores minus the foil's (the scores of p_target - p_foil, or of the logits' difference)
CONTRASTIVE = (
    "grad-attention",
    "attnlrp",
    "input-x-gradient",
    "integrated-gradients",
    "deeplift",
    "occlusion",
)
FRAME_COLUMNS = ["step", "generated_token", "source_position", "source_token", "method", "score"]


@dataclass
class GenerationExplanation:
    """Every generated token explained by every method.

    Attributes
    ----------
    prompt_tokens : the prompt's tokens [prompt] (special tokens such as ``<s>`` included).
    generated_tokens, generated_ids : the generated tokens [generated] and their ids.
    probabilities : [generated], the probability the LM gave each generated token.
    scores : method -> float array [generated, source]: row k scores the sources (prompt and
        generated tokens, :attr:`source_tokens`) for generating token k; NaN from column
        prompt + k on (what the LM had not yet read).
    foil : the foil token of contrastive scores, or None.
    layer : the site layer that layer-specific methods read.
    """

    prompt_tokens: list[str]
    generated_tokens: list[str]
    generated_ids: list[int]
    probabilities: list[float]
    scores: dict[str, np.ndarray]
    foil: str | None = None
    layer: int = -1

    @property
    def source_tokens(self) -> list[str]:
        """[prompt + generated - 1]: every token some step reads (the last generated token is
        read by none)."""
        return (self.prompt_tokens + self.generated_tokens)[:-1]

    def to_frame(self) -> pd.DataFrame:
        """One row per (method, step, source token it read): ``step`` (0-based),
        ``generated_token``, ``source_position`` (0-based in prompt + generated),
        ``source_token``, ``method``, ``score``."""
        sources, prompt = self.source_tokens, len(self.prompt_tokens)
        rows = [
            (step, token, position, sources[position], method, float(matrix[step, position]))
            for method, matrix in self.scores.items()
            for step, token in enumerate(self.generated_tokens)
            for position in range(prompt + step)
        ]
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def heatmaps(self):
        """One :class:`~attnexplain.report.heatmaps.TokenHeatmap` per method: the source tokens,
        a row per generated token, each row scaled to its own largest |score|."""
        from attnexplain.report.heatmaps import TokenHeatmap, own_row

        contrast = f" (contrast: minus the foil {self.foil!r})" if self.foil is not None else ""
        return [
            TokenHeatmap(
                f"{method}{contrast}",
                self.source_tokens,
                [
                    own_row(f"{step}: {token!r} (p = {p:.3f})", matrix[step])
                    for step, (token, p) in enumerate(
                        zip(self.generated_tokens, self.probabilities, strict=True)
                    )
                ],
                "row k: every earlier token's score for generating token k; neutral: tokens "
                "read after it",
            )
            for method, matrix in self.scores.items()
        ]

    def to_html(self, title: str = "Generation explained", source: str = "") -> str:
        """The heatmaps as one self-contained HTML page."""
        from attnexplain.report.html import render_heatmaps

        return render_heatmaps(self.heatmaps(), title, source)

    def _repr_html_(self) -> str:
        return self.to_html()


def _ids(tokenizer, text: str, what: str, special: bool) -> list[int]:
    """The ids of ``text``; :class:`InvalidInputError` when it has no tokens."""
    if not isinstance(text, str) or not tokenizer(text, add_special_tokens=False)["input_ids"]:
        raise InvalidInputError(f"the {what} has no tokens: pass a non-empty text ({text!r})")
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _foil_id(tokenizer, foil: str | int) -> int:
    """The foil's one token id (an id as it is, a text that is exactly one token)."""
    if isinstance(foil, int):
        return foil
    ids = _ids(tokenizer, foil, "foil", special=False)
    if len(ids) != 1:
        raise InvalidInputError(
            f"the foil must be one token; {foil!r} is {len(ids)} tokens "
            f"({tokenizer.convert_ids_to_tokens(ids)}): pass one of them, or its id"
        )
    return ids[0]


def check_methods(methods: Sequence[str], foil: str | int | None = None) -> None:
    """Raise for an unknown method, or one that has no contrast with a foil (before any work)."""
    if not methods:
        raise InvalidInputError("pass at least one method")
    for name in methods:
        spec = get_method(name)  # unknown names fail before any work is done
        if foil is not None and spec.uses_target and name not in CONTRASTIVE:
            raise InvalidInputError(
                f"method {name!r} is not linear in the output, so it has no contrast with a "
                f"foil; with a foil use {', '.join(CONTRASTIVE)} (or methods that explain no "
                "token, such as attention or leave-one-out)"
            )


def _stop_ids(lm: nn.Module) -> list[int]:
    eos = getattr(lm.config, "eos_token_id", None)
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def _prefix_scores(
    model: HFClassifier,
    generation: Generation,
    method: str,
    pad: int,
    foil: int | None,
    batch_size: int,
) -> np.ndarray:
    """[generated, source] scores of ``method`` with step k explained on its prefix, target
    the generated token (minus the foil's scores where asked); NaN after each prefix."""
    steps, prompt = len(generation.tokens), len(generation.prompt)
    matrix = np.full((steps, prompt + steps - 1), np.nan)
    uses_target = get_method(method).uses_target
    for start in range(0, steps, batch_size):
        chosen = range(start, min(start + batch_size, steps))
        batch = collate([generation.prefix(k).tolist() for k in chosen], framing=Framing(pad, 0, 0))
        target = generation.tokens[start : chosen.stop] if uses_target else None
        scores = attribute(model, batch, method, target=target).scores
        if uses_target and foil is not None:
            scores = scores - attribute(model, batch, method, target=foil).scores
        for row, k in enumerate(chosen):
            matrix[k, : prompt + k] = to_numpy(scores[row, : prompt + k].double())
    return matrix


def _attention_scores(rows: list[torch.Tensor], prompt: int) -> np.ndarray:
    """[generated, source] head-mean attention of the site rows ``rows`` captured during
    cached generation, one [1, heads, 1, keys] per step; NaN after each prefix."""
    matrix = np.full((len(rows), prompt + len(rows) - 1), np.nan)
    for k, row in enumerate(rows):
        matrix[k, : prompt + k] = to_numpy(aggregate_heads(row[:, :, 0], "mean")[0].double())
    return matrix


def _rollout_scores(layers: list[list[torch.Tensor]], prompt: int) -> np.ndarray:
    """[generated, source] attention rollout from the head-mean patterns captured during
    cached generation: per layer, the prompt's pass [1, 1, prompt, prompt] then one [1, 1, 1,
    keys] per step. Causal patterns make the rows of the whole sequence's rollout those of
    each prefix's, so one rollout serves every step; NaN after each prefix."""
    steps = len(layers[0])
    width = prompt + steps - 1
    patterns = torch.zeros(1, len(layers), 1, width, width)
    for layer, passes in enumerate(layers):
        patterns[0, layer, 0, :prompt, :prompt] = passes[0][0, 0]
        for k, row in enumerate(passes[1:], 1):
            patterns[0, layer, 0, prompt + k - 1, : prompt + k] = row[0, 0, 0]
    rollout = attention_rollout(patterns).expand(steps, width, width)
    read = torch.arange(width) == (prompt - 1 + torch.arange(steps)).unsqueeze(1)
    scores = to_numpy(max_over_outputs(rollout, read).double())
    return np.where(np.arange(width) < prompt + np.arange(steps)[:, None], scores, np.nan)


def explain_generation(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 20,
    methods: Sequence[str] = DEFAULT_GENERATION_METHODS,
    target: str | Sequence[int] | None = None,
    foil: str | int | None = None,
    do_sample: bool = False,
    seed: int = 0,
    layer: int = -1,
    use_cache: bool = True,
    batch_size: int = 8,
) -> GenerationExplanation:
    """Generate from ``prompt`` and explain every generated token with ``methods``.

    Parameters
    ----------
    model : a transformers ``...ForCausalLM`` whose attention the hooks support (Llama,
        Qwen2, Mistral, Gemma, Phi-3, GPT-2, ...), in eval mode.
    tokenizer : its tokenizer (a transformers tokenizer).
    prompt : the text to continue (with the tokenizer's special tokens, e.g. ``<s>``).
    max_new_tokens : generate at most this many tokens (fewer at the end-of-text token).
    methods : names from :func:`attnexplain.list_methods`, run with their default options;
        the class they explain is the generated token.
    target : a continuation to explain instead of generating one (a text, or token ids):
        each of its tokens is explained as if the LM had generated it.
    foil : a token (one-token text, or id) to contrast every step's token with. Methods
        linear in the output (:data:`CONTRASTIVE`: grad-attention and the Captum-style
        gradient methods on p_target - p_foil, AttnLRP on logit_target - logit_foil,
        occlusion on the change of p_target - p_foil) give the target's scores minus the
        foil's; methods that explain no token (attention, rollout, attention-norm,
        value-zeroing, leave-one-out: the TVD of the whole next-token distribution) are the
        same with or without a foil; the others (jw-gradient, saliency, ...) are refused.
    do_sample, seed : sample each token (seeded) instead of taking the most likely one.
    layer : the site layer of layer-specific methods (attention, attention-norm, ...).
    use_cache : generate with the KV cache and read attention and rollout from it (module
        docstring); False runs every method on the prefixes (same scores, slower).
    batch_size : steps explained per forward pass of the prefix-run methods.

    Returns
    -------
    :class:`GenerationExplanation`: per method a [generated, source] matrix, ``to_frame()``,
    ``heatmaps()``, ``to_html()``.

    Example
    -------
    >>> result = explain_generation(lm, tokenizer, "Mary went to the", max_new_tokens=3)
    >>> result.to_frame().query("method == 'attention'")
    """
    check_methods(methods, foil)
    classifier = HFClassifier(NextTokenLM(model), site_layer=layer)
    classifier.check_site()  # a layer that does not exist fails before generating
    prompt_ids = torch.tensor(_ids(tokenizer, prompt, "prompt", special=True))
    length = len(prompt_ids)
    forced = _ids(tokenizer, target, "target", special=False) if isinstance(target, str) else target
    foil_id = None if foil is None else _foil_id(tokenizer, foil)
    sites = list_sites(model)
    site = sites[layer % len(sites)]
    with ExitStack() as stack:
        # only what the methods read; without either, the LM generates with its own attention
        rows = means = None
        if use_cache and "attention" in methods:
            rows = stack.enter_context(capture(model, site, queries=-1))
        if use_cache and "attention-rollout" in methods:
            means = stack.enter_context(capture(model, reduce=lambda p: p.mean(1, keepdim=True)))
        generation = generate(
            model,
            prompt_ids.to(next(model.parameters()).device),
            max_new_tokens,
            do_sample,
            seed,
            use_cache,
            forced,
            _stop_ids(model),
        )
    pad = tokenizer.pad_token_id or 0
    scores = {}
    for method in methods:
        if method == "attention" and rows is not None:
            scores[method] = _attention_scores([r.cpu().float() for r in rows.all(site)], length)
        elif method == "attention-rollout" and means is not None:
            layers = [[p.cpu().float() for p in means.all(s)] for s in sites]
            scores[method] = _rollout_scores(layers, length)
        else:
            scores[method] = _prefix_scores(
                classifier, generation, method, pad, foil_id, batch_size
            )
    probabilities = torch.softmax(generation.logits.float(), -1)
    chosen = probabilities.gather(-1, generation.tokens.unsqueeze(-1))[:, 0]
    return GenerationExplanation(
        tokenizer.convert_ids_to_tokens(prompt_ids.tolist()),
        tokenizer.convert_ids_to_tokens(generation.tokens.tolist()),
        generation.tokens.tolist(),
        chosen.tolist(),
        scores,
        None if foil is None else tokenizer.convert_ids_to_tokens([foil_id])[0],
        layer % len(sites),
    )


def generation_table(result: GenerationExplanation, method: str) -> Table:
    """A rich Table of one method's scores: a row per source token, a column per generated
    token (its step), each cell coloured relative to the largest |score| of its column; blank
    where the step had not read the token yet."""
    from rich.table import Table
    from rich.text import Text

    from attnexplain.explain import score_style

    matrix = result.scores[method]
    table = Table(title=Text(method), title_justify="left")
    table.add_column("source")
    for step, token in enumerate(result.generated_tokens):
        table.add_column(f"{step}: {token}", justify="right")
    scales = np.nanmax(np.abs(matrix), axis=1)
    for position, token in enumerate(result.source_tokens):
        cells = [
            Text("")
            if np.isnan(matrix[step, position])
            else Text(
                f"{matrix[step, position]:+.3f}",
                style=score_style(matrix[step, position], scales[step]),
            )
            for step in range(len(result.generated_tokens))
        ]
        table.add_row(Text(token), *cells)
    return table

"""Attention sinks, measured: how much of a decoder's attention lands on the first token and
on other "sink" positions, and whether attention agrees with gradient and leave-one-out
importance once the sinks are discounted, beside the norm-based scores (Kobayashi et al.),
which weigh attention by what the attended token adds.

The rule for a sink. In one layer and head of one prompt's pattern A [tokens, tokens]
(causal: row i attends to keys 0..i), key j is a sink when the rows after it put on it, on
average, at least ``threshold`` of their mass (default 0.3: a third of every later row's
attention on one token), mean_{i > j} A[i, j] >= threshold, and at least ``min_readers``
rows come after it (default 4, so that the last few tokens, read by one or two rows, are not
called sinks by chance). The first token's share, mean_{i >= 1} A[i, 0], is reported
whether or not it passes; the other sinks' share is mean_{i >= 1} sum_{sinks j != 0, j < i}
A[i, j].

Agreement is measured as J&W do (Kendall tau-b over the tokens), for the next token the LM
predicts after each prompt, at the site layer's last row (heads averaged): attention and the
norm-based scores against the J&W gradient and leave-one-out, over every token and with the
site layer's sinks (of any head) left out and the remaining scores renormalised to sum 1
(which leaves tau unchanged but is what a reader of the renormalised attention sees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from attnexplain.attribution import attribute
from attnexplain.data.batching import collate
from attnexplain.data.text import Framing
from attnexplain.errors import InvalidInputError
from attnexplain.hooks import capture, list_sites
from attnexplain.metrics import kendall_tau
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.hf import HFClassifier

SINK_THRESHOLD = 0.3
MIN_READERS = 4
EXPLAINERS = ("attention", "attention-norm")
REFERENCES = ("jw-gradient", "leave-one-out")


@dataclass
class SinkReport:
    """``heads``: one row per (prompt, layer, head): ``first_share``, ``other_sink_share``,
    ``sinks`` (the sink positions, comma-separated). ``agreement``: one row per (prompt,
    scores, reference): ``tau`` over every token, ``tau_without_sinks`` with the site layer's
    sinks left out, ``sinks_left_out`` (how many)."""

    heads: pd.DataFrame
    agreement: pd.DataFrame


def sink_positions(pattern: torch.Tensor, threshold: float, min_readers: int) -> torch.Tensor:
    """[heads, tokens] bool: the sinks of each head of one causal pattern [heads, tokens,
    tokens] by the module docstring's rule."""
    tokens = pattern.shape[-1]
    later = torch.ones(tokens, tokens, dtype=torch.bool, device=pattern.device).tril(-1)
    readers = later.sum(0)  # rows after each key
    received = (pattern * later).sum(-2) / readers.clamp_min(1)
    return (received >= threshold) & (readers >= min_readers)


def _head_rows(
    prompt: int, layer: int, pattern: torch.Tensor, sinks: torch.Tensor
) -> list[tuple[int, int, int, float, float, str]]:
    """Rows of :attr:`SinkReport.heads` for one layer's pattern [heads, tokens, tokens] and
    its sinks [heads, tokens]."""
    rows = pattern[:, 1:]  # every row with a choice
    others = sinks.clone()
    others[:, 0] = False
    first = rows[..., 0].mean(-1)
    other = (rows * others[:, None, :]).sum(-1).mean(-1)
    return [
        (
            prompt,
            layer,
            head,
            float(first[head]),
            float(other[head]),
            ",".join(map(str, sinks[head].nonzero().flatten().tolist())),
        )
        for head in range(pattern.shape[0])
    ]


def _renormalised(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``scores`` [tokens] over the kept tokens, summing to 1 there (as magnitudes)."""
    kept = scores.abs() * keep
    return kept / kept.sum().clamp_min(torch.finfo(kept.dtype).tiny)


def attention_sinks(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    layer: int = -1,
    threshold: float = SINK_THRESHOLD,
    min_readers: int = MIN_READERS,
) -> SinkReport:
    """Sink shares per layer and head, and agreement with and without sinks (module
    docstring), for each of ``prompts`` read by ``model`` (a transformers ``...ForCausalLM``
    the hooks support) with its ``tokenizer``; ``layer``: the site of the agreement figures.
    """
    if not prompts or not 0 < threshold <= 1 or min_readers < 1:
        raise InvalidInputError(
            "pass at least one prompt, a threshold in (0, 1] and min_readers >= 1; got "
            f"{len(prompts)} prompts, threshold {threshold}, min_readers {min_readers}"
        )
    classifier = HFClassifier(NextTokenLM(model), site_layer=layer)
    classifier.check_site()
    sites = list_sites(model)
    site = layer % len(sites)
    heads, agreement = [], []
    for number, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise InvalidInputError(f"prompt {number} has no tokens: pass non-empty prompts")
        batch = collate([ids], framing=Framing(0, 0, 0))
        with torch.no_grad(), capture(model) as cache:
            model(**batch.model_inputs())
        site_sinks = None
        for index, name in enumerate(sites):
            pattern = cache[name][0].float()
            sinks = sink_positions(pattern, threshold, min_readers)
            heads += _head_rows(number, index, pattern, sinks)
            site_sinks = sinks.any(0) if index == site else site_sinks
        scores = {
            method: attribute(classifier, batch, method).scores[0]
            for method in (*EXPLAINERS, *REFERENCES)
        }
        keep = ~site_sinks
        for explainer in EXPLAINERS:
            for reference in REFERENCES:
                x, y = scores[explainer][None], scores[reference][None]
                without = (
                    _renormalised(scores[explainer], keep)[None],
                    _renormalised(scores[reference], keep)[None],
                )
                agreement.append(
                    (
                        number,
                        explainer,
                        reference,
                        float(kendall_tau(x, y).statistic[0]),
                        float(kendall_tau(*without, keep[None]).statistic[0]),
                        int(site_sinks.sum()),
                    )
                )
    return SinkReport(
        pd.DataFrame(
            heads, columns=["prompt", "layer", "head", "first_share", "other_sink_share", "sinks"]
        ),
        pd.DataFrame(
            agreement,
            columns=["prompt", "scores", "reference", "tau", "tau_without_sinks", "sinks_left_out"],
        ),
    )

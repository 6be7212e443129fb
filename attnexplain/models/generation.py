"""Generation: run a causal LM token by token, greedy or sampled, with its KV cache.

A plain loop over the LM's forward (no ``generate`` machinery in between), so that whatever
the hooks capture or intervene on during generation happens once per step and in order: the
prompt's pass first (every prompt row), then one pass per generated token (its row alone,
attending to the cached keys and values). :func:`attnexplain.explain_generation` captures
the attention of those passes; interventions (:func:`attnexplain.intervene`) act on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from attnexplain.device import seeded_generator
from attnexplain.errors import InvalidInputError
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer


@dataclass
class Generation:
    """One generated continuation.

    prompt: [prompt] long, the ids the LM was given; tokens: [generated] long, the ids it
    produced (or was forced to); logits: [generated, vocabulary], the next-token logits each
    token was chosen from (step k's are the LM's at the last of prompt + tokens[:k]).
    """

    prompt: torch.Tensor
    tokens: torch.Tensor
    logits: torch.Tensor

    @property
    def sequence(self) -> torch.Tensor:
        """[prompt + generated] long: prompt and generated ids."""
        return torch.cat([self.prompt, self.tokens])

    def prefix(self, step: int) -> torch.Tensor:
        """[prompt + step] long: what the LM had read when it produced ``tokens[step]``."""
        return self.sequence[: len(self.prompt) + step]


def _next_token(
    logits: torch.Tensor, do_sample: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """[1] long: the argmax of ``logits`` [vocabulary], or a draw from their softmax."""
    if not do_sample:
        return logits.argmax(-1, keepdim=True)
    probabilities = torch.softmax(logits.float(), -1)
    return torch.multinomial(probabilities.cpu(), 1, generator=generator).to(logits.device)


@torch.no_grad()
def generate(
    lm: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    seed: int = 0,
    use_cache: bool = True,
    forced: Sequence[int] | None = None,
    stop_ids: Sequence[int] = (),
) -> Generation:
    """Continue ``prompt`` [prompt] long with ``lm`` (a transformers ``...ForCausalLM``).

    Parameters
    ----------
    max_new_tokens : at most this many tokens; fewer when a token of ``stop_ids`` is
        generated (it is kept as the last token).
    do_sample : draw each token from the softmax of the logits (seeded by ``seed``, on the
        CPU so that a seed gives the same tokens on every device) instead of the argmax.
    use_cache : keep the KV cache (one row per step); False re-runs the whole prefix at
        every step (the same tokens and logits up to float rounding, for checking).
    forced : explain a given continuation: these ids are the tokens (``max_new_tokens``,
        ``do_sample`` and ``stop_ids`` are then not used); the logits are still the LM's.

    Returns a :class:`Generation`.
    """
    if prompt.dim() != 1 or len(prompt) == 0:
        raise InvalidInputError("the prompt has no tokens: pass a prompt of at least one token")
    steps = len(forced) if forced is not None else max_new_tokens
    if steps < 1:
        raise InvalidInputError(
            "nothing to generate: pass max_new_tokens >= 1 (or a non-empty forced continuation)"
        )
    generator = seeded_generator(seed) if do_sample else None
    stops = set(stop_ids)
    tokens: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    cache = None
    fed = prompt
    for step in range(steps):
        sequence = torch.cat([prompt, *tokens]) if not use_cache else fed
        output = lm(
            input_ids=sequence.unsqueeze(0), cache=cache, use_cache=use_cache, logits_to_keep=1
        )
        cache = output.cache if use_cache else None
        step_logits = output.logits[0, -1]
        if forced is not None:
            token = torch.tensor([forced[step]], device=prompt.device)
        else:
            token = _next_token(step_logits, do_sample, generator)
        tokens.append(token)
        logits.append(step_logits)
        fed = token
        if forced is None and int(token) in stops:
            break
    return Generation(prompt, torch.cat(tokens), torch.stack(logits))


def generation_steps(
    lm: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 8,
    do_sample: bool = False,
    seed: int = 0,
    layer: int = -1,
) -> tuple[Checkpoint, pd.DataFrame]:
    """Every step of continuing ``prompts`` with ``lm`` (a transformers ``...ForCausalLM``
    the hooks support) as a dataset the registered experiments read: J&W's correlation,
    permutation and adversarial attention and Serrano & Smith's erasure then run per
    generated token, at ``layer``'s attention row of the current position, with "the class"
    the next token over the whole vocabulary.

    Returns a :class:`~attnexplain.models.checkpoint.Checkpoint` (the LM read as
    ``HFClassifier(NextTokenLM(lm), layer)``, its classes the vocabulary's tokens) and a
    frame with one row per generated token: ``prompt`` (index), ``step``, ``input_ids`` (the
    prefix the LM had read), ``text`` (it decoded) and ``label`` (the generated token's id).

    >>> checkpoint, steps = generation_steps(lm, tokenizer, ["Mary went to the"], 4)
    >>> get_experiment("jain_wallace.permutation").run(checkpoint, steps)
    """
    if not prompts:
        raise InvalidInputError("pass at least one prompt")
    rows = []
    for number, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise InvalidInputError(f"prompt {number} has no tokens: pass non-empty prompts")
        generation = generate(lm, torch.tensor(ids), max_new_tokens, do_sample, seed)
        for step, token in enumerate(generation.tokens.tolist()):
            prefix = generation.prefix(step).tolist()
            rows.append(
                {
                    "prompt": number,
                    "step": step,
                    "input_ids": prefix,
                    "text": tokenizer.decode(prefix),
                    "label": token,
                }
            )
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(lm.config.vocab_size)))
    classes = [token if token is not None else f"<{i}>" for i, token in enumerate(vocabulary)]
    model = HFClassifier(NextTokenLM(lm), site_layer=layer)
    model.check_site()
    pipeline = WordpieceTokenizer(tokenizer, max(len(row["input_ids"]) for row in rows))
    return Checkpoint(model, pipeline, classes), pd.DataFrame(rows)

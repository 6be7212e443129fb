"""Explaining generation on a random-init Llama (GQA), measured side by side in one run:

1. capture during generation: the KV-cached generation loop under the capture
   ``explain_generation`` opens for ``attention`` (the site layer's row of each step, which
   leaves every other attention fused) vs plain ``generate`` with the model's own attention
   (target <= 1.2x); beside them the loop without capture, ``generate`` with eager attention,
   and the loop under the capture rollout adds (every layer's head mean over every row: the
   whole prompt's patterns, so eager attention throughout);
2. the cost per generated token of each method: explaining one step is explaining its
   prefix (prompt + earlier tokens) once, so a method's time on one prefix is its cost per
   generated token (attention and rollout come from the capture of 1.); with
   ``--rerun-deletions``, leave-one-out from the prefix cache beside re-running every
   deletion (and the largest difference of their scores);
3. peak memory of the captured generation as the prompt grows (growth of the process's
   peak resident set, Linux).

Usage: ``python benchmarks/generation.py`` (about 100M parameters, a 1,000-token prompt,
prompts of 256 / 1,000 / 4,000 tokens for memory: slow on a laptop CPU) or ``--small``
(a tiny model, under a minute). Nothing is downloaded: the weights are random.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack

import torch
from analyses import peak_memory
from hooks_overhead import interleaved_medians
from transformers import AutoModelForCausalLM, LlamaConfig

from attnexplain.attribution import attribute, get_method
from attnexplain.data import Framing, collate
from attnexplain.hooks import capture, list_sites
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.generation import generate
from attnexplain.models.hf import HFClassifier

METHODS = (
    "attention-norm",
    "grad-attention",
    "value-zeroing",
    "attnlrp",
    "jw-gradient",
    "input-x-gradient",
    "integrated-gradients",
    "leave-one-out",
)
SIZES = {
    # about 100M parameters: 12 layers of width 768, 12 query and 4 key/value heads
    "full": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        intermediate_size=2048,
        vocab_size=32000,
    ),
    "small": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=1000,
    ),
}


def _captured(lm, prompt: torch.Tensor, new_tokens: int, rollout: bool = False):
    """The cached generation under the capture explain_generation opens for attention, and
    with ``rollout`` the one it adds for rollout."""
    with ExitStack() as stack:
        stack.enter_context(capture(lm, list_sites(lm)[-1], queries=-1))
        if rollout:
            stack.enter_context(capture(lm, reduce=lambda p: p.mean(1, keepdim=True)))
        return generate(lm, prompt, new_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="a tiny model: under a minute")
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="methods of 2.")
    parser.add_argument(
        "--prompt-length", type=int, default=None, help="tokens of the prompt of 1. and 2."
    )
    parser.add_argument(
        "--memory-prompts", type=int, nargs="+", default=None, help="prompt lengths of 3."
    )
    parser.add_argument(
        "--rerun-deletions",
        action="store_true",
        help="time leave-one-out also re-running every deletion (the prefix cache's baseline)",
    )
    args = parser.parse_args()
    small = args.small
    prompt_length = args.prompt_length or (64 if small else 1000)
    new_tokens = args.new_tokens or (8 if small else 16)
    repeats = args.repeats or (5 if small else 3)
    memory_prompts = args.memory_prompts or ((32, 64, 128) if small else (256, 1000, 4000))

    torch.manual_seed(0)
    config = LlamaConfig(**SIZES["small" if small else "full"], pad_token_id=0)
    lm = AutoModelForCausalLM.from_config(config).eval()
    parameters = sum(p.numel() for p in lm.parameters())
    prompt = torch.randint(1, config.vocab_size, (prompt_length,))
    print(
        f"random-init Llama, {parameters / 1e6:.1f}M parameters, prompt {prompt_length} tokens, "
        f"{new_tokens} new tokens, {torch.get_num_threads()} threads, median of {repeats}"
    )

    def plain_generate(implementation: str):
        def run() -> None:
            lm.set_attn_implementation(implementation)
            lm.generate(
                prompt[None],
                attention_mask=torch.ones(1, prompt_length, dtype=torch.long),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
            )

        return run

    own = lm.config._attn_implementation

    def loop(captured: bool = False, rollout: bool = False):
        def run() -> None:
            lm.set_attn_implementation(own)  # generate (eager) switched it
            if captured:
                _captured(lm, prompt, new_tokens, rollout)
            else:
                generate(lm, prompt, new_tokens)

        return run

    with torch.no_grad():
        timings = interleaved_medians(
            {
                f"generate ({own})": plain_generate(own),
                "generate (eager)": plain_generate("eager"),
                "loop, no capture": loop(),
                "loop under capture": loop(captured=True),
                "loop, capture + rollout": loop(captured=True, rollout=True),
            },
            repeats,
        )
    lm.set_attn_implementation(own)
    print("1. generation")
    for name, seconds in timings.items():
        print(f"  {name:<26}{seconds * 1000:9.1f} ms")
    base = timings[f"generate ({own})"]
    print(
        f"  capture vs plain generate: {timings['loop under capture'] / base:.2f}x (target <= 1.2x)"
    )
    rollout = timings["loop, capture + rollout"] / base
    print(f"  capture + rollout vs plain generate: {rollout:.2f}x")

    print(f"2. cost per generated token (one prefix of {prompt_length} tokens)")
    generation = generate(lm, prompt, 1)
    model = HFClassifier(NextTokenLM(lm))
    batch = collate([prompt.tolist()], framing=Framing(0, 0, 0))
    warm_up = collate([prompt[:4].tolist()], framing=Framing(0, 0, 0))
    for method in args.methods:
        # the generated token is the class explained, where a method explains one
        target = generation.tokens if get_method(method).uses_target else None
        attribute(model, warm_up, method, target=target)  # first-call costs (imports) left out
        started = time.perf_counter()
        scores = attribute(model, batch, method, target=target).scores
        seconds = time.perf_counter() - started
        print(f"  {method:<26}{seconds:9.3f} s")
        if method == "leave-one-out" and args.rerun_deletions:
            started = time.perf_counter()
            rerun = attribute(model, batch, method, fast=False).scores
            slow = time.perf_counter() - started
            gap = float((scores - rerun).abs().max())
            print(
                f"  {'  every deletion re-run':<26}{slow:9.3f} s ({slow / seconds:.2f}x; {gap:.1e})"
            )

    print("3. peak memory of the captured generation (attention; attention + rollout)")
    for length in memory_prompts:
        ids = torch.randint(1, config.vocab_size, (length,))
        measured = [
            peak_memory(lambda ids=ids, rollout=rollout: _captured(lm, ids, new_tokens, rollout))
            for rollout in (False, True)
        ]
        cells = "".join(
            f" {seconds:8.2f} s {megabytes:9.1f} MB" for _, seconds, megabytes in measured
        )
        print(f"  prompt {length:>5} tokens{cells}")


if __name__ == "__main__":
    main()

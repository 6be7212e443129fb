"""Adversarial search and permutation: batched over instances and candidates vs one instance
at a time (the J&W code's loop), on the same model and instances, measured side by side.

Both forms run the same code (``adversarial_search`` / ``permutation_deltas``); the loop just
feeds it one instance per call, so the ratio is the gain from batching alone. Usage:

    python benchmarks/jain_wallace_batching.py [--encoder lstm] [--instances 64] [--steps 100]

The model is an untrained classic model of the J&W size on synthetic texts of IMDB-like
length (timings do not depend on training). Targets: search >= 20x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch

from attnexplain import ClassicConfig, ClassicModel, load_dataset
from attnexplain.data import TextPipeline, Vocabulary
from attnexplain.experiments import jain_wallace as jw
from attnexplain.experiments.site_attention import site_batches
from attnexplain.models.checkpoint import Checkpoint


def seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one untimed call: the first call pays for
    the allocator growing its heap to the batch's tensors, which a long run pays once."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default="lstm", choices=["lstm", "cnn", "average"])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="adversarial optimiser steps")
    parser.add_argument("--length", type=int, default=180, help="tokens per text")
    parser.add_argument("--batch-size", type=int, default=64, help="instances per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per form (median)")
    args = parser.parse_args()

    data = load_dataset(
        "synthetic", n=2 * args.instances, min_length=args.length - 20, max_length=args.length
    )
    frame: pd.DataFrame = data.train.iloc[: args.instances]
    torch.manual_seed(0)
    pipeline = TextPipeline(Vocabulary.build(data.train["tokens"]))
    model = ClassicModel(
        ClassicConfig(vocab_size=len(pipeline.vocab), encoder=args.encoder, embed_dim=50)
    )
    checkpoint = Checkpoint(model, pipeline, data.classes)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    params = {**jw.ADVERSARIAL_DEFAULTS, "steps": args.steps}

    def search(batch_size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        for site in site_batches(checkpoint, frame, batch_size):
            jw.adversarial_search(checkpoint, site, params, generator)

    def permute(batch_size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        for site in site_batches(checkpoint, frame, batch_size):
            jw.permutation_deltas(checkpoint, site, 100, generator)

    def permute_one_by_one() -> None:
        """One decode per permutation and instance, as a loop over candidates would."""
        generator = torch.Generator().manual_seed(0)
        for site in site_batches(checkpoint, frame, 1):
            for _ in range(100):
                jw.permutation_deltas(checkpoint, site, 1, generator)

    rows = [
        (
            "adversarial search",
            seconds(lambda: search(1), args.repeats),
            seconds(lambda: search(args.batch_size), args.repeats),
        ),
        (
            "permutation (100)",
            seconds(permute_one_by_one, args.repeats),
            seconds(lambda: permute(args.batch_size), args.repeats),
        ),
    ]
    print(
        f"{args.encoder} encoder, {args.instances} instances of ~{args.length} tokens, "
        f"{args.steps} search steps, K={params['adversaries']}, {torch.get_num_threads()} "
        "threads"
    )
    print(f"{'':<22}{'one at a time':>15}{'batched':>10}{'speed-up':>10}")
    for name, loop, batched in rows:
        print(f"{name:<22}{loop:>14.2f}s{batched:>9.2f}s{loop / batched:>9.1f}x")


if __name__ == "__main__":
    main()

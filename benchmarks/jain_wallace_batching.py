"""Adversarial search and permutation: batched over instances and candidates vs one instance
at a time (the J&W code's loop), on the same model and instances, measured side by side.

Both forms run the same code (``adversarial_search`` / ``permutation_deltas``); the loop just
feeds it one instance per call, so the ratio is the gain from batching alone. Usage:

    python benchmarks/jain_wallace_batching.py [--encoder lstm] [--instances 64] [--steps 500]
        [--batch-sizes 32 64]

The model is an untrained classic model of the J&W size on synthetic texts of IMDB-like
length (timings do not depend on training). One row per batch size, each against the same
one-at-a-time loop; the search runs the experiment's 500 steps by default (both forms also
encode their instances once, a cost that fewer steps would inflate), and the experiment
batches 64 instances unless a plan's ``params`` say otherwise. Target: search >= 20x.
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
    parser.add_argument(
        "--steps",
        type=int,
        default=jw.ADVERSARIAL_DEFAULTS["steps"],
        help="adversarial optimiser steps",
    )
    parser.add_argument("--length", type=int, default=180, help="tokens per text")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[32, 64], help="instances per batch"
    )
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

    loops = {
        "adversarial search": seconds(lambda: search(1), args.repeats),
        "permutation (100)": seconds(permute_one_by_one, args.repeats),
    }
    batched = {
        (name, size): seconds(lambda run=run, size=size: run(size), args.repeats)
        for size in args.batch_sizes
        for name, run in (("adversarial search", search), ("permutation (100)", permute))
    }
    print(
        f"{args.encoder} encoder, {args.instances} instances of ~{args.length} tokens, "
        f"{args.steps} search steps, K={params['adversaries']}, {torch.get_num_threads()} "
        "threads"
    )
    print(f"{'':<22}{'batch':>6}{'one at a time':>15}{'batched':>10}{'speed-up':>10}")
    for (name, size), seconds_batched in batched.items():
        loop = loops[name]
        print(
            f"{name:<22}{size:>6}{loop:>14.2f}s{seconds_batched:>9.2f}s"
            f"{loop / seconds_batched:>9.1f}x"
        )


if __name__ == "__main__":
    main()

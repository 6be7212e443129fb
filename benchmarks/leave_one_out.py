"""Leave-one-out: all deletions of a batch in a few forward passes vs one forward pass per
deleted token, on the same model and instances, measured side by side in one run.

The loop is what J&W's code does (rerun the model once per deleted token); the other form is
``attribute(model, batch, "leave-one-out")``, which for classic models now takes the fast path
that reuses what a deletion leaves unchanged (benchmarks/analyses.py compares it with the
generic batched path too). Both give the same scores (checked here, and in
tests/test_attribution.py and tests/test_fast_erasure.py). Usage:

    python benchmarks/leave_one_out.py [--encoder lstm] [--instances 64] [--max-length 60]

The model is an untrained classic model of the J&W size (timings do not depend on training).
"""

from __future__ import annotations

import argparse
import time

import torch

from attnexplain import ClassicConfig, ClassicModel, attribute, load_dataset
from attnexplain.data import TextPipeline, Vocabulary, collate
from attnexplain.metrics import tvd


def one_forward_per_deletion(model: ClassicModel, sequences: list[list[int]]) -> list[list[float]]:
    """score_t = TVD(p(x without token t), p(x)), one unbatched forward pass per deletion."""
    scores = []
    with torch.no_grad():
        for ids in sequences:
            full = model.probabilities(model.forward_batch(collate([ids])))
            row = []
            for position in range(1, len(ids) - 1):
                deleted = collate([ids[:position] + ids[position + 1 :]])
                row.append(tvd(model.probabilities(model.forward_batch(deleted)), full).item())
            scores.append(row)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default="lstm", choices=["lstm", "cnn", "average"])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=60, help="longest synthetic text")
    parser.add_argument("--batch-size", type=int, default=32, help="instances per batch")
    args = parser.parse_args()

    lengths = {"min_length": args.max_length // 2, "max_length": args.max_length}
    data = load_dataset("synthetic", n=2 * args.instances, **lengths)  # 80% of it is train
    pipeline = TextPipeline(Vocabulary.build(data.train["tokens"]))
    sequences = pipeline.encode_split(data.train)[: args.instances]
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=len(pipeline.vocab), encoder=args.encoder))
    model.eval()
    deletions = sum(len(ids) - 2 for ids in sequences)

    def batched() -> list[torch.Tensor]:
        batches = [
            collate(sequences[i : i + args.batch_size])
            for i in range(0, len(sequences), args.batch_size)
        ]
        return [attribute(model, b, "leave-one-out").scores[b.content_mask] for b in batches]

    batched()  # warm-up
    started = time.perf_counter()
    fast = torch.cat(batched())
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = torch.tensor([s for row in one_forward_per_deletion(model, sequences) for s in row])
    loop_s = time.perf_counter() - started

    print(
        f"{args.encoder} encoder, {len(sequences)} instances, {deletions} deletions "
        f"(torch threads: {torch.get_num_threads()})"
    )
    print(f"one forward per deletion: {loop_s:8.3f}s")
    print(f"batched leave-one-out:    {batched_s:8.3f}s")
    print(
        f"speed-up: {loop_s / batched_s:.1f}x   max |difference|: {(fast - slow).abs().max():.1e}"
    )


if __name__ == "__main__":
    main()

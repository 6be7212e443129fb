"""Plausibility of every attribution method on the synthetic planted-rationale task.

Trains a BiLSTM and an Average classic model (additive attention, random 64-d embeddings,
3 epochs) on ``load_dataset("synthetic")`` and prints, per method, the mean AUPRC of its token
scores as a detector of the planted signal tokens on test instances (NaN count in brackets when
there are any), next to a random-scores baseline. Usage:

    python benchmarks/plausibility.py [--instances 200] [--out runs/plausibility]

Takes a few minutes on two CPU cores (training, then LIME and KernelSHAP per instance).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from attnexplain import TrainConfig, attribute, list_methods, load_checkpoint, load_dataset, train
from attnexplain.data import collate
from attnexplain.metrics import auprc, nan_summary

ENCODERS = {"BiLSTM": "lstm", "Average": "average"}


def rationale_tensor(rationales: list[list[int]], width: int) -> torch.Tensor:
    """[batch, width] 0/1, the planted flags at the content positions 1..n (after <SOS>)."""
    out = torch.zeros(len(rationales), width)
    for row, flags in enumerate(rationales):
        out[row, 1 : 1 + len(flags)] = torch.tensor(flags, dtype=torch.float)
    return out


def plausibility(checkpoint: Path, test, batch_size: int) -> dict[str, torch.Tensor]:
    """Method name -> per-instance AUPRC [instances], plus ``random`` for reference."""
    loaded = load_checkpoint(checkpoint)
    sequences = loaded.pipeline.encode_split(test)
    rationales = list(test["rationale"])
    generator = torch.Generator().manual_seed(0)
    per_method: dict[str, list[torch.Tensor]] = {name: [] for name in [*list_methods(), "random"]}
    for start in range(0, len(sequences), batch_size):
        batch = collate(sequences[start : start + batch_size])
        truth = rationale_tensor(rationales[start : start + batch_size], batch.token_ids.shape[1])
        for name in list_methods():
            scores = attribute(loaded.model, batch, name).scores
            per_method[name].append(auprc(scores, truth, batch.content_mask))
        noise = torch.rand(batch.content_mask.shape, generator=generator)
        per_method["random"].append(auprc(noise, truth, batch.content_mask))
    return {name: torch.cat(values) for name, values in per_method.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200, help="test instances scored")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder")
    args = parser.parse_args()
    torch.manual_seed(0)  # LIME, KernelSHAP and GradientSHAP sample with torch's generator

    data = load_dataset("synthetic")
    test = data.test.iloc[: args.instances]
    out = args.out or Path(tempfile.mkdtemp(prefix="plausibility-"))
    config = TrainConfig(embeddings="random", embed_dim=64, epochs=3)
    results = {}
    for label, encoder in ENCODERS.items():
        started = time.perf_counter()
        trained = train(data, out / encoder, {"encoder": encoder}, config, progress=False)
        results[label] = plausibility(trained.checkpoint, test, args.batch_size)
        print(
            f"{label}: test accuracy {trained.test['accuracy']:.3f}, "
            f"trained and scored in {time.perf_counter() - started:.0f}s"
        )

    print(f"\nAUPRC vs the planted rationale, mean over {len(test)} test instances")
    print(f"{'method':<22}" + "".join(f"{label:>12}" for label in results))
    for name in [*list_methods(), "random"]:
        cells = []
        for label in results:
            summary = nan_summary(results[label][name])
            cells.append(f"{summary.mean:.3f}" + (f" ({summary.nan})" if summary.nan else ""))
        print(f"{name:<22}" + "".join(f"{cell:>12}" for cell in cells))


if __name__ == "__main__":
    main()

"""Cost of each faithfulness measure per instance, side by side in one run.

Trains a classic model on ``load_dataset("synthetic")`` (additive attention, random
embeddings, 3 epochs), then for each method scores the same test batches once and times
every registered measure (:mod:`attnexplain.measures`) on them, in turn, in one process:
milliseconds per instance, per measure and method, with the scores' own cost for scale.
ROAR's cost is one retraining per method and k, printed once (``--roar``). The measures
that read a companion model (data randomisation, F-Fidelity) are timed on the model itself,
which costs what the companion does; training each companion once per model is printed with
``--companions``. Usage:

    python benchmarks/faithfulness.py [--encoder lstm] [--instances 64] [--roar] [--companions]

About a minute on two CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from attnexplain import TrainConfig, load_checkpoint, load_dataset, train
from attnexplain.attribution.adapter import predicted_class
from attnexplain.data import collate
from attnexplain.errors import AttnExplainError
from attnexplain.experiments.companions import COMPANION_DEFAULTS, train_companion
from attnexplain.experiments.needs import RunContext
from attnexplain.experiments.roar import method_scorer, retrain_without
from attnexplain.measures import build_measure, list_measures, method_explainer
from attnexplain.measures.companion import COMPANIONS

METHODS = ("attention", "jw-gradient", "integrated-gradients", "leave-one-out")


def measure_costs(checkpoint, test, methods, batch_size: int) -> dict[str, dict[str, float]]:
    """``{method: {"scores" | measure: seconds per instance}}``, NaN where a measure
    refuses the method."""
    model = checkpoint.model
    sequences = checkpoint.pipeline.encode_split(test)
    framing = checkpoint.pipeline.framing
    batches = [
        collate(sequences[start : start + batch_size], framing=framing)
        for start in range(0, len(sequences), batch_size)
    ]
    costs: dict[str, dict[str, float]] = {}
    for method in methods:
        totals = dict.fromkeys(["scores", *list_measures()], 0.0)
        for batch in batches:
            explain = method_explainer(method, predicted_class(model, batch))
            started = time.perf_counter()
            scores = explain(model, batch)
            totals["scores"] += time.perf_counter() - started
            for name in list_measures():
                measure = build_measure(name)
                started = time.perf_counter()
                try:
                    measure(model, batch, scores, explain)
                except AttnExplainError:  # a measure that refuses the method: no cost
                    totals[name] = float("nan")
                    continue
                totals[name] += time.perf_counter() - started
        costs[method] = {name: total / len(test) for name, total in totals.items()}
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default="lstm", choices=["lstm", "cnn", "average"])
    parser.add_argument("--n", type=int, default=2000, help="synthetic texts generated")
    parser.add_argument("--instances", type=int, default=64, help="test instances measured")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--roar", action="store_true", help="also time one ROAR retraining")
    parser.add_argument(
        "--companions", action="store_true", help="also time training each companion model"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("synthetic", n=args.n, seed=3)
    recipe = TrainConfig(epochs=3, embeddings="random", embed_dim=32)
    with tempfile.TemporaryDirectory() as folder:
        train(dataset, folder, {"encoder": args.encoder, "hidden_size": 32}, recipe, progress=False)
        checkpoint = load_checkpoint(folder)
        test = dataset.test.head(args.instances)
        costs = measure_costs(checkpoint, test, args.methods, args.batch_size)
        columns = ["scores", *list_measures()]
        print(f"{args.encoder}, {len(test)} instances: ms per instance")
        print(f"{'measure':30s}" + "".join(f"{method:>22s}" for method in args.methods))
        for name in columns:
            cells = "".join(f"{1000 * costs[method][name]:22.2f}" for method in args.methods)
            print(f"{name:30s}{cells}")
        if args.roar:
            started = time.perf_counter()
            retrain_without(
                checkpoint, dataset, method_scorer(checkpoint, "jw-gradient"), 30, f"{folder}/r"
            )
            print(f"ROAR: one retraining (jw-gradient, 30%): {time.perf_counter() - started:.1f} s")
        if args.companions:
            for kind in COMPANIONS:
                context = RunContext(dataset, test, Path(folder) / kind, progress=False)
                started = time.perf_counter()
                train_companion(checkpoint, {**COMPANION_DEFAULTS, "kind": kind}, context)
                print(f"companion {kind}: trained in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

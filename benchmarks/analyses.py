"""Every J&W analysis, ERASER's deletion metrics and the evaluation pass of the W&P analyses,
on one model and one set of instances in one run: instances per second and peak memory of
each, the fast path beside the generic one where there are two, and their ratio. Usage:

    python benchmarks/analyses.py [--family classic transformer] [--encoders lstm cnn average]
        [--instances 4] [--length 300] [--steps 500] [--permutations 100]

Classic: an untrained model of the J&W size (embeddings 300, hidden 128) on random token ids of
about ``--length`` tokens (timings do not depend on training). Transformer: a random-init BERT
of MiniLM's size (6 layers, 384 wide, 12 heads) on ``--wordpieces`` wordpieces, site at the
last layer. The paths:

- leave-one-out (J&W correlation): ``fast`` recomputes only what a deletion changes
  (classic; :mod:`attnexplain.attribution.fast_erasure`), ``generic`` re-runs each deletion
  in batches, ``loop`` one forward pass per deletion (what J&W's code does);
- permutation and adversarial search (J&W): ``fast`` decodes the query rows alone
  (transformers; :mod:`attnexplain.models.site_rows`), ``generic`` every row;
- comprehensiveness + sufficiency (5 bins each) and decision flip: ``fast`` as in
  :mod:`attnexplain.faithfulness` (only the average encoder has a fast path there; for the
  others both rows run the same code), ``generic`` re-runs every variant.

W&P's analyses train models (uniform, seeds, adversary, diagnostic); training has no fast path
and is not timed here, only the evaluation pass every one of them runs (a forward pass with the
attention). Peak memory is the growth of the process's peak resident set during the analysis
(Linux; elsewhere the process's peak so far). ``fast speed-up over it`` is the path's time over
the fast path's; ``max |diff|`` compares the path's output with the fast path's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from attnexplain.attribution import attribute
from attnexplain.attribution.erasure import leave_one_out
from attnexplain.data import Framing, collate
from attnexplain.experiments import jain_wallace as jw
from attnexplain.experiments.site_attention import site_batch
from attnexplain.faithfulness import comprehensiveness, decision_flip, sufficiency
from attnexplain.metrics import tvd
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf import HFClassifier

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory(run: Callable[[], object]) -> tuple[object, float, float]:
    """``run()``'s result, wall seconds and peak memory growth in MB."""
    try:
        _CLEAR_REFS.write_text("5")  # reset the peak resident set (VmHWM) to the current one
        before = _status_kb("VmRSS")
    except OSError:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    try:
        peak = _status_kb("VmHWM")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, seconds, max(peak - before, 0) / 1024


@dataclass
class Analysis:
    """One analysis: ``paths`` maps a path name to a function of no arguments returning a
    tensor (compared across paths); the first path is the one the others are compared with."""

    name: str
    paths: dict[str, Callable[[], torch.Tensor]]


class FullDecode:
    """An HFClassifier that decodes every row of the site layer and above (the generic path)."""

    def __init__(self, model: HFClassifier) -> None:
        self.model = model

    def decode(self, state, attention: torch.Tensor) -> torch.Tensor:
        return self.model._site_split().decode(state, attention, fast=False)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.model.probabilities(logits)


def one_forward_per_deletion(model, batch) -> torch.Tensor:
    """Leave-one-out as J&W's code runs it: one unbatched forward pass per deleted token.
    Scores [batch, tokens]."""
    scores = torch.zeros(batch.content_mask.shape)
    with torch.no_grad():
        for row, length in enumerate(batch.lengths.tolist()):
            ids = batch.token_ids[row, :length].tolist()
            full = model.probabilities(model.forward_batch(collate([ids])))
            for position in batch.content_mask[row].nonzero()[:, 0].tolist():
                deleted = collate([ids[:position] + ids[position + 1 :]])
                erased = model.probabilities(model.forward_batch(deleted))
                scores[row, position] = tvd(erased, full)[0]
    return scores


def analyses(model, batch, args, classic: bool) -> list[Analysis]:
    site = site_batch(model, batch)
    own = SimpleNamespace(model=model)
    full = own if classic else SimpleNamespace(model=FullDecode(model))
    search_params = {**jw.ADVERSARIAL_DEFAULTS, "steps": args.steps}
    scores = torch.rand(batch.token_ids.shape, generator=torch.Generator().manual_seed(0))

    def search(checkpoint) -> Callable[[], torch.Tensor]:
        return lambda: jw.adversarial_search(
            checkpoint, site, search_params, torch.Generator().manual_seed(0)
        )

    def permutation(checkpoint) -> Callable[[], torch.Tensor]:
        return lambda: jw.permutation_deltas(
            checkpoint, site, args.permutations, torch.Generator().manual_seed(0)
        )

    def eraser(fast: bool) -> Callable[[], torch.Tensor]:
        return lambda: torch.cat(
            [
                comprehensiveness(model, batch, scores, fast=fast),
                sufficiency(model, batch, scores, fast=fast),
            ],
            1,
        )

    loo = {
        "fast": lambda: leave_one_out(model, batch).scores,
        "generic": lambda: leave_one_out(model, batch, fast=False).scores,
    }
    if classic and not args.no_loop:
        loo["loop"] = lambda: one_forward_per_deletion(model, batch)
    decoded = {"fast": None, "generic": None} if not classic else {"single": None}
    checkpoints = {"fast": own, "generic": full, "single": own}
    return [
        Analysis("J&W correlation: leave-one-out", loo if classic else {"generic": loo["generic"]}),
        Analysis(
            "J&W correlation: jw-gradient",
            {"single": lambda: attribute(model, batch, "jw-gradient").scores},
        ),
        Analysis(
            f"J&W permutation ({args.permutations})",
            {path: permutation(checkpoints[path]) for path in decoded},
        ),
        Analysis(
            f"J&W adversarial (K=5, {args.steps} steps)",
            {path: search(checkpoints[path]) for path in decoded},
        ),
        Analysis(
            "W&P evaluation pass (forward + attention)",
            {"single": lambda: model.forward_with_attention(batch)[0].detach()},
        ),
        Analysis(
            "ERASER comprehensiveness + sufficiency",
            {"fast": eraser(True), "generic": eraser(False)},
        ),
        Analysis(
            "decision flip (k=1)",
            {
                "fast": lambda: decision_flip(model, batch, scores),
                "generic": lambda: decision_flip(model, batch, scores, fast=False),
            },
        ),
    ]


def measure(family: str, model, batch, args, classic: bool) -> list[dict]:
    """One row per analysis and path, each path run once after an untimed warm-up of every
    path on the first instance (a first call pays for lazy initialisation)."""
    warm_up = argparse.Namespace(**{**vars(args), "steps": 2, "no_loop": True})
    first = collate([batch.token_ids[0, : batch.lengths[0]].tolist()], framing=_framing(batch))
    for analysis in analyses(model, first, warm_up, classic):
        for run in analysis.paths.values():
            run()
    rows = []
    for analysis in analyses(model, batch, args, classic):
        reference, reference_seconds = None, None
        for path, run in analysis.paths.items():
            output, seconds, peak = peak_memory(run)
            difference = (
                float("nan")
                if reference is None
                else (output - reference).nan_to_num().abs().max().item()
            )
            if reference is None:
                reference, reference_seconds = output, seconds
            rows.append(
                {
                    "model": family,
                    "analysis": analysis.name,
                    "path": path,
                    "instances/s": len(batch) / seconds,
                    "peak MB": peak,
                    "seconds": seconds,
                    "fast speed-up over it": (
                        seconds / reference_seconds if path != "single" else float("nan")
                    ),
                    "max |diff|": difference,
                }
            )
    return rows


def _framing(batch) -> Framing:
    """The framing of ``batch``: how many special tokens lead and trail its first row."""
    content = batch.content_mask[0].nonzero()[:, 0]
    lead = int(content[0])
    return Framing(0, lead, int(batch.lengths[0]) - 1 - int(content[-1]))


def classic_batch(args):
    generator = torch.Generator().manual_seed(0)
    sequences = [
        [2, *torch.randint(4, args.vocab, (args.length + 7 * i,), generator=generator).tolist(), 3]
        for i in range(args.instances)
    ]
    return collate(sequences)


def transformer(args) -> tuple[HFClassifier, object]:
    from transformers import AutoModelForSequenceClassification, BertConfig

    sizes = (
        {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12}
        if args.transformer == "minilm"
        else {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    )
    config = BertConfig(**sizes, intermediate_size=4 * sizes["hidden_size"], vocab_size=30522)
    torch.manual_seed(0)
    inner = AutoModelForSequenceClassification.from_config(config).eval()
    generator = torch.Generator().manual_seed(0)
    content = args.wordpieces - 2
    sequences = [
        [101, *torch.randint(1000, 30000, (content,), generator=generator).tolist(), 102]
        for _ in range(args.transformer_instances)
    ]
    return HFClassifier(inner), collate(sequences, framing=Framing(0, 1, 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--family",
        nargs="+",
        default=["classic", "transformer"],
        choices=["classic", "transformer"],
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["lstm", "cnn", "average"],
        choices=["lstm", "cnn", "average"],
    )
    parser.add_argument("--instances", type=int, default=4, help="classic instances")
    parser.add_argument("--transformer-instances", type=int, default=4)
    parser.add_argument("--length", type=int, default=300, help="classic tokens per text")
    parser.add_argument("--vocab", type=int, default=5000, help="classic vocabulary size")
    parser.add_argument("--wordpieces", type=int, default=128, help="transformer text length")
    parser.add_argument("--transformer", default="minilm", choices=["minilm", "tiny"])
    parser.add_argument("--steps", type=int, default=jw.ADVERSARIAL_DEFAULTS["steps"])
    parser.add_argument("--permutations", type=int, default=jw.PERMUTATION_DEFAULTS["permutations"])
    parser.add_argument("--no-loop", action="store_true", help="skip the one-per-deletion loop")
    args = parser.parse_args(argv)

    rows = []
    if "classic" in args.family:
        batch = classic_batch(args)
        for encoder in args.encoders:
            torch.manual_seed(0)
            config = ClassicConfig(vocab_size=args.vocab, encoder=encoder)
            model = ClassicModel(config).eval()
            rows += measure(f"classic {encoder}", model, batch, args, classic=True)
    if "transformer" in args.family:
        model, batch = transformer(args)
        rows += measure(f"bert {args.transformer}", model, batch, args, classic=False)
    table = pd.DataFrame(rows)
    print(
        f"classic: {args.instances} instances of ~{args.length} tokens; transformer: "
        f"{args.transformer_instances} of {args.wordpieces} wordpieces; "
        f"torch threads: {torch.get_num_threads()}"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()

"""Training a small decoder LM from scratch to answer with a word (bAbI written as generation).

Each row becomes the prompt ``<s> passage question`` (a single text: ``<s> text``) and the
model learns to continue it with the answer word. The loss is the cross-entropy of the answer
token (full vocabulary, at the prompt's last token) plus the mean cross-entropy of the
prompt's own next tokens: the answer alone is one signal per story, and the story's tokens add
one per word, among them signals that need the answer's skill (in bAbI a move never goes
to where its actor already is, so predicting the destination rewards knowing where each
actor is); the answer term keeps the task its own weight beside the many prompt tokens.
AdamW, gradients clipped to norm 1, seeded length-bucketed batches, best epoch by dev
accuracy over the candidate answers, resumable after every epoch
(:func:`~attnexplain.models.epochs.run_epochs`). Dev and test also report
``greedy_accuracy``: how often the most likely token of the whole vocabulary is the answer
word, i.e. whether greedy generation answers right.

The first ``short_epochs`` epochs (:class:`~attnexplain.models.train.TrainConfig`) train on the
shortest fifth of the prompts only, passed over again to make as many batches as a full epoch:
answering bAbI 1 needs a two-step lookup (the question's actor's last move, then the place
after it), and on every prompt a 2-layer Llama settles on the place of the last sentence and
stays there (measured for 17 epochs: experiments/babi_decoder.yaml); in the shortest stories
(two moves) the answer is the first sentence's place a third of the time, which only the
actor tells, the Llama learns the lookup there, and it carries over to every prompt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from attnexplain.data.batching import Batch, Framing, bucketed_batches
from attnexplain.data.registry import Dataset
from attnexplain.device import to_numpy
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.checkpoint import save_checkpoint
from attnexplain.models.decoder import build_decoder
from attnexplain.models.epochs import fit_epoch, run_epochs
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from attnexplain.models.train import (
    TrainConfig,
    TrainResult,
    classification_metrics,
    epoch_batches,
    finish_training,
    predict_proba,
    selection_metric,
)


def whole_vocabulary(model: HFClassifier) -> HFClassifier:
    """The decoder ``model`` (a causal LM read over its answer words) read over its whole
    vocabulary; the weights are shared."""
    return HFClassifier(NextTokenLM(model.model.lm), model.site_layer, model.attention_mode)


def next_token_metrics(
    model: HFClassifier, pipeline: WordpieceTokenizer, frame, batch_size: int = 64
) -> dict[str, float]:
    """Accuracy, F1 and ROC-AUC over the candidate answers (the classifier's own metrics,
    :func:`~attnexplain.models.train.classification_metrics`) and ``greedy_accuracy``: the
    share of rows whose most likely next token over the whole vocabulary is the answer's."""
    candidates = to_numpy(model.model.candidates)
    labels = frame["label"].to_numpy()
    sequences = pipeline.encode_split(frame)
    # [rows, vocabulary]; the answers' share renormalised is the softmax over their logits
    everything = predict_proba(whole_vocabulary(model), sequences, pipeline.framing, batch_size)
    answers = everything[:, candidates]
    metrics = classification_metrics(labels, answers / answers.sum(1, keepdims=True))
    greedy = everything.argmax(1) == candidates[labels]
    return metrics | {"greedy_accuracy": float(greedy.mean())}


def sequence_loss(lm: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of the answer token (``batch.labels`` [batch], token ids) after each
    prompt of ``batch.token_ids`` [batch, tokens], plus the mean cross-entropy of the prompt's
    own next tokens."""
    logits = lm(**batch.model_inputs(), use_cache=False).logits  # [batch, tokens, vocabulary]
    rows = torch.arange(len(batch))
    answer = nn.functional.cross_entropy(logits[rows, batch.lengths - 1], batch.labels)
    targets = batch.token_ids[:, 1:].masked_fill(batch.padding_mask[:, 1:] == 0, -100)
    prompt = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten())
    return answer + prompt


# The share of the training prompts, the shortest, that the first ``short_epochs`` train on.
SHORT_SHARE = 0.2
# Decoders' gradients are clipped to this norm.
MAX_GRAD_NORM = 1.0


def shortest_rows(sequences: Sequence[Sequence[int]], share: float = SHORT_SHARE) -> np.ndarray:
    """Indices of the shortest ``share`` of ``sequences`` (at least one; ties in row
    order)."""
    lengths = np.array([len(sequence) for sequence in sequences])
    return np.argsort(lengths, kind="stable")[: max(1, round(share * len(sequences)))]


def decoder_batches(
    sequences: Sequence[Sequence[int]],
    answers: np.ndarray,
    config: TrainConfig,
    epoch: int,
    framing: Framing,
) -> Iterator[Batch]:
    """The training batches of ``epoch``: every row (:func:`epoch_batches`), or within the
    first ``config.short_epochs`` epochs the shortest rows (:func:`shortest_rows`), each pass
    over them seeded apart, as many passes as make about a full epoch's rows."""
    if config.short_epochs is None or epoch > config.short_epochs:
        return epoch_batches(sequences, answers, config, epoch, framing)
    rows = shortest_rows(sequences)
    short = [sequences[i] for i in rows]
    passes = max(1, len(sequences) // len(rows))
    torch.manual_seed(config.seed * 1000 + epoch)
    return (
        batch
        for done in range(passes)
        # seeds beyond any epoch_batches seed (seed * 1000 + epoch) of the run
        for batch in bucketed_batches(
            short,
            answers[rows],
            config.batch_size,
            shuffle_seed=(config.seed * 1000 + epoch) * passes + done + 10**9,
            framing=framing,
        )
    )


def train_decoder(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    architecture: dict,
    config: TrainConfig | None = None,
    progress: bool = True,
    request: dict | None = None,
) -> TrainResult:
    """Train a decoder (``architecture``: :class:`~attnexplain.models.decoder.DecoderConfig`'s
    keys) on ``dataset`` to say each row's class word next, and save the best dev epoch's
    checkpoint to ``out_dir`` (a plain transformers causal-LM folder plus
    ``attnexplain.json``). ``config`` defaults to :meth:`TrainConfig.decoder`. Calling again
    after a crash or Ctrl-C resumes from the last finished epoch, with the same result.
    ``request``: what :func:`~attnexplain.models.train.train` was asked, kept in the checkpoint
    so that it reuses it."""
    config = config or TrainConfig.decoder()
    started = time.perf_counter()
    select_by, selected_by = selection_metric(dataset)
    model, pipeline = build_decoder(dataset, architecture, config.seed, config.max_length)
    reader = whole_vocabulary(model)
    sequences = pipeline.encode_split(dataset.train)
    answers = to_numpy(model.model.candidates)[dataset.train["label"].to_numpy()]
    optimizer = torch.optim.AdamW(
        reader.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    metadata = {
        "dataset": dataset.name,
        "decoder": architecture,
        "train_config": config.identity(),
        "selected_by": selected_by,
        "loss": "cross-entropy of the answer token + mean of the prompt's next tokens",
        "short_share": SHORT_SHARE,
        "max_grad_norm": MAX_GRAD_NORM,
    } | ({} if request is None else {"request": request})

    def train_epoch(epoch: int) -> float:
        batches = decoder_batches(sequences, answers, config, epoch, pipeline.framing)

        def batch_loss(batch: Batch) -> torch.Tensor:
            return sequence_loss(model.model.lm, batch)

        return fit_epoch(
            reader,
            optimizer,
            batches,
            batch_loss,
            progress,
            f"epoch {epoch}/{config.epochs}",
            max_grad_norm=MAX_GRAD_NORM,
        )

    best_epoch, history = run_epochs(
        out_dir,
        reader,
        optimizer,
        {
            "dataset": dataset.name,
            "sizes": dataset.sizes(),
            "decoder": architecture,
            "train_config": config.identity(),
        },
        config.epochs,
        patience=config.patience,
        train_epoch=train_epoch,
        evaluate_dev=lambda: next_token_metrics(model, pipeline, dataset.dev),
        select_by=select_by,
        save_best=lambda epoch, dev: save_checkpoint(
            out_dir, model, pipeline, dataset.classes, {**metadata, "best_epoch": epoch, "dev": dev}
        ),
        progress=progress,
    )
    return finish_training(
        out_dir,
        dataset,
        metadata,
        best_epoch,
        history,
        started,
        lambda best: next_token_metrics(best.model, best.pipeline, dataset.test),
    )

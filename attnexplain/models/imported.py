"""A user's own transformers sequence classifier, used as it is: a folder in
``save_pretrained`` format (weights, config, tokenizer) or a hub id, wrapped once in
:class:`HFClassifier` and written as a checkpoint of this package, with where it came from.

Every architecture whose attention the hooks reach works; one that they do not reach (its
attention bypasses transformers' AttentionInterface, like DeBERTa-v2's) or whose classifier
pools every row is one :class:`HookError` that names the architecture and why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from attnexplain.data.registry import Dataset
from attnexplain.errors import HookError, InvalidInputError
from attnexplain.models.causal_lm import is_causal_lm, load_causal_lm
from attnexplain.models.checkpoint import save_checkpoint
from attnexplain.models.decoder import decoder_reader
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from attnexplain.models.train import TrainResult, evaluate
from attnexplain.provenance import folder_sha256, is_local_model

# Label names that say a classifier reads text pairs (NLI, paraphrase): given single texts
# it would answer a question it was never asked.
PAIR_LABELS = frozenset(
    {"entailment", "contradiction", "not_entailment", "paraphrase", "not_paraphrase"}
)
# Config key our own pair fine-tuning writes into a saved model's config.json.
INPUTS_KEY = "attnexplain_inputs"
# The longest input (in wordpieces) a model is read at unless asked otherwise.
DEFAULT_MAX_LENGTH = 512


@dataclass
class ImportedClassifier:
    """A user's classifier: the wrapped model, its tokenizer, its classes (the config's
    ``id2label`` in index order), whether it reads text pairs, and where it came from."""

    model: HFClassifier
    pipeline: WordpieceTokenizer
    classes: list[str]
    reads_pairs: bool
    provenance: dict


def model_provenance(source: str, revision: str | None = None) -> dict:
    """Where a model comes from, as unit keys and checkpoints record it: a local folder's
    files with their SHA-256 (content, not the path, names the work), or a hub id and
    revision."""
    if is_local_model(source):
        return {"files": folder_sha256(Path(source).expanduser())}
    return {"hub": source, "revision": revision or "main"}


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' log lines and loading bars off for the block (a loading bar per call
    would drown a command's own output), as they were afterwards."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_classifier(
    source: str | os.PathLike,
    max_length: int | None = None,
    revision: str | None = None,
    label_words: Sequence[str] | None = None,
) -> ImportedClassifier:
    """Load the sequence classifier in ``source`` (a folder, or a hub id where a hub is
    reachable) with eager attention, ready for the hooks.

    A causal language model is read as a classifier of its next token over ``label_words``
    (one word per class, in class order: a cloze; the texts are its prompts, read at their
    last token, and long ones lose their start).

    Raises :class:`InvalidInputError` for a folder that is not a classifier (no
    ``config.json``, no trained classification head), a causal LM without label words (or
    label words for a classifier), and :class:`HookError` for an architecture the hooks
    cannot reach, naming it and why.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(Path(source).expanduser()) if is_local_model(str(source)) else str(source)
    provenance = {"source": _shown(source), **model_provenance(source, revision)}
    if reads_next_token(model_config(source, revision), source, label_words):
        return _load_cloze(source, max_length, revision, list(label_words), provenance)
    try:
        with quiet_loading():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, revision=revision, attn_implementation="eager", output_loading_info=True
            )
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"{source} could not be loaded as a transformers sequence classifier ({exc}); "
            f"pass a folder written by save_pretrained (config, weights and tokenizer)"
        ) from exc
    untrained = [name for name in info.get("missing_keys", ()) if _is_head(name)]
    if untrained:
        raise InvalidInputError(
            f"{source} has no trained classification head ({', '.join(sorted(untrained)[:2])} "
            f"missing): it is a bare encoder; fine-tune it first (a plan's model entry "
            f"{{hf: {source}, finetune: true}})"
        )
    classifier = HFClassifier(model)
    _check_supported(classifier, model)
    classes = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    length = max_length or _longest_input(model.config, tokenizer)
    if tokenizer.pad_token_id is None:  # GPT-2 and Llama tokenizers name no pad token
        tokenizer.pad_token = tokenizer.eos_token
    reads_pairs = model.config.to_dict().get(INPUTS_KEY) == "pair" or bool(
        {name.lower() for name in classes} & PAIR_LABELS
    )
    return ImportedClassifier(
        classifier, WordpieceTokenizer(tokenizer, length), classes, reads_pairs, provenance
    )


def model_config(source: str, revision: str | None = None):
    """The transformers config of ``source`` (no weights are read).

    Raises :class:`InvalidInputError` for a folder without one or an unreachable hub id."""
    from transformers import AutoConfig

    if is_local_model(source):
        folder_sha256(Path(source).expanduser())  # a folder without config.json: say so
    try:
        return AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"{source} is neither a model folder nor a reachable hub id ({exc}); pass a folder "
            f"written by save_pretrained"
        ) from exc


def reads_next_token(config, source: str, label_words: Sequence[str] | None) -> bool:
    """Whether the model ``source`` (its transformers ``config``) is read as a cloze: a
    causal LM over ``label_words``. Raises :class:`InvalidInputError` for a causal LM
    without label words, or label words for a classifier."""
    causal = is_causal_lm(config)
    architecture = ", ".join(config.architectures or [config.model_type])
    if causal and not label_words:
        raise InvalidInputError(
            f"{source} holds a causal language model ({architecture}): it is read as a "
            f"classifier of its next token, so name the word of each class, in class order, "
            f"with --label-words (label_words=[...] in Python, label_words: in a plan), e.g. "
            f"--label-words negative,positive; the data's labels are those words or their "
            f"indices"
        )
    if label_words and not causal:
        raise InvalidInputError(
            f"label words read a causal language model's next token, but {source} holds "
            f"{architecture}, which predicts its own classes: leave out --label-words"
        )
    return causal


def _load_cloze(
    source: str,
    max_length: int | None,
    revision: str | None,
    label_words: list[str],
    provenance: dict,
) -> ImportedClassifier:
    """The causal LM in ``source`` read as a classifier of ``label_words`` as its next
    token."""
    lm, tokenizer = load_causal_lm(source, revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    length = max_length or _longest_input(lm.config, tokenizer)
    classifier, pipeline = decoder_reader(lm, tokenizer, label_words, length)
    _check_supported(classifier, lm)
    return ImportedClassifier(
        classifier, pipeline, label_words, False, provenance | {"label_words": label_words}
    )


def _shown(source: str) -> str:
    return str(Path(source).resolve()) if is_local_model(source) else source


def _is_head(name: str) -> bool:
    return name.split(".")[0] in ("classifier", "score", "pre_classifier", "head")


def _check_supported(classifier: HFClassifier, model: torch.nn.Module) -> None:
    try:
        classifier.check_site()
    except HookError as exc:
        raise HookError(
            f"{type(model).__name__} ({model.config.model_type}) cannot be audited: {exc}. "
            f"Supported: architectures whose attention dispatches through transformers' "
            f"AttentionInterface (BERT, RoBERTa, ELECTRA, DistilBERT, ModernBERT, GPT-2, "
            f"Llama, Qwen2, Mistral, ...)"
        ) from exc


def _longest_input(config, tokenizer) -> int:
    """The longest input the model takes, at most :data:`DEFAULT_MAX_LENGTH` wordpieces."""
    limits = [DEFAULT_MAX_LENGTH, tokenizer.model_max_length]
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            # RoBERTa counts its padding offset in its positions
            limits.append(value - (2 if config.model_type in ("roberta", "xlm-roberta") else 0))
    return int(min(limit for limit in limits if isinstance(limit, int) and limit > 0))


def import_classifier(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    source: str,
    max_length: int | None = None,
    revision: str | None = None,
    label_words: Sequence[str] | None = None,
) -> TrainResult:
    """Write the classifier in ``source`` as a checkpoint in ``out_dir`` (nothing is trained)
    and measure it on ``dataset``'s test split (dev too, where it has rows).

    The dataset's classes must be the model's, in its order (a plan's file entry takes
    ``classes``; ``attnexplain audit`` sets them): :class:`InvalidInputError` otherwise, as
    for text pairs given to a single-text model and single texts given to a pair model.
    """
    started = time.perf_counter()
    imported = load_classifier(source, max_length, revision, label_words)
    if dataset.classes != imported.classes:
        raise InvalidInputError(
            f"the model in {source} predicts {imported.classes} but the data's classes are "
            f"{dataset.classes}: give the data file's entry classes: {imported.classes} "
            f"(attnexplain audit does this), with labels named or numbered as the model's"
        )
    check_inputs(imported, dataset)
    metrics = {
        name: evaluate(imported.model, imported.pipeline, frame)
        for name, frame in (("dev", dataset.dev), ("test", dataset.test))
        if len(frame)
    }
    metadata = {
        "dataset": dataset.name,
        "imported": imported.provenance,
        "inputs": "pair" if imported.reads_pairs else "single",
        **metrics,
    }
    save_checkpoint(out_dir, imported.model, imported.pipeline, imported.classes, metadata)
    return TrainResult(
        Path(out_dir),
        metrics.get("test", {}),
        metrics.get("dev", {}),
        0,
        time.perf_counter() - started,
        "not trained (imported)",
    )


def check_inputs(imported: ImportedClassifier, dataset: Dataset) -> None:
    """:class:`InvalidInputError` when the data's shape (single texts or pairs) is not the
    model's. A causal LM reads a pair as its passage and then its question, where it
    answers, with no separator (:func:`~attnexplain.models.decoder.decoder_reader`)."""
    pairs = "text_pair" in dataset.test.columns
    if imported.reads_pairs and not pairs:
        raise InvalidInputError(
            f"the model reads text pairs (its labels are {imported.classes}) but the data has "
            f"single texts: name the second text's column with --pair-column"
        )
    pipeline = imported.pipeline
    if (
        pairs
        and not pipeline.question_last
        and "token_type_ids" not in pipeline.tokenizer.model_input_names
    ):
        separator = pipeline.tokenizer.sep_token
        if separator is None:
            raise InvalidInputError(
                f"the tokenizer of {imported.provenance['source']} has no separator token, so "
                f"it cannot join a text pair: audit single texts (drop --pair-column)"
            )

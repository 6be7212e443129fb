"""Experiment plans: a YAML file validated into a :class:`Plan`.

A plan says what to train and what to measure on it::

    name: quick                      # the default run directory is runs/<name>
    datasets:
      - synthetic                    # a registered name, or a name with options:
      - {name: synthetic, options: {n: 1000, seed: 1}}
      - {name: imdb, max_rows: {train: 2000, dev: 500}}   # the first N rows of those splits
    models:
      - {encoder: lstm, attention: additive, hidden_size: 32}   # classic (defaults: lstm,
      - {encoder: average}                                      #  additive, 128, learned)
      - {pretrained: minilm}                                    # a transformer to fine-tune,
      - {pretrained: minilm, site_layer: 2}                     #  read at the last / 3rd layer
      - {decoder: llama, layers: 2, hidden_size: 128, heads: 4} # a decoder LM trained from
                                                                #  scratch to say the answer
    seeds: [10, 11]
    split: test                      # where experiments run (train, dev or test)
    max_instances: 200               # optional: the split's first N rows (splits are shuffled)
    train: {epochs: 2, embeddings: random, embed_dim: 32}  # classic models, over TrainConfig()
    finetune: {epochs: 1}            # pretrained models, over TrainConfig.finetuning()
    vision_train: {epochs: 10}       # image models ({vision: vit | attention-cnn}), over
                                     #  TrainConfig.vision()
    decoder_train: {epochs: 20}      # decoders ({decoder: llama | gpt2}), over
                                     #  TrainConfig.decoder()
    experiments:
      - name: predictions
        params: {batch_size: 64}     # the experiment's own parameters, over its defaults

The runner trains every dataset x model x seed and runs every experiment on each. Keys are
checked strictly (an unknown key or a value of the wrong type is an error, never ignored), and
every mistake is a :class:`PlanError` naming the file, the field path and the fix.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from attnexplain.data.registry import (
    REGISTRY,
    SPLITS,
    Dataset,
    get_spec,
    load_dataset,
    load_local,
)
from attnexplain.data.synthetic import Seed
from attnexplain.errors import AttnExplainError, PlanError
from attnexplain.experiments.registry import get_experiment, list_experiments
from attnexplain.models.classic import ATTENTION_MODES, ATTENTIONS, ENCODERS, ClassicConfig
from attnexplain.models.decoder import DECODERS, DecoderConfig
from attnexplain.models.hf import PRETRAINED
from attnexplain.models.train import EMBEDDINGS, TrainConfig
from attnexplain.provenance import file_sha256
from attnexplain.safe_yaml import YamlShapeError, load_yaml
from attnexplain.schema import Strict, shorten, validate

ARCHITECTURE_KEYS = ("encoder", "attention", "hidden_size", "attention_mode")
# "fixed" attention takes its weights with every call, so it cannot be trained from a plan.
TRAINABLE_MODES = ATTENTION_MODES[:2]
# The longest plan name (a folder name; file systems allow 255 bytes, paths inside add more)
MAX_NAME = 100
# The architecture keys each image model takes.
VISION_KEYS = {"vit": ("attention_mode",), "attention-cnn": ("attention", "attention_mode")}
# The architecture keys of a decoder trained from scratch (DecoderConfig's, but ``decoder``).
DECODER_KEYS = ("layers", "hidden_size", "heads")


def _one_of(what: str, allowed: Iterable[str]) -> AfterValidator:
    """A validator that accepts only ``allowed`` (or None) and names them when it refuses."""
    allowed = tuple(allowed)

    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


class _Section(Strict):
    """A mapping in the plan (see :class:`~attnexplain.schema.Strict`)."""


def _dataset_name(value: Any) -> Any:
    """``- imdb`` is short for ``- {name: imdb}``."""
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a dataset name or {{name, options}}, got {shorten(value)}")
    return value


class SplitRows(_Section):
    """How many rows of each split to keep (the first N of the shuffled split); None: all."""

    train: PositiveInt | None = None
    dev: PositiveInt | None = None
    test: PositiveInt | None = None


class DatasetEntry(_Section):
    """A registered dataset, for generated ones the options it is built with, and optionally
    a cap on the rows of each split (``max_rows: {train: 2000}``: train on a subset); or a
    user's data file (``file: reviews.csv`` with its columns, ``pair_column`` for text pairs,
    ``classes`` for the label order of a model used as it is, ``fractions`` for the train /
    dev / test split: ``[0, 0, 1]`` evaluates on every row)."""

    file: str | None = None  # first: the name's check reads it
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    max_rows: SplitRows | None = None
    text_column: str | None = None  # default "text"
    pair_column: str | None = None
    label_column: str | None = None  # default "label"
    classes: list[str] | None = None
    fractions: Annotated[list[NonNegativeFloat], Field(min_length=3, max_length=3)] | None = None

    def identity(self) -> dict[str, Any]:
        """What decides the data a unit sees (unset caps left out, so that adding the
        ``max_rows`` key kept the keys of the units of plans without it). A data file is
        named by its content's SHA-256, not its path: a changed file is new work; so is a
        registered dataset's new revision (:class:`~attnexplain.data.registry.DatasetSpec`)."""
        identity = self.model_dump(exclude_none=True, exclude={"file"})
        if self.file is not None:
            identity["file_sha256"] = file_sha256(self.file)
        elif revision := get_spec(self.name).revision:
            identity["revision"] = revision
        return identity

    def provenance(self) -> dict[str, Any]:
        """Where the data came from: the file's path and SHA-256, or the registered name."""
        if self.file is None:
            return {"dataset": self.name}
        return {"file": str(Path(self.file).resolve()), "sha256": file_sha256(self.file)}

    @property
    def label(self) -> str:
        """A short name for tables that tells entries of one dataset apart: ``imdb``,
        ``imdb-train21497``, ``synthetic-n1000-seed1`` (options, then row caps)."""
        caps = self.max_rows.model_dump(exclude_none=True) if self.max_rows else {}
        return "-".join(
            [self.name, *(f"{key}{value}" for key, value in {**self.options, **caps}.items())]
        )

    @property
    def reads_pairs(self) -> bool:
        """Whether its rows are text pairs (a file with ``pair_column``, a registered pair
        set such as bAbI)."""
        return self.pair_column is not None if self.file is not None else get_spec(self.name).pairs

    def load(self, cache: str | os.PathLike | None = None) -> Dataset:
        """The dataset, built with its options and cut to ``max_rows``."""
        if self.file is not None:
            dataset = load_local(
                self.file,
                self.text_column or "text",
                self.label_column or "label",
                fractions=tuple(self.fractions or (0.8, 0.1, 0.1)),
                pair_column=self.pair_column,
                classes=self.classes,
            )
        else:
            dataset = load_dataset(self.name, cache, **self.options)
        if self.max_rows is None:
            return dataset
        return dataset.head(self.max_rows.model_dump(exclude_none=True))

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("file") is None and name is not None:
            _one_of("dataset", list(REGISTRY)).func(name)
        return name

    @model_validator(mode="before")
    @classmethod
    def _file_names_itself(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("file") and not data.get("name"):
            return {**data, "name": Path(str(data["file"])).stem}
        return data

    @model_validator(mode="after")
    def _known_options(self) -> DatasetEntry:
        if self.file is not None:
            return self._readable_file()
        file_keys = [key for key in FILE_KEYS if getattr(self, key) is not None]
        if file_keys:
            raise ValueError(
                f"{', '.join(file_keys)} describe a data file: add 'file: PATH' or remove them"
            )
        if self.name is None:
            raise ValueError("name a registered dataset, or give a data file with 'file: PATH'")
        spec = get_spec(self.name)
        if self.options and not spec.options:
            raise ValueError(f"dataset {self.name!r} takes no options; remove 'options'")
        known = [p for p in inspect.signature(spec.read).parameters if p != "cache"]
        for option in self.options:
            if option not in known:
                raise ValueError(
                    f"unknown option {option!r} for dataset {self.name!r}; "
                    f"known: {', '.join(known)}"
                )
        if spec.check is not None:
            try:
                spec.check(self.options)
            except AttnExplainError as exc:
                raise ValueError(str(exc)) from exc
        return self

    def _readable_file(self) -> DatasetEntry:
        if self.options:
            raise ValueError("a data file takes no options; remove 'options'")
        if not Path(self.file).is_file():
            raise ValueError(f"data file {self.file} does not exist; give the path of a file")
        if self.fractions is not None and sum(self.fractions) <= 0:
            raise ValueError("fractions must not all be 0, e.g. [0.8, 0.1, 0.1]")
        return self


# the keys of a dataset entry that only a data file takes
FILE_KEYS = ("text_column", "pair_column", "label_column", "classes", "fractions")


DatasetItem = Annotated[DatasetEntry, BeforeValidator(_dataset_name)]


class ModelEntry(_Section):
    """A classic architecture (any of its keys; the rest take ClassicConfig's defaults), a
    pretrained transformer to fine-tune, an image model (``vision: vit`` or ``vision:
    attention-cnn``, with ``attention`` for the CNN and ``attention_mode`` for both), a
    decoder LM trained from scratch to say the answer word (``decoder: llama | gpt2`` with
    ``layers``, ``hidden_size`` and ``heads``; the rest take DecoderConfig's defaults), or a
    user's transformers classifier (``hf: FOLDER_OR_HUB_ID``), used as it is or, with
    ``finetune: true``, fine-tuned on the dataset with ``finetune:``'s recipe; a user's
    causal LM (``hf:`` with ``label_words: [negative, positive]``) is read as a classifier
    of its next token over those words, one per class in class order."""

    vision: Annotated[str | None, _one_of("vision model", VISION_KEYS)] = None
    decoder: Annotated[str | None, _one_of("decoder", DECODERS)] = None
    layers: PositiveInt | None = None
    heads: PositiveInt | None = None
    encoder: Annotated[str | None, _one_of("encoder", ENCODERS)] = None
    attention: Annotated[str | None, _one_of("attention", ATTENTIONS)] = None
    hidden_size: PositiveInt | None = None
    attention_mode: Annotated[str | None, _one_of("attention mode", TRAINABLE_MODES)] = None
    pretrained: Annotated[str | None, _one_of("pretrained model", PRETRAINED)] = None
    hf: str | None = None
    finetune: bool | None = None
    revision: str | None = None
    label_words: list[str] | None = None
    site_layer: int | None = None

    @property
    def transformer(self) -> str | None:
        """The transformer this entry names (``pretrained`` or ``hf``), None for the rest."""
        return self.pretrained or self.hf

    @model_validator(mode="after")
    def _one_family(self) -> ModelEntry:
        if self.decoder is not None:
            return self._trained_decoder()
        for key in ("layers", "heads"):
            if getattr(self, key) is not None:
                raise ValueError(
                    f"{key} sizes a decoder LM: add 'decoder: llama' (or gpt2), or remove {key}"
                )
        if self.hf is not None:
            return self._user_model()
        for key in ("finetune", "revision", "label_words"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key} is for a user's model (hf: FOLDER); remove {key}")
        # a transformer's attention mode says whether its site is frozen uniform (W&P)
        given = [
            key
            for key in ARCHITECTURE_KEYS
            if getattr(self, key) is not None and not (self.pretrained and key == "attention_mode")
        ]
        if self.pretrained and given:
            raise ValueError(
                f"a pretrained model takes no {', '.join(given)}; remove "
                f"{'it' if len(given) == 1 else 'them'} or drop "
                f"'pretrained' to train a classic model"
            )
        if self.site_layer is not None and not self.transformer:
            raise ValueError(
                "site_layer picks the attention layer of a transformer; a classic model has "
                "one attention site: remove site_layer"
            )
        if self.vision:
            return self._one_vision_family()
        if not self.pretrained:
            try:  # sizes that depend on the encoder (cnn halves hidden_size)
                ClassicConfig(vocab_size=1, **self.architecture())
            except AttnExplainError as exc:
                raise ValueError(str(exc)) from exc
        return self

    def _user_model(self) -> ModelEntry:
        other = [
            key
            for key in (*ARCHITECTURE_KEYS, "pretrained", "vision")
            if getattr(self, key) is not None and key != "attention_mode"
        ]
        if other:
            raise ValueError(
                f"a user's model (hf: {self.hf}) takes only site_layer, finetune, revision, "
                f"label_words and attention_mode; remove {', '.join(other)}"
            )
        if self.label_words is not None and (self.finetune or not self.label_words):
            raise ValueError(
                "label_words read a user's causal LM as it is, one word per class: give at "
                "least one word, and remove finetune"
            )
        if self.attention_mode not in (None, TRAINABLE_MODES[0]) and not self.finetune:
            raise ValueError(
                "attention_mode uniform retrains the model with frozen attention: add "
                "finetune: true, or remove attention_mode"
            )
        if not self.hf.strip():
            raise ValueError("hf names a model folder or hub id; it is empty")
        return self

    def _trained_decoder(self) -> ModelEntry:
        other = [
            key
            for key in (
                "encoder",
                "attention",
                "attention_mode",
                "pretrained",
                "hf",
                "vision",
                "finetune",
                "revision",
                "label_words",
            )
            if getattr(self, key) is not None
        ]
        if other:
            raise ValueError(
                f"a decoder trained here ({self.decoder}) takes only layers, hidden_size, heads "
                f"and site_layer; remove {', '.join(other)}"
            )
        try:
            DecoderConfig(**self.architecture())
        except AttnExplainError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def _one_vision_family(self) -> ModelEntry:
        allowed = VISION_KEYS[self.vision]
        set_keys = [key for key in ARCHITECTURE_KEYS if getattr(self, key) is not None]
        given = [key for key in set_keys if key not in allowed]
        if self.pretrained or given:
            extra = ["pretrained"] * bool(self.pretrained) + given
            raise ValueError(
                f"an image model ({self.vision}) takes only {', '.join(allowed)}; remove "
                f"{', '.join(extra)}"
            )
        return self

    def architecture(self) -> dict[str, Any]:
        """ClassicConfig keyword arguments, defaults filled in; for pretrained models only a
        non-default attention mode (``{"attention_mode": "uniform"}``), else empty; for image
        models ``vision`` and the keys given; for decoders DecoderConfig's keyword arguments,
        defaults filled in."""
        if self.decoder:
            given = self.model_dump(include=set(DECODER_KEYS), exclude_none=True)
            return DecoderConfig(decoder=self.decoder, **given).to_dict()
        if self.vision:
            given = self.model_dump(include=set(VISION_KEYS[self.vision]), exclude_none=True)
            if given.get("attention_mode") == TRAINABLE_MODES[0]:
                del given["attention_mode"]
            return {"vision": self.vision, **given}
        if self.transformer:
            mode = self.attention_mode
            return {} if mode in (None, TRAINABLE_MODES[0]) else {"attention_mode": mode}
        defaults = {f.name: f.default for f in fields(ClassicConfig) if f.name in ARCHITECTURE_KEYS}
        given = self.model_dump(include=set(ARCHITECTURE_KEYS), exclude_none=True)
        return defaults | given

    def _transformer_name(self) -> str:
        """``minilm``, or the last part of a user's folder or hub id."""
        if self.pretrained:
            return self.pretrained
        return Path(self.hf.rstrip("/")).name or self.hf

    def source(self) -> dict[str, Any]:
        """What names the model in its training unit's key: a pretrained name, or a user
        model's files' SHA-256 (or hub id and revision) and whether it is fine-tuned."""
        if self.hf is None:
            return {"pretrained": self.pretrained}
        from attnexplain.models.imported import model_provenance

        source = {"hf": model_provenance(self.hf, self.revision), "finetune": bool(self.finetune)}
        return source | ({"label_words": self.label_words} if self.label_words else {})

    @property
    def label(self) -> str:
        """A short name for tables: ``lstm-additive``, ``average-dot-uniform-h64``, ``minilm``,
        ``my-bert-layer3`` (a user's folder ``my-bert``, read at layer 3), ``llama-l2-h128-heads4``
        (a decoder of 2 layers, 128 wide, with 4 heads)."""
        layer = "" if self.site_layer is None else f"-layer{self.site_layer}"
        if self.decoder:
            arch = self.architecture()
            size = f"l{arch['layers']}-h{arch['hidden_size']}-heads{arch['heads']}"
            return f"{self.decoder}-{size}{layer}"
        if self.vision:
            return "-".join(map(str, self.architecture().values()))
        if self.transformer:
            mode = "".join(f"-{value}" for value in self.architecture().values())
            tuned = "-finetuned" if self.finetune else ""
            return self._transformer_name() + tuned + mode + layer
        arch, default = self.architecture(), ModelEntry().architecture()
        size = "" if arch["hidden_size"] == default["hidden_size"] else f"-h{arch['hidden_size']}"
        return self.paper_model + size

    @property
    def paper_model(self) -> str:
        """The model as the papers' tables name it: a classic model's encoder and attention
        (and a non-default attention mode) at any hidden size (J&W's bAbI models have 32, their
        classifiers 128: both are "the BiLSTM"); other models' label."""
        if self.vision or self.transformer or self.decoder:
            return self.label
        arch, default = self.architecture(), ModelEntry().architecture()
        parts = [arch["encoder"], arch["attention"]]
        if arch["attention_mode"] != default["attention_mode"]:
            parts.append(arch["attention_mode"])
        return "-".join(parts)


class _RecipeEntry(_Section):
    """Overrides of a training recipe's optimisation settings."""

    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None


class FinetuneEntry(_RecipeEntry):
    """Overrides of the fine-tuning defaults (:meth:`TrainConfig.finetuning`)."""

    max_length: PositiveInt | None = None
    patience: PositiveInt | None = None  # epochs without a better dev score before stopping

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig.finetuning(**self.model_dump(exclude_none=True), seed=seed)


class TrainEntry(FinetuneEntry):
    """Overrides of the classic training defaults (:class:`TrainConfig`, the J&W recipe)."""

    embeddings: Annotated[str | None, _one_of("embeddings", EMBEDDINGS)] = None
    embed_dim: PositiveInt | None = None

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig(**self.model_dump(exclude_none=True), seed=seed)


class DecoderTrainEntry(_RecipeEntry):
    """Overrides of the decoders' training defaults (:meth:`TrainConfig.decoder`)."""

    max_length: PositiveInt | None = None
    patience: PositiveInt | None = None
    short_epochs: PositiveInt | None = None  # the first epochs on the shortest prompts only

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig.decoder(**self.model_dump(exclude_none=True), seed=seed)


class VisionTrainEntry(_RecipeEntry):
    """Overrides of the image models' training defaults (:meth:`TrainConfig.vision`)."""

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig.vision(**self.model_dump(exclude_none=True), seed=seed)


class ExperimentEntry(_Section):
    """A registered experiment and the parameters it runs with; ``datasets`` / ``models``
    (names or labels) restrict it to some of the plan's entries, and ``note`` says why
    (``run`` prints it: a plan that cuts a step short says so)."""

    name: Annotated[str, _one_of("experiment", list_experiments())]
    params: dict[str, Any] = Field(default_factory=dict)
    datasets: list[str] | None = None
    models: list[str] | None = None
    note: str | None = None

    def applies_to(self, dataset: DatasetEntry, model: ModelEntry) -> bool:
        """Whether the plan runs this entry on ``dataset`` x ``model``."""
        return (self.datasets is None or {dataset.name, dataset.label} & set(self.datasets)) and (
            self.models is None or model.label in self.models
        )

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "name" not in info.data:  # the name itself was refused
            return params
        try:
            get_experiment(info.data["name"]).resolve(params)
        except AttnExplainError as exc:
            # pydantic reports only ValueErrors at the field's path
            raise ValueError(str(exc)) from exc
        return params

    def resolved_params(self) -> dict[str, Any]:
        """The parameters the experiment runs with: the plan's over the defaults."""
        return get_experiment(self.name).resolve(self.params)

    @property
    def title(self) -> str:
        """``predictions`` or ``predictions (batch_size=8)``: how tables are headed."""
        if not self.params:
            return self.name
        return f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def _safe_name(name: str) -> str:
    if len(name) > MAX_NAME:
        raise ValueError(
            f"a name of {len(name)} characters cannot name a run directory; use at most {MAX_NAME}"
        )
    if not name or not all(c.isalnum() or c in "._-" for c in name) or name.startswith("."):
        raise ValueError(
            f"{name!r} cannot name a run directory; use letters, digits, '.', '_' and '-'"
        )
    return name


class Plan(_Section):
    """A validated plan; see the module docstring for the YAML it comes from."""

    name: Annotated[str, AfterValidator(_safe_name)]
    datasets: Annotated[list[DatasetItem], Field(min_length=1)]
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    seeds: Annotated[list[Seed], Field(min_length=1)]
    split: Annotated[str, _one_of("split", SPLITS)] = "test"
    max_instances: PositiveInt | None = None
    train: TrainEntry = Field(default_factory=TrainEntry)
    finetune: FinetuneEntry = Field(default_factory=FinetuneEntry)
    vision_train: VisionTrainEntry = Field(default_factory=VisionTrainEntry)
    decoder_train: DecoderTrainEntry = Field(default_factory=DecoderTrainEntry)
    experiments: Annotated[list[ExperimentEntry], Field(min_length=1)]
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_restrictions(self) -> Plan:
        known = {
            "datasets": {n for d in self.datasets for n in (d.name, d.label)},
            "models": {m.label for m in self.models},
        }
        for index, entry in enumerate(self.experiments):
            for field_name, names in known.items():
                unknown = sorted(set(getattr(entry, field_name) or ()) - names)
                if unknown:
                    raise ValueError(
                        f"experiments[{index}].{field_name}: the plan has no "
                        f"{', '.join(map(repr, unknown))}; it lists {', '.join(sorted(names))}"
                    )
        return self

    def messages(self) -> list[str]:
        """The plan's notes and its experiments' notes: what it leaves out and why."""
        return [*self.notes, *(f"{e.title}: {e.note}" for e in self.experiments if e.note)]

    def train_config(self, model: ModelEntry, seed: int) -> TrainConfig:
        """The training recipe of ``model`` under this plan, with ``seed``."""
        if model.vision:
            return self.vision_train.config(seed)
        if model.decoder:
            return self.decoder_train.config(seed)
        return (self.finetune if model.transformer else self.train).config(seed)

    def select(
        self, datasets: Iterable[str] | None = None, models: Iterable[str] | None = None
    ) -> Plan:
        """This plan cut down to the ``datasets`` (names) and ``models`` (labels such as
        ``lstm-additive`` or ``minilm``) given; None keeps them all, order follows the plan.

        The units left are the plan's own, with the same keys, so running a selection and then
        the whole plan into one directory does each unit once. Raises :class:`PlanError` for a
        name the plan does not list, naming the ones it does.
        """
        update: dict[str, list[Any]] = {}
        for field_name, wanted, name_of in (
            ("datasets", datasets, lambda entry: entry.name),
            ("models", models, lambda entry: entry.label),
        ):
            if wanted is None:
                continue
            wanted, entries = list(wanted), getattr(self, field_name)
            known = [name_of(entry) for entry in entries]
            unknown = [name for name in wanted if name not in known]
            if unknown:
                raise PlanError(
                    f"plan {self.name!r} has no {field_name} {', '.join(map(repr, unknown))}; "
                    f"it lists {', '.join(known)}"
                )
            update[field_name] = [entry for entry in entries if name_of(entry) in wanted]
        selected = self.model_copy(update=update)
        # experiment entries keep only the restrictions the selection left (an entry that
        # applies to none of them is dropped), so the selected plan validates on its own
        experiments = [
            entry
            for entry in self.experiments
            if any(
                entry.applies_to(dataset, model)
                for dataset in selected.datasets
                for model in selected.models
            )
        ]
        return parse_plan(
            {
                **selected.model_dump(exclude_none=True),
                "experiments": [
                    entry.model_dump(exclude_none=True) | selected._restricted_to_self(entry)
                    for entry in experiments
                ],
            },
            f"{self.name} (selection)",
        )

    def _restricted_to_self(self, entry: ExperimentEntry) -> dict[str, list[str]]:
        """``entry``'s dataset / model restrictions cut to the names this plan lists."""
        names = {
            "datasets": {n for d in self.datasets for n in (d.name, d.label)},
            "models": {m.label for m in self.models},
        }
        return {
            key: [name for name in getattr(entry, key) if name in names[key]]
            for key in names
            if getattr(entry, key) is not None
        }


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    """Validate plan ``data`` (the parsed YAML); ``source`` names it in error messages.

    Raises :class:`PlanError` listing every problem as ``field.path: what is wrong``.
    """
    return validate(Plan, data, f"plan {source}", PlanError)


def load_plan(path: str | os.PathLike) -> Plan:
    """Read and validate a YAML plan file (see the module docstring for the format)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        data = load_yaml(text)
    except OSError as exc:
        raise PlanError(f"plan {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"plan {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): save it as UTF-8"
        ) from None
    except YamlShapeError as exc:
        raise PlanError(f"plan {path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or exc
        raise PlanError(f"plan {path}: not valid YAML{line}: {problem}") from None
    return parse_plan(data, str(path))

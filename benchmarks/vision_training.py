"""Train both image models (attention CNN, ViT) on an image dataset and print their test
accuracy and training time: how the numbers in the vision notes are reproduced.

Every setting is a default of :class:`AttentionCNNConfig`, :func:`make_vit` and
:func:`train_image_model` except the number of epochs, which is each family's own (a ViT needs
more). Usage: ``python benchmarks/vision_training.py [--models cnn vit] [--epochs N]
[--dataset mnist-5k] [--max-train N]``.

Measured on mnist-5k (CPU, ``OMP_NUM_THREADS=1``): attention CNN, 15 epochs, seed 0: 97.6%
test accuracy (best dev 97.8%) in 25 s; ViT, 60 epochs: seed 0 96.0% test (best dev 95.4%),
seed 10 96.6% (dev 96.6%), 255 s each on a loaded machine (30 epochs: 95.0% / 92.4% dev with
seed 0, 92.8% test with seed 10, short of 95%).
"""

from __future__ import annotations

import argparse
import time

from attnexplain.data.images import ImageDataset, list_image_datasets, load_image_dataset
from attnexplain.models.vision import AttentionCNNConfig, make_attention_cnn, make_vit
from attnexplain.models.vision_train import accuracy, train_image_model

EPOCHS = {"cnn": 15, "vit": 60}


def build(name: str, data: ImageDataset, seed: int):
    """A fresh model of family ``name`` for the images of ``data``."""
    channels, size = data.images.shape[1], data.images.shape[-1]
    if name == "cnn":
        config = AttentionCNNConfig(channels, size, data.num_classes)
        return make_attention_cnn(config, seed)
    return make_vit(size, channels, data.num_classes, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", choices=list(EPOCHS), default=list(EPOCHS))
    parser.add_argument("--dataset", choices=list_image_datasets(), default="mnist-5k")
    parser.add_argument("--epochs", type=int, help="the same for every model (default: its own)")
    parser.add_argument("--max-train", type=int, help="train on the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = {} if args.max_train is None else {"max_rows": {"train": args.max_train}}
    data = load_image_dataset(args.dataset, **options)
    print(f"{args.dataset}: {data.sizes()}")
    print(f"{'model':<6}{'params':>9}{'epochs':>8}{'best dev':>10}{'test':>8}{'seconds':>9}")
    for name in args.models:
        model = build(name, data, args.seed)
        epochs = args.epochs or EPOCHS[name]
        started = time.perf_counter()
        result = train_image_model(
            model, data.split("train"), data.split("dev"), epochs=epochs, seed=args.seed
        )
        seconds = time.perf_counter() - started
        test = accuracy(model, *data.split("test"))
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<6}{params:>9}{epochs:>8}{result['best_dev_accuracy']:>10.4f}"
            f"{test:>8.4f}{seconds:>9.1f}"
        )


if __name__ == "__main__":
    main()

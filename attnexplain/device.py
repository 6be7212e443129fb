"""The one place that decides where a run computes: device and precision.

Every command that runs a model takes ``--device auto|cpu|cuda|cuda:N|mps`` (and the Python
API ``device=``); :func:`resolve_device` turns that into a :class:`torch.device` or one clear
error. :func:`computing_on` then makes it the default device of everything created inside it,
so models, batches, masks and the runner's units follow it without a ``.to()`` at every call
site: code below the runner takes tensors and never picks a device itself. Seeded draws go
through :func:`seeded_generator` and :func:`draw`, which draw on the CPU (the same numbers
on every device) and move the result.

Mixed precision (``bf16`` / ``fp16``) is an autocast scope for transformers, off by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from attnexplain.errors import InvalidInputError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (a GPU when torch sees one: CUDA, then MPS; else the CPU), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps`` -> the device.

    Raises :class:`InvalidInputError` for an unknown name, or a device this machine's torch
    cannot see (naming the devices it can)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise InvalidInputError(
                f"device 'mps' is not available here (torch sees {visible_devices()}): "
                f"use --device cpu, or run on a Mac with Metal"
            )
        return torch.device("mps")
    match = _CUDA.fullmatch(spec)
    if match is None:
        raise InvalidInputError(
            f"unknown device {spec!r}; choose one of {', '.join(DEVICES)} (N: a GPU index)"
        )
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
        raise InvalidInputError(
            f"device {spec!r} is not available: this torch ({torch.__version__}, {build}) "
            f"sees {visible_devices()}; use --device cpu, or install a CUDA build of torch"
        )
    index = int(match.group(1) or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise InvalidInputError(
            f"device {spec!r} does not exist: torch sees {visible_devices()}; pick one of them"
        )
    return torch.device("cuda", index)


def visible_devices() -> str:
    """The devices torch can use here, e.g. ``cpu, cuda:0, cuda:1``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return ", ".join(names)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_precision(name: str | None) -> str:
    """``fp32`` (default), ``bf16`` or ``fp16``; :class:`InvalidInputError` otherwise."""
    name = (name or "fp32").strip().lower()
    if name not in PRECISIONS:
        raise InvalidInputError(
            f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}"
        )
    return name


@contextmanager
def computing_on(device: torch.device, precision: str = "fp32") -> Iterator[torch.device]:
    """A scope in which new tensors and modules are created on ``device`` (torch's default
    device) and, for ``bf16`` / ``fp16``, matrix work runs under autocast. Restores the
    previous default on exit, also after an error."""
    previous = torch.get_default_device()
    dtype = PRECISIONS[resolve_precision(precision)]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    # torch's default-device mode costs a Python call per op: set it only where it changes
    # anything (a CPU run on a CPU default needs none)
    moved = device != previous
    if moved:
        torch.set_default_device(device)
    try:
        with autocast:
            yield device
    finally:
        if moved:
            torch.set_default_device(previous)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: draws from it are the same on every device."""
    return torch.Generator(device="cpu").manual_seed(seed)


def draw(
    sample, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``sample(shape)`` (``torch.rand``, ``torch.randn``, ...) drawn on the CPU from
    ``generator`` (a :func:`seeded_generator`, or None for torch's global one), then moved to
    ``device``: the numbers do not depend on where the run computes."""
    return sample(tuple(shape), generator=generator, device="cpu").to(device)


def random_order(count: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``count`` positions drawn on the CPU from ``generator`` (the
    same order on every device; a CPU index tensor indexes tensors on any device)."""
    return torch.randperm(count, generator=generator, device="cpu")


def to_numpy(tensor: torch.Tensor):
    """``tensor`` as a numpy array, from any device; half and bfloat16 (mixed precision)
    become float32, which numpy holds."""
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()

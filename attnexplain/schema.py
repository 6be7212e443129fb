"""Validating what attnexplain reads from files (plans, manifests, checkpoints, done records):
pydantic models with strict types and no unknown keys, and errors that name the file, the
field path and the fix in one line."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails

from attnexplain.errors import AttnExplainError


class Strict(BaseModel):
    """A mapping read from a file: strict types (YAML's ``"2"`` or ``yes`` is not a number),
    no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own extra="forbid" message does not say which keys would have been right
        if isinstance(data, Mapping) and cls.model_config.get("extra") == "forbid":
            for key in data:
                if key not in cls.model_fields:
                    allowed = list(cls.model_fields)
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ValueError(
                        f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
                    )
        return data


M = TypeVar("M", bound=BaseModel)


def validate(
    model: type[M], data: Any, source: str, error: type[AttnExplainError], fix: str = ""
) -> M:
    """``data`` validated as ``model``; otherwise ``error`` listing every problem as
    ``source: field.path: what is wrong`` (then ``; fix`` when given)."""
    if not isinstance(data, Mapping):
        problem = (
            f"expected a mapping with the keys {', '.join(model.model_fields)}, "
            f"got {type(data).__name__}"
        )
        raise error(f"{source}: {problem}" + (f"; {fix}" if fix else ""))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(describe(error) for error in exc.errors())
        raise error(f"{source}: {problems}" + (f"; {fix}" if fix else "")) from None


def read_json(
    path: str | os.PathLike, model: type[M], error: type[AttnExplainError], fix: str = ""
) -> M:
    """The JSON file ``path`` validated as ``model``; ``error`` (ending with ``fix``) when it
    cannot be read, is not UTF-8 JSON or does not fit."""
    path = Path(path)
    suffix = f"; {fix}" if fix else ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror}){suffix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{path} cannot be read: not valid UTF-8 JSON ({exc}){suffix}") from None
    if not isinstance(data, dict):
        raise error(f"{path} holds a JSON {type(data).__name__}, not an object{suffix}")
    return validate(model, data, str(path), error, fix)


def describe(error: ErrorDetails) -> str:
    """One pydantic error as ``models[1].encoder: unknown encoder 'gru'; choose one of ...``."""
    path = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    ).lstrip(".")
    kind = error["type"]
    if kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "missing":
        message = "required; add it"
    elif kind == "too_short":
        least = error["ctx"]["min_length"]
        message = f"needs at least {least} {'entry' if least == 1 else 'entries'}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"should be a mapping of keys to values, got {shorten(error['input'])}"
    else:
        message = f"{error['msg'].removeprefix('Input ')}, got {shorten(error['input'])}"
    return f"{path}: {message}" if path else message


def shorten(value: Any) -> str:
    """``repr(value)``, cut to 60 characters."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."

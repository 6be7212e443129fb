"""Attribution methods by name, and the one verb that runs them: :func:`attribute`."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd
import torch

from attnexplain.attribution import (
    alti,
    attention,
    attnlrp,
    captum_methods,
    erasure,
    generic_rollout,
    gradient,
    value_zeroing,
)
from attnexplain.attribution.adapter import check_model, predicted_class
from attnexplain.attribution.result import Attribution, MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.inputs import reader, texts_batch


class TokenDecoder(Protocol):
    """Anything that turns ids into token strings: a TextPipeline or a WordpieceTokenizer."""

    def decode(self, ids: Sequence[int]) -> list[str]: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``function(model, batch, [target,] **options) -> MethodOutput``;
    ``family`` is one of :data:`FAMILIES`; ``gradients``: whether it runs a backward pass
    (the model must be differentiable, and memory grows with the batch)."""

    name: str
    function: Callable[..., MethodOutput]
    family: str
    gradients: bool = False

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The method's options (everything after model and batch)."""
        return dict(list(inspect.signature(self.function).parameters.items())[2:])

    @property
    def uses_target(self) -> bool:
        """Whether the scores explain one output class (gradient and Captum methods)."""
        return "target" in self.parameters

    @property
    def options(self) -> dict[str, object]:
        """The options :func:`attribute` accepts, with their defaults."""
        return {name: p.default for name, p in self.parameters.items() if name != "target"}

    @property
    def reads_attention(self) -> bool:
        """Whether the scores are read from the model's attention (the attention family:
        the model's attention must be hookable, see :func:`attnexplain.list_sites`)."""
        return self.family == "attention"

    @property
    def summary(self) -> str:
        """The first sentence of the method's docstring."""
        doc = " ".join((self.function.__doc__ or "").split())
        return doc.split(". ")[0].rstrip(".")


FAMILIES = ("attention", "gradient", "erasure", "captum")

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("attention", attention.raw_attention, "attention"),
        MethodSpec("attention-rollout", attention.rollout, "attention"),
        MethodSpec("attention-flow", attention.flow, "attention"),
        MethodSpec("attention-norm", attention.norm_attention, "attention"),
        MethodSpec("grad-attention", attention.grad_attention, "attention", gradients=True),
        MethodSpec(
            "gradient-rollout", generic_rollout.gradient_rollout, "attention", gradients=True
        ),
        MethodSpec("value-zeroing", value_zeroing.value_zeroing, "attention"),
        MethodSpec("alti", alti.alti, "attention"),
        MethodSpec("attnlrp", attnlrp.attnlrp, "attention", gradients=True),
        MethodSpec("jw-gradient", gradient.jw_gradient, "gradient", gradients=True),
        MethodSpec("leave-one-out", erasure.leave_one_out, "erasure"),
        MethodSpec("saliency", captum_methods.saliency, "captum", gradients=True),
        MethodSpec("input-x-gradient", captum_methods.input_x_gradient, "captum", gradients=True),
        MethodSpec(
            "integrated-gradients", captum_methods.integrated_gradients, "captum", gradients=True
        ),
        MethodSpec("deeplift", captum_methods.deeplift, "captum", gradients=True),
        MethodSpec("gradient-shap", captum_methods.gradient_shap, "captum", gradients=True),
        MethodSpec("occlusion", captum_methods.occlusion, "captum"),
        MethodSpec("lime", captum_methods.lime, "captum"),
        MethodSpec("kernel-shap", captum_methods.kernel_shap, "captum"),
    ]
}


def list_methods(family: str | None = None) -> list[str]:
    """Names of the registered attribution methods, all or those of one ``family``
    (``attention``, ``gradient``, ``erasure``, ``captum``)."""
    if family is not None and family not in FAMILIES:
        raise UnknownNameError(
            f"unknown method family {family!r}; choose one of {', '.join(FAMILIES)}"
        )
    return [name for name, spec in METHODS.items() if family in (None, spec.family)]


def describe_methods(family: str | None = None) -> pd.DataFrame:
    """What each registered method is and needs, one row per method (all, or one
    ``family``'s).

    Returns
    -------
    DataFrame with ``name``, ``family``, ``uses_target`` (explains one class: ``target=``
    applies), ``options`` (what :func:`attribute` accepts, with defaults), ``gradients`` (runs
    a backward pass), ``attention`` (reads the model's attention: it must be hookable) and
    ``summary`` (the first sentence of its docstring). Every method runs on the classic models
    and on transformers alike; on a classic model's single attention step, the methods that
    compose layers (rollout, flow) give its raw attention.

    Example
    -------
    >>> describe_methods("captum")[["name", "options"]]
    """
    return pd.DataFrame(
        [
            {
                "name": spec.name,
                "family": spec.family,
                "uses_target": spec.uses_target,
                "options": spec.options,
                "gradients": spec.gradients,
                "attention": spec.reads_attention,
                "summary": spec.summary,
            }
            for spec in map(get_method, list_methods(family))
        ]
    )


def method_key(name: str) -> str:
    """``name`` as the registry spells names: lower case, words joined by hyphens
    (``Integrated_Gradients`` -> ``integrated-gradients``)."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name`` (spelled freely: ``integrated_gradients`` finds
    ``integrated-gradients``); :class:`UnknownNameError` suggests the nearest name and lists
    the known ones."""
    key = method_key(name)
    if key not in METHODS:
        nearest = difflib.get_close_matches(key, METHODS, n=1, cutoff=0.55)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise UnknownNameError(
            f"unknown attribution method {name!r}; {hint}choose one of {', '.join(METHODS)} "
            f"(describe_methods() says what each needs)"
        )
    return METHODS[key]


def _check_options(spec: MethodSpec, options: dict[str, object]) -> None:
    accepted = list(spec.options)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"takes {', '.join(accepted)}" if accepted else "takes no options"
        raise InvalidInputError(f"method {spec.name!r} {takes}; got {', '.join(unknown)}")


def _target(target: torch.Tensor | int, batch: Batch) -> torch.Tensor:
    """One class index per row: a [batch] tensor as is, an int for every row."""
    target = torch.as_tensor(target, dtype=torch.long, device=batch.token_ids.device)
    if target.shape not in ((), (len(batch),)):
        raise InvalidInputError(
            f"target must be one class index or one per row ([{len(batch)}]), "
            f"got shape {tuple(target.shape)}"
        )
    return target.expand(len(batch))


def _tokens(batch: Batch, decoder: TokenDecoder | None) -> list[list[str]]:
    lengths = batch.lengths.tolist()
    rows = [ids[:length] for ids, length in zip(batch.token_ids.tolist(), lengths, strict=True)]
    if decoder is None:
        return [[str(i) for i in ids] for ids in rows]
    return [decoder.decode(ids) for ids in rows]


def attribute(
    model: Checkpoint | torch.nn.Module,
    batch: Batch | str | Sequence[str],
    method: str,
    *,
    target: torch.Tensor | int | None = None,
    pipeline: TokenDecoder | None = None,
    **options: object,
) -> Attribution:
    """Token scores of one method for a batch, on a ClassicModel or an HFClassifier alike.

    Parameters
    ----------
    model : ClassicModel or HFClassifier, in eval mode, or a loaded :class:`Checkpoint` (its
        model, with its pipeline to read raw texts and name the tokens). A path is refused
        with the fix: ``load_checkpoint(path)``.
    batch : Batch from :func:`attnexplain.data.collate` with the pipeline's framing, or raw
        texts (one str or a list) when the model carries its pipeline (a Checkpoint) or
        ``pipeline`` is given.
    method : a name from :func:`list_methods`; spelling is forgiven (``integrated_gradients``,
        ``Integrated-Gradients``).
    target : LongTensor [batch] or int, the class to explain for methods that explain one
        (gradient and Captum methods); default: the predicted class of each row.
    pipeline : TextPipeline or WordpieceTokenizer, to fill in token strings (default: ids).
    options : method options, e.g. ``heads="max"`` (attention), ``n_steps=100``
        (integrated-gradients), ``n_samples=500`` (lime, kernel-shap, gradient-shap).

    Returns
    -------
    Attribution with scores [batch, tokens], 0 outside ``batch.content_mask``.

    Example
    -------
    >>> result = attribute(model, collate([pipeline.encode("a fine film")]), "jw-gradient")
    >>> result.scores.shape                                  # [1, 5]: <SOS> a fine film <EOS>
    >>> attribute(load_checkpoint("runs/synthetic"), ["a fine film"], "jw-gradient")
    """
    spec = get_method(method)
    batch = texts_batch(model, batch, pipeline)
    read = reader(model, pipeline)
    model, pipeline = read.model, read.pipeline
    check_model(model)
    _check_options(spec, options)
    if spec.uses_target:
        options["target"] = (
            predicted_class(model, batch) if target is None else _target(target, batch)
        )
    elif target is not None:
        raise InvalidInputError(f"method {spec.name!r} does not explain a class; pass no target")
    output = spec.function(model, batch, **options)
    scores = output.scores.detach().float().masked_fill(~batch.content_mask, 0.0)
    delta = None if output.convergence_delta is None else output.convergence_delta.detach()
    return Attribution(scores, batch.content_mask, _tokens(batch, pipeline), spec.name, delta)

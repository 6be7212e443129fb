"""Attribution methods by name, and the one verb that runs them: :func:`attribute`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

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


class TokenDecoder(Protocol):
    """Anything that turns ids into token strings: a TextPipeline or a WordpieceTokenizer."""

    def decode(self, ids: Sequence[int]) -> list[str]: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``function(model, batch, [target,] **options) -> MethodOutput``;
    ``family`` is one of :data:`FAMILIES`."""

    name: str
    function: Callable[..., MethodOutput]
    family: str

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The method's options (everything after model and batch)."""
        return dict(list(inspect.signature(self.function).parameters.items())[2:])

    @property
    def uses_target(self) -> bool:
        """Whether the scores explain one output class (gradient and Captum methods)."""
        return "target" in self.parameters


FAMILIES = ("attention", "gradient", "erasure", "captum")

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("attention", attention.raw_attention, "attention"),
        MethodSpec("attention-rollout", attention.rollout, "attention"),
        MethodSpec("attention-flow", attention.flow, "attention"),
        MethodSpec("attention-norm", attention.norm_attention, "attention"),
        MethodSpec("grad-attention", attention.grad_attention, "attention"),
        MethodSpec("gradient-rollout", generic_rollout.gradient_rollout, "attention"),
        MethodSpec("value-zeroing", value_zeroing.value_zeroing, "attention"),
        MethodSpec("alti", alti.alti, "attention"),
        MethodSpec("attnlrp", attnlrp.attnlrp, "attention"),
        MethodSpec("jw-gradient", gradient.jw_gradient, "gradient"),
        MethodSpec("leave-one-out", erasure.leave_one_out, "erasure"),
        MethodSpec("saliency", captum_methods.saliency, "captum"),
        MethodSpec("input-x-gradient", captum_methods.input_x_gradient, "captum"),
        MethodSpec("integrated-gradients", captum_methods.integrated_gradients, "captum"),
        MethodSpec("deeplift", captum_methods.deeplift, "captum"),
        MethodSpec("gradient-shap", captum_methods.gradient_shap, "captum"),
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


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    if name not in METHODS:
        raise UnknownNameError(
            f"unknown attribution method {name!r}; choose one of {', '.join(METHODS)}"
        )
    return METHODS[name]


def _check_options(spec: MethodSpec, options: dict[str, object]) -> None:
    accepted = [p for p in spec.parameters if p != "target"]
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
    model: torch.nn.Module,
    batch: Batch,
    method: str,
    *,
    target: torch.Tensor | int | None = None,
    pipeline: TokenDecoder | None = None,
    **options: object,
) -> Attribution:
    """Token scores of one method for a batch, on a ClassicModel or an HFClassifier alike.

    Parameters
    ----------
    model : ClassicModel or HFClassifier, in eval mode.
    batch : Batch from :func:`attnexplain.data.collate` with the pipeline's framing.
    method : a name from :func:`list_methods`.
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
    """
    spec = get_method(method)
    check_model(model)
    _check_options(spec, options)
    if spec.uses_target:
        options["target"] = (
            predicted_class(model, batch) if target is None else _target(target, batch)
        )
    elif target is not None:
        raise InvalidInputError(f"method {method!r} does not explain a class; pass no target")
    output = spec.function(model, batch, **options)
    scores = output.scores.detach().float().masked_fill(~batch.content_mask, 0.0)
    delta = None if output.convergence_delta is None else output.convergence_delta.detach()
    return Attribution(scores, batch.content_mask, _tokens(batch, pipeline), method, delta)

"""The gradient and perturbation family, computed by Captum itself on the model as a function
of its content-token embeddings (:class:`~attnexplain.attribution.adapter.EmbeddingForward`),
or of an image's blocks of pixels (:class:`~attnexplain.attribution.pixels.PixelForward`).

Explained output: the probability of ``target`` (default: the predicted class; a classic
binary model's single sigmoid logit becomes [1 - p, p] first). Baseline: all-zero content
embeddings, i.e. the content tokens erased, special tokens kept (for classic models the zero
vector is the PAD embedding; for an image, black blocks).

From embedding-dimension attributions [batch, tokens, dim] to token scores [batch, tokens]:
methods that attribute every embedding element (saliency, input x gradient, integrated
gradients, DeepLift, GradientSHAP) are summed over the dimension, which keeps completeness
(the token scores of IG add up to the output difference); saliency is Captum's absolute
gradient, so its sum is the gradient's L1 norm. Methods that perturb whole tokens (occlusion,
LIME, KernelSHAP) give every element of a token the token's value, which is taken as is.
"""

from __future__ import annotations

import importlib
import warnings

import torch

from attnexplain.attribution.adapter import EmbeddingForward, Model, input_forward, pad_id
from attnexplain.attribution.erasure import erase
from attnexplain.attribution.pixels import PixelForward
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch


def _explainer(algorithm: str, forward: EmbeddingForward | PixelForward):
    """An instance of ``captum.attr.<algorithm>`` around ``forward``. Captum is imported on
    first use: it takes longer to import than the rest of ``attnexplain`` needs."""
    return getattr(importlib.import_module("captum.attr"), algorithm)(forward)


def _captum(
    forward: EmbeddingForward | PixelForward,
    batch: Batch,
    target: torch.Tensor,
    algorithm: str,
    per_token: bool = False,
    with_delta: bool = False,
    **options: object,
) -> MethodOutput:
    """Run the Captum method named ``algorithm`` (a class of ``captum.attr``) on the content
    embeddings of ``batch``. Token scores are the sum over the embedding dimension, or
    (``per_token``) the value every element of a token got; ``with_delta`` asks Captum for
    its convergence delta [batch]."""
    content, trailing = forward.inputs(batch)
    content.requires_grad_()  # gradient methods need it; Captum would warn and set it
    explainer = _explainer(algorithm, forward)
    if with_delta:
        options["return_convergence_delta"] = True
    with warnings.catch_warnings():
        # DeepLift announces, on every call, that it hooks nonlinearities for the duration.
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        result = explainer.attribute(
            content, target=target, additional_forward_args=trailing, **options
        )
    attributions, delta = result if with_delta else (result, None)
    scores = attributions.mean(-1) if per_token else attributions.sum(-1)
    return MethodOutput(scores, delta)


def saliency(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """Captum ``Saliency``: |d p_target / d e|, summed over the embedding dimension."""
    return _captum(input_forward(model, batch), batch, target, "Saliency")


def input_x_gradient(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """Captum ``InputXGradient``: e * d p_target / d e, summed over the embedding dimension."""
    return _captum(input_forward(model, batch), batch, target, "InputXGradient")


# The most memory that what the backward pass keeps of one chunk of integrated gradients'
# steps may take (the activations autograd saves, weights not counted): the steps run in
# chunks of as many rows as fit, at least one step of the whole batch.
GRADIENT_CHUNK_BYTES = 2 * 2**30


def integrated_gradients(
    model: Model, batch: Batch, target: torch.Tensor, n_steps: int = 50
) -> MethodOutput:
    """Captum ``IntegratedGradients`` on the embeddings from the zero baseline, ``n_steps``
    Gauss-Legendre steps; reports Captum's convergence delta. The batch's ``n_steps`` copies
    run in chunks that keep at most :data:`GRADIENT_CHUNK_BYTES` for the backward pass
    (:func:`saved_bytes_per_row`), so a long input (a 1,000-token prefix of a 100M-parameter
    LM) costs more passes instead of running out of memory."""
    forward = input_forward(model, batch)
    per_row = saved_bytes_per_row(forward, *forward.inputs(batch))
    rows = max(len(batch), GRADIENT_CHUNK_BYTES // max(per_row, 1))
    return _captum(
        forward,
        batch,
        target,
        "IntegratedGradients",
        with_delta=True,
        n_steps=n_steps,
        internal_batch_size=int(rows),
    )


def saved_bytes_per_row(
    forward: EmbeddingForward | PixelForward,
    content: torch.Tensor,
    trailing: tuple[torch.Tensor | None, ...],
) -> int:
    """The bytes autograd keeps for the backward pass of ``forward`` on the first row of
    ``content`` [batch, ...] (``trailing``: the forward's other arguments, per row or None),
    weights not counted: one forward pass, measured with saved-tensor hooks."""
    weights = {parameter.data_ptr() for parameter in forward.model.parameters()}
    saved = 0

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if tensor.untyped_storage().data_ptr() not in weights:
            saved += tensor.numel() * tensor.element_size()
        return tensor

    first = [arg[:1] if isinstance(arg, torch.Tensor) else arg for arg in trailing]
    row = content[:1].detach().requires_grad_()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        forward(row, *first)
    return saved


def deeplift(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """Captum ``DeepLift`` (Rescale rule on the nonlinearities that are modules; elsewhere
    plain gradients, so the delta is not 0 for e.g. BERT's GELU) from the zero baseline;
    reports Captum's convergence delta."""
    return _captum(input_forward(model, batch), batch, target, "DeepLift", with_delta=True)


def gradient_shap(
    model: Model, batch: Batch, target: torch.Tensor, n_samples: int = 20, stdevs: float = 0.0
) -> MethodOutput:
    """Captum ``GradientShap`` with the zero baseline: ``n_samples`` random points between
    baseline and input (plus Gaussian noise of ``stdevs``). Completeness holds only in
    expectation here, so no convergence delta is reported."""
    forward = input_forward(model, batch)
    baseline = torch.zeros(1, *batch.token_ids.shape[1:], forward.embedding_dim)
    return _captum(
        forward,
        batch,
        target,
        "GradientShap",
        baselines=baseline,
        n_samples=n_samples,
        stdevs=stdevs,
    )


def occlusion(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """Captum ``Occlusion`` of one token at a time (window: one token's whole embedding):
    p_target(x) - p_target(x with token t's embedding zeroed)."""
    forward = input_forward(model, batch)
    window = (1, forward.embedding_dim)
    return _captum(
        forward,
        batch,
        target,
        "Occlusion",
        per_token=True,
        sliding_window_shapes=window,
        strides=window,
        perturbations_per_eval=batch.token_ids.shape[1],
    )


def _surrogate(
    model: Model,
    batch: Batch,
    target: torch.Tensor,
    algorithm: str,
    n_samples: int,
) -> MethodOutput:
    """Fit Captum's surrogate (LIME, KernelSHAP) per instance with one feature per content
    token. Special tokens share the first content token's feature: their content input and
    baseline are both zero, so switching them changes nothing."""
    forward = input_forward(model, batch)
    explainer = _explainer(algorithm, forward)
    scores = torch.zeros(batch.content_mask.shape, device=target.device)
    pad = pad_id(model)
    for b in range(len(batch)):
        row = erase(batch, target.new_tensor([b]), batch.content_mask[[b]], pad)
        content, trailing = forward.inputs(row)
        features = (row.content_mask.long().cumsum(-1) - 1).clamp(min=0)
        coefficients = explainer.attribute(
            content,
            target=target[[b]],
            additional_forward_args=trailing,
            feature_mask=features.unsqueeze(-1).expand_as(content),
            n_samples=n_samples,
            perturbations_per_eval=min(n_samples, 64),
            return_input_shape=False,
        )
        scores[b, batch.content_mask[b]] = coefficients.flatten().float()
    return MethodOutput(scores)


def lime(model: Model, batch: Batch, target: torch.Tensor, n_samples: int = 200) -> MethodOutput:
    """Captum ``Lime`` (default Lasso surrogate, cosine-similarity kernel) with ``n_samples``
    token-dropping perturbations per instance."""
    return _surrogate(model, batch, target, "Lime", n_samples)


def kernel_shap(
    model: Model, batch: Batch, target: torch.Tensor, n_samples: int = 200
) -> MethodOutput:
    """Captum ``KernelShap`` with ``n_samples`` token coalitions per instance."""
    return _surrogate(model, batch, target, "KernelShap", n_samples)

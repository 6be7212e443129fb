"""AttnLRP (Achtibat et al. 2024, "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation
for Transformers"), in gradient x input form.

One forward pass runs with modified backward rules; the relevance of token t is then
R_t = sum_d e_{t,d} * d y_target / d e_{t,d}, with e the word embeddings and y_target the
target class's logit (a binary classic model's single logit z counts as z for class 1 and -z
for class 0). Position and token-type embeddings are not inputs: like a bias, the relevance
they receive is not given to any token, so sum_t R_t falls short of y_target by what biases,
those embeddings and the softmax (below) absorb. The rules, each as its gradient form:

* linear layers, embeddings, residual sums, constant masks and rotary rotations: the epsilon
  rule (epsilon -> 0), which is plain gradient x input: nothing changes;
* LayerNorm / RMSNorm: the identity rule on the normalisation, i.e. the denominator (std or
  rms) is detached, so the norm is linear in its input; the reimplementation is checked
  against the module's own output on every call;
* elementwise activations (GELU, SiLU, tanh, ReLU, ...): the identity rule R_in = R_out. With
  y = act(x), R_out = y * g_y and R_in = x * g_x, so g_x = g_y * act(x) / x (0 where x = 0,
  where y = 0 too). ReLU's ratio is its ordinary gradient;
* softmax: R_i = x_i (R_out_i - s_i sum_j R_out_j). With R_out_j = s_j g_j this is
  x_i s_i (g_i - sum_j s_j g_j) = x_i * (d s / d x)^T g: the ordinary softmax gradient.
  Masked keys have s_i = 0 exactly, so their gradient is 0 and no finfo.min * g (or -inf * 0)
  is ever formed. The rule does not conserve relevance: sum_i x_i s_i (g_i - gbar) differs
  from sum_i s_i g_i, and the difference stays at the softmax (as at a bias);
* bilinear products (Q K^T, A V, the classic context vector sum_t a_t h_t, gated MLPs'
  act(gate) * up): the uniform rule, half the relevance to each factor. For z = x y,
  x g_z y + y g_z x = 2 R_z, so each factor's gradient is scaled by 0.5. A reaches Q and K only
  through the softmax, which is linear in its incoming gradient, so Q and K get 0.5 * 0.5.

Transformers: any model the hooks support whose every component has a rule. A module the
rules do not know (a norm or activation class, a leaf module, a forward that calls a
nonlinearity as a function, such as RoBERTa's classification head's ``torch.tanh``) raises
:class:`HookError` before anything is patched. Products of two activations written inline in
a forward, other than Llama-style gated MLPs, cannot be detected and would get no rule.
Classic models: the average encoder (tanh: identity rule), the CNN encoder (ReLU: nothing to
change), the BiLSTM (Arras et al. 2017's signal-take-all: gates detached, tanh identity), additive
or dot attention (softmax rule) and the uniform rule on the context vector sum_t a_t W h_t.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.layerwise import target_logit
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.errors import HookError, InvalidInputError
from attnexplain.models.classic import (
    AdditiveAttention,
    AverageEncoder,
    ClassicModel,
    CNNEncoder,
    EncodedState,
    masked_softmax,
)
from attnexplain.models.hf import HFClassifier
from attnexplain.models.pair import PairModel

LRP_IMPLEMENTATION = "attnexplain-attnlrp"


@functools.cache
def activations() -> tuple[type[nn.Module], ...]:
    """Activation modules with act(0) = 0, so that the identity rule's act(x) / x is bounded
    (transformers is imported here, on first use: ``import attnexplain`` stays light)."""
    from transformers import activations as hf

    return (
        nn.GELU,
        nn.SiLU,
        nn.Tanh,
        nn.ReLU,
        nn.LeakyReLU,
        hf.GELUActivation,
        hf.NewGELUActivation,
        hf.GELUTanh,
        hf.FastGELUActivation,
        hf.QuickGELUActivation,
        hf.AccurateGELUActivation,
        hf.SiLUActivation,
    )


@functools.cache
def linear_leaves() -> tuple[type[nn.Module], ...]:
    """Leaf modules that are linear in their input (dropout: identity in eval mode)."""
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D, nn.Embedding, nn.Dropout, nn.Identity)


# A nonlinearity called as a function in a forward: it would get no rule.
_FUNCTIONAL_NONLINEARITY = re.compile(
    r"\b(?:torch|F|functional)\.(?:tanh|sigmoid|exp|log|softmax|gelu|silu|relu|rsqrt|sqrt|erf"
    r"|layer_norm|rms_norm|normalize|softplus)\b|\.(?:tanh|sigmoid|exp|rsqrt|sqrt)\(\)"
)
_GATED_PRODUCT = "self.act_fn(self.gate_proj(x)) * self.up_proj(x)"

# Attention module -> how often the LRP attention ran it; filled while the rules are on.
_CALLS: dict[nn.Module, int] = {}


class _ScaledGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


class _IdentityRule(torch.autograd.Function):
    """Forward returns ``output`` = act(``x``); backward passes grad * act(x) / x * ``factor``
    to ``x`` (0 where x = 0) and nothing to ``output``'s own graph."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, output: torch.Tensor, factor: float) -> torch.Tensor:
        ratio = output / torch.where(x == 0, torch.ones_like(x), x)
        ctx.save_for_backward(ratio * factor)
        return output.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None, None


def scaled_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` [any] unchanged, with its gradient multiplied by ``factor``."""
    return _ScaledGradient.apply(x, factor)


def identity_rule(x: torch.Tensor, output: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """``output`` = act(``x``) (same shape) with the identity rule's gradient (module doc)."""
    return _IdentityRule.apply(x, output, factor)


def lrp_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hooks' eager attention (same shapes and checks) with the uniform rule on Q K^T
    (0.5 each) and on A V (0.5 each; A's half reaches Q and K through the softmax)."""
    from attnexplain.hooks.transformers_backend import hooked_attention_forward

    _CALLS[module] = _CALLS.get(module, 0) + 1
    return hooked_attention_forward(
        module,
        scaled_gradient(query, 0.25),
        scaled_gradient(key, 0.25),
        scaled_gradient(value, 0.5),
        attention_mask,
        scaling,
        dropout,
        **kwargs,
    )


def _tolerance(dtype: torch.dtype) -> float:
    """How far a reimplemented module may be from the module's own output, per dtype."""
    return torch.finfo(dtype).eps ** 0.5


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm with its std detached. x [..., *normalized_shape] -> same shape."""
    dims = tuple(range(-len(module.normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    variance = centred.square().mean(dims, keepdim=True)
    out = centred / (variance + module.eps).sqrt().detach()
    if module.weight is not None:
        out = out * module.weight
    return out if module.bias is None else out + module.bias


def _rms_norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm (Llama's: in float32, weight after the cast back) with its rms detached.
    x [..., dim] -> same shape."""
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if eps is None:  # torch's nn.RMSNorm default
        eps = torch.finfo(x.dtype).eps
    wide = x.float()
    rms = (wide.square().mean(-1, keepdim=True) + eps).sqrt().detach()
    out = (wide / rms).to(x.dtype)
    return out if module.weight is None else module.weight * out


def _norm_rule(
    rule: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    """A forward hook that swaps a norm's output for ``rule``'s, after checking they agree."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        replaced = rule(module, args[0])
        tolerance = _tolerance(output.dtype)
        if not torch.allclose(replaced, output, rtol=tolerance, atol=tolerance):
            raise HookError(
                f"{type(module).__name__} does not compute the norm AttnLRP's identity rule "
                "reimplements (x / std or x / rms, times weight, plus bias): it needs its own "
                "rule"
            )
        return replaced

    return hook


def _activation_hook(factor: float) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return identity_rule(args[0], output, factor)

    return hook


def _half_gradient_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return scaled_gradient(output, 0.5)


def _norm_of(module: nn.Module) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    if isinstance(module, nn.LayerNorm):
        return _layer_norm
    if type(module).__name__.endswith("RMSNorm"):
        return _rms_norm
    return None


@functools.cache
def _forward_source(module_class: type) -> str:
    try:
        return inspect.getsource(module_class.forward)
    except (OSError, TypeError):
        return ""


def _is_gated_mlp(module: nn.Module) -> bool:
    """Llama-style gated MLP: down(act(gate(x)) * up(x)); a variant raises ``HookError``."""
    if not all(hasattr(module, name) for name in ("gate_proj", "up_proj", "act_fn")):
        return False
    if _GATED_PRODUCT not in _forward_source(type(module)):
        raise HookError(
            f"{type(module).__name__} has gate_proj, up_proj and act_fn but does not compute "
            f"{_GATED_PRODUCT!r}: its product needs its own AttnLRP rule"
        )
    return True


def _check_module(name: str, module: nn.Module) -> None:
    """Raise ``HookError`` for a module with no rule: an unknown leaf, or a forward that calls
    a nonlinearity as a function."""
    kind = type(module).__name__
    has_children = next(module.children(), None) is not None
    if not has_children and not (
        isinstance(module, linear_leaves()) or kind.endswith("RotaryEmbedding")
    ):
        raise HookError(
            f"{kind} ({name}) has no AttnLRP rule: attnlrp knows linear layers, embeddings, "
            "dropout, LayerNorm/RMSNorm and the activations GELU, SiLU, tanh and ReLU"
        )
    found = _FUNCTIONAL_NONLINEARITY.search(_forward_source(type(module)))
    if has_children and found:
        raise HookError(
            f"{kind} ({name}) calls {found.group(0)!r} in its forward, a nonlinearity AttnLRP "
            "cannot give a rule to unless it is an activation module"
        )


def _rule_hooks(model: nn.Module, sites: list[nn.Module]) -> list[tuple[nn.Module, Callable]]:
    """(module, forward hook) for every rule the model needs; ``HookError`` (before anything
    is patched) for a component without a rule."""
    gated = [m for m in model.modules() if _is_gated_mlp(m)]
    gated_acts = {m.act_fn for m in gated}
    hooks = [(m.up_proj, _half_gradient_hook) for m in gated]
    for name, module in model.named_modules():
        norm = _norm_of(module)
        if norm is not None:
            hooks.append((module, _norm_rule(norm)))
        elif isinstance(module, activations()):
            hooks.append((module, _activation_hook(0.5 if module in gated_acts else 1.0)))
        elif module not in sites:
            _check_module(name, module)
    return hooks


def _switch_attention(model: nn.Module, implementation: str) -> None:
    model.set_attn_implementation(implementation)
    if model.config._attn_implementation != implementation:
        raise HookError(
            f"transformers refused to switch {type(model).__name__} to a custom attention "
            "implementation, so attnlrp cannot give its attention the AttnLRP rules"
        )


@contextmanager
def lrp_rules(model: nn.Module) -> Iterator[None]:
    """AttnLRP's rules on a transformers model for the duration: attention through
    :func:`lrp_attention_forward`, norm and activation hooks. Everything is restored on exit,
    also after an error. Raises ``HookError`` for a model they do not cover, or (on exit) one
    whose forward did not run each attention module exactly once through the LRP attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    from attnexplain.hooks.transformers_backend import attention_sites

    sites = list(attention_sites(model).values())
    if not sites:
        raise HookError(
            f"{type(model).__name__} does not dispatch its attention through transformers' "
            "AttentionInterface, so attnlrp cannot give its attention the AttnLRP rules"
        )
    hooks = _rule_hooks(model, sites)
    AttentionInterface.register(LRP_IMPLEMENTATION, lrp_attention_forward)
    AttentionMaskInterface.register(LRP_IMPLEMENTATION, eager_mask)
    previous = model.config._attn_implementation
    _CALLS.clear()
    with ExitStack() as stack:
        stack.callback(_CALLS.clear)
        stack.callback(model.set_attn_implementation, previous)
        _switch_attention(model, LRP_IMPLEMENTATION)
        for module, hook in hooks:
            stack.callback(module.register_forward_hook(hook).remove)
        yield
        if any(_CALLS.get(module) != 1 for module in sites):
            raise HookError(
                f"{type(model).__name__} did not run each attention module once through the "
                "AttnLRP attention: its attention would carry no rule"
            )


def _relevance(embedded: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_d e * d y_target / d e: embedded [batch, tokens, dim] (a leaf) -> [batch, tokens]."""
    (gradient,) = torch.autograd.grad(target_logit(logits, target).sum(), embedded)
    return (embedded.detach() * gradient).sum(-1)


def _transformer(model: HFClassifier, batch: Batch, target: torch.Tensor) -> torch.Tensor:
    """Relevance [batch, tokens] of a transformer. The word embeddings are swapped for a leaf
    by a hook rather than passed as ``inputs_embeds``, so that decoders still find each row's
    last real token from the ids."""
    network = model.model
    words = network.get_input_embeddings()
    with torch.no_grad():
        embedded = words(batch.token_ids).requires_grad_()
    handle = words.register_forward_hook(lambda module, args, output: embedded)
    try:
        with torch.enable_grad(), lrp_rules(network):
            logits = network(**batch.model_inputs()).logits
    finally:
        handle.remove()
    return _relevance(embedded, logits, target)


def _lstm_signal_take_all(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """A one-layer, one-way, batch-first ``lstm`` over x [batch, tokens, E] -> states
    [batch, tokens, H], with Arras et al.'s (2017) signal-take-all rule: the gates i, f, o
    are detached, so c_t = f c_{t-1} + i g_t and h_t = o tanh(c_t) pass all relevance to the
    signal; tanh gets the identity rule."""
    if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
        raise HookError(
            "attnlrp's LSTM rule covers one-layer, one-way, batch-first nn.LSTMs without "
            f"projections; got {lstm}"
        )
    inputs = nn.functional.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0)
    h = c = x.new_zeros(x.shape[0], lstm.hidden_size)
    states = []
    for step in inputs.unbind(1):
        gates = step + nn.functional.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f).detach() * c + torch.sigmoid(i).detach() * identity_rule(
            g, torch.tanh(g)
        )
        h = torch.sigmoid(o).detach() * identity_rule(c, torch.tanh(c))
        states.append(h)
    return torch.stack(states, 1)


def _lstm_hook(module: nn.LSTM, args: tuple, output: tuple) -> tuple:
    """Forward hook: the LSTM's states [batch, tokens, H] recomputed under the signal-take-all
    rule, after checking they agree with the module's own."""
    states, last = output
    replaced = _lstm_signal_take_all(module, args[0])
    tolerance = _tolerance(states.dtype)
    if not torch.allclose(replaced, states, rtol=tolerance, atol=tolerance):
        raise HookError(f"attnlrp's LSTM reimplementation does not match {module}")
    return replaced, last


def _classic_hidden(
    model: ClassicModel, embedded: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """The encoder's states [batch, tokens, H] under the rules (tanh: identity rule; LSTM:
    signal-take-all)."""
    encoder = model.encoder
    if isinstance(encoder, AverageEncoder):
        projected = encoder.projection(embedded)
        return identity_rule(projected, torch.tanh(projected))
    if isinstance(encoder, CNNEncoder):  # ReLU's identity rule is its gradient
        return encoder(embedded, lengths)
    with ExitStack() as stack:
        for lstm in (encoder.forward_rnn, encoder.backward_rnn):
            stack.callback(lstm.register_forward_hook(_lstm_hook).remove)
        return encoder(embedded, lengths)


def _classic_scores(model: ClassicModel, hidden: torch.Tensor) -> torch.Tensor:
    """Attention scores [batch, tokens] under the rules (additive scorer's tanh: identity)."""
    scorer = model.scorer
    if isinstance(scorer, AdditiveAttention):
        projected = scorer.projection(hidden)
        return scorer.vector(identity_rule(projected, torch.tanh(projected))).squeeze(-1)
    return scorer(hidden)


def _classic(model: ClassicModel, batch: Batch, target: torch.Tensor) -> torch.Tensor:
    """Relevance [batch, tokens] of a classic model: the context vector's product a_t * W h_t
    gets the uniform rule when the attention is learned (a constant one is a linear map)."""
    with torch.no_grad():
        embedded = model.embedding(batch.token_ids)
    embedded.requires_grad_()
    with torch.enable_grad():
        hidden = _classic_hidden(model, embedded, batch.lengths)
        token_logits = hidden @ model.decoder.weight.T
        if model.scorer is None:
            alpha = model.attention(EncodedState(hidden, batch.content_mask, token_logits))
        else:
            scores = _classic_scores(model, hidden)
            alpha = scaled_gradient(masked_softmax(scores, batch.content_mask), 0.5)
            token_logits = scaled_gradient(token_logits, 0.5)
        logits = model.decode(EncodedState(hidden, batch.content_mask, token_logits), alpha)
    return _relevance(embedded, logits, target)


def attnlrp(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """AttnLRP relevance of each token's word embedding for the ``target`` [batch] class's
    logit (module docstring). Scores [batch, tokens], signed (positive: supports the class).

    A classic model in uniform attention mode is explained with its constant attention (the
    context vector is then linear); an HFClassifier's ``attention_mode`` is not applied, as in
    gradient rollout: the wrapped model's own attention is explained."""
    if isinstance(model, HFClassifier):
        return MethodOutput(_transformer(model, batch, target))
    if isinstance(model, PairModel):
        raise InvalidInputError(
            "attnlrp has no rules for a pair model's question encoder and tanh decoder: pick "
            "another method (e.g. input-x-gradient, integrated-gradients, leave-one-out)"
        )
    return MethodOutput(_classic(model, batch, target))

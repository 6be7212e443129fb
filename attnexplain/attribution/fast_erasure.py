"""Erasure on classic models that reuses what a deletion does not change.

Deleting a token (the sequence closes up, as in :func:`attnexplain.attribution.erasure.erase`)
changes only some hidden states; every classic attention scorer and the decoder read one
hidden state at a time, so the output of a variant is a masked softmax over per-token scores
and per-token logits, and only the changed tokens need new ones:

- ``average``: tokens are encoded independently, so no state changes. Any deletion (one token,
  or ERASER's top-k sets) only drops rows from the softmax and the weighted sum.
- ``cnn``: after deleting token t, only the new positions t - r .. t + r - 1 see the splice
  (r = the widest kernel's half-width, 3): 2r states are recomputed, each a sum of kernel
  taps' products with single tokens, made once per batch.
- ``lstm``: the forward states before t and the backward states after t are unchanged. The
  input projections of every token are made once per batch and one pass per direction keeps
  every (h, c); each deletion then re-runs the forward LSTM from t's left neighbour to the end
  and the backward LSTM from t's right neighbour to the start, all deletions of the batch in
  lock-step (longest first, the active ones a prefix that shrinks), each step reading out the
  new half against the precomputed other half.

The results equal deleting and re-running the model up to float rounding (tests check 1e-6).
The CNN and BiLSTM paths take single-token deletions and serve leave-one-out, where every
token of an instance is deleted in turn (their per-batch work pays off over that many
variants); other deletions of those encoders go through the generic re-run. :func:`blocker`
says when none of this applies (hooks on the model, a fixed attention, a non-standard
module), and callers then take the generic path.
"""

from __future__ import annotations

import torch
from torch import nn

from attnexplain.data.batching import Batch
from attnexplain.models.classic import (
    AdditiveAttention,
    AverageEncoder,
    ClassicModel,
    CNNEncoder,
    DotAttention,
    LSTMEncoder,
    masked_softmax,
    reverse_within_length,
)

_ENCODERS = (AverageEncoder, CNNEncoder, LSTMEncoder)
_SCORERS = (AdditiveAttention, DotAttention)


def blocker(model: object) -> str | None:
    """Why the fast paths cannot run on ``model`` (a sentence), or None when they can.

    They need a :class:`ClassicModel` with learned or uniform attention, the package's own
    encoder and scorer classes, a zero PAD embedding, and no hooks anywhere in the model (an
    intervention on ``attention_hook`` must see every variant's attention, which only the
    generic re-run produces).
    """
    if not isinstance(model, ClassicModel):
        return f"{type(model).__name__} is not a ClassicModel"
    if model.config.attention_mode not in ("learned", "uniform"):
        return f"attention mode {model.config.attention_mode!r} has no attention of its own"
    if type(model.encoder) not in _ENCODERS:
        return f"encoder {type(model.encoder).__name__} is not one of the package's encoders"
    if model.scorer is not None and type(model.scorer) not in _SCORERS:
        return f"scorer {type(model.scorer).__name__} is not one of the package's scorers"
    hooked = [
        name or "model"
        for name, module in model.named_modules()
        if module._forward_hooks or module._forward_pre_hooks
    ]
    if hooked or nn.modules.module._global_forward_hooks:
        where = ", ".join(hooked) or "global"
        return f"hooks are attached ({where}): a capture or intervention must see every variant"
    pad = model.embedding.padding_idx
    if pad is None or model.embedding.weight[pad].any():
        return "the PAD embedding is not zero, so padding is not the same as nothing"
    if isinstance(model.encoder, CNNEncoder) and any(
        conv.stride != (1,) or conv.dilation != (1,) or conv.padding != (conv.kernel_size[0] // 2,)
        for conv in model.encoder.convs
    ):
        return "a convolution is not stride 1, dilation 1, 'same' padding"
    return None


def erases_any_set_fast(model: object) -> bool:
    """Whether :func:`kept_probabilities` has a fast path for arbitrary deletions (the
    average encoder only: its states do not depend on their neighbours)."""
    return blocker(model) is None and isinstance(model.encoder, AverageEncoder)


def _token_outputs(model: ClassicModel, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention scores [..., tokens] (uniform attention: zeros) and token logits
    [..., tokens, C] of hidden states [..., tokens, H]."""
    scores = hidden.new_zeros(hidden.shape[:-1]) if model.scorer is None else model.scorer(hidden)
    return scores, hidden @ model.decoder.weight.T


def _distribution(
    model: ClassicModel, scores: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Class probabilities [variants, classes] of the attention-weighted token logits.

    scores, mask: [variants, tokens]; logits: [variants, tokens, C]. A variant with no
    content left gets NaN, as the model's own masked softmax gives it.
    """
    alpha = masked_softmax(scores, mask)
    return model.probabilities(torch.einsum("vt,vtc->vc", alpha, logits) + model.decoder.bias)


@torch.no_grad()
def kept_probabilities(
    model: ClassicModel, batch: Batch, rows: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Class probabilities [variants, classes] of the variants :func:`~attnexplain.attribution.
    erasure.erase` describes (row ``rows[i]`` with the content tokens where ``keep[i]`` is
    False deleted), for a model with the average encoder: no re-encoding at all.

    rows: [variants] long; keep: [variants, tokens] bool.
    """
    if not isinstance(model.encoder, AverageEncoder):
        raise TypeError("kept_probabilities needs the average encoder")
    hidden = model.encoder(model.embedding(batch.token_ids), batch.lengths)
    scores, logits = _token_outputs(model, hidden)
    mask = batch.content_mask[rows] & keep
    return _distribution(model, scores[rows], logits[rows], mask)


@torch.no_grad()
def deletion_probabilities(
    model: ClassicModel, batch: Batch, rows: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Class probabilities [variants, classes] with content token ``positions[i]`` of row
    ``rows[i]`` deleted, one token per variant.

    rows, positions: [variants] long, each position a content token of its row. Which states
    are recomputed depends on the encoder (module docstring).
    """
    if isinstance(model.encoder, AverageEncoder):
        keep = torch.ones(len(rows), batch.token_ids.shape[1], dtype=torch.bool)
        keep[torch.arange(len(rows)), positions] = False
        return kept_probabilities(model, batch, rows, keep)
    if isinstance(model.encoder, CNNEncoder):
        return _cnn_deletions(model, batch, rows, positions)
    return _lstm_deletions(model, batch, rows, positions)


def _cnn_deletions(
    model: ClassicModel, batch: Batch, rows: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """:func:`deletion_probabilities` for the CNN: each variant's softmax runs over the
    unchanged old states and the 2r recomputed ones (the order of positions does not matter
    to attention)."""
    encoder: CNNEncoder = model.encoder
    reach = max(conv.kernel_size[0] // 2 for conv in encoder.convs)
    width = batch.token_ids.shape[1]
    embedded = model.embedding(batch.token_ids)
    scores, logits = _token_outputs(model, encoder(embedded, batch.lengths))
    content = batch.content_mask
    # Old positions t - r .. t + r read the deleted token: their states are replaced.
    old = torch.arange(width)
    deleted = positions.unsqueeze(1)
    kept_old = content[rows] & ((old < deleted - reach) | (old > deleted + reach))
    # The replacements: new positions t - r .. t + r - 1, from new positions t - 2r .. t + 2r - 1
    # (zero outside the shortened sequence, like the PAD embedding and the convolution padding).
    new_length = (batch.lengths[rows] - 1).unsqueeze(1)
    window = deleted + torch.arange(-2 * reach, 2 * reach)
    source = window + (window >= deleted).long()  # new position -> old position
    inside = (window >= 0) & (window < new_length)
    hidden = _spliced_states(encoder, embedded, rows, source.clamp(0, width - 1), inside, reach)
    changed_source = source[:, reach : 3 * reach]
    valid = inside[:, reach : 3 * reach]
    hidden = hidden * valid.unsqueeze(-1)
    changed_content = content[rows.unsqueeze(1), changed_source.clamp(0, width - 1)] & valid
    new_scores, new_logits = _token_outputs(model, hidden)
    return _distribution(
        model,
        torch.cat([scores[rows], new_scores], 1),
        torch.cat([logits[rows], new_logits], 1),
        torch.cat([kept_old, changed_content], 1),
    )


def _spliced_states(
    encoder: CNNEncoder,
    embedded: torch.Tensor,
    rows: torch.Tensor,
    source: torch.Tensor,
    inside: torch.Tensor,
    reach: int,
) -> torch.Tensor:
    """The CNN's states [variants, 2r, H] at the middle 2r positions of 4r-token windows of
    the shortened sequences.

    embedded: [batch, tokens, E]; rows: [variants]; source: [variants, 4r] the old position
    of each window token, inside: [variants, 4r] whether it exists (else zero input).
    A convolution is a sum over its taps, so each tap's product with every token (W_j e_p,
    [batch, tokens, k, channels]) is made once per batch, and a state near a deletion is a
    sum of k of them: no matrix product per variant.
    """
    count, width, _ = embedded.shape
    outputs = []
    for conv in encoder.convs:
        taps = conv.kernel_size[0]
        weight = conv.weight.permute(1, 2, 0).reshape(embedded.shape[-1], -1)  # [E, k * C]
        products = (embedded.reshape(count * width, -1) @ weight).reshape(-1, conv.out_channels)
        zero = len(products)  # a zero row, read for window tokens that do not exist
        products = torch.cat([products, products.new_zeros(1, products.shape[1])])
        # output m of the middle reads window token reach + m + j - k // 2 through tap j
        tap = torch.arange(taps)
        window = reach + torch.arange(2 * reach).unsqueeze(1) + tap - taps // 2  # [2r, k]
        index = (rows[:, None, None] * width + source[:, window]) * taps + tap
        index = index.masked_fill(~inside[:, window], zero).reshape(-1)
        summed = products.index_select(0, index).reshape(len(rows), 2 * reach, taps, -1)
        outputs.append(torch.relu(summed.sum(2) + conv.bias))
    return torch.cat(outputs, dim=-1)


class _HalfReadout:
    """Attention scores and token logits of BiLSTM states [f; b] when one half is new and the
    other precomputed: one matrix product per step instead of the scorer and decoder on the
    whole state.

    For the additive scorer v^T tanh(P [f; b] + p), the dot scorer (w^T [f; b]) / sqrt(2H) and
    the decoder W [f; b], every first map is linear, so each splits into the halves' parts.
    """

    def __init__(self, model: ClassicModel, half: int) -> None:
        size = model.encoder.output_size // 2
        parts = slice(0, size) if half == 0 else slice(size, 2 * size)
        scorer = model.scorer
        maps, bias = [], []
        if isinstance(scorer, AdditiveAttention):
            maps.append(scorer.projection.weight)
            bias.append(scorer.projection.bias)
        elif isinstance(scorer, DotAttention):
            maps.append(scorer.vector.weight)
            bias.append(scorer.vector.weight.new_zeros(1))
        self.scored = sum(m.shape[0] for m in maps)
        self.width = 1 + model.decoder.weight.shape[0]  # score, then one logit per output
        maps.append(model.decoder.weight)
        bias.append(model.decoder.weight.new_zeros(model.decoder.weight.shape[0]))
        whole = torch.cat(maps)
        rest = slice(size, 2 * size) if half == 0 else slice(0, size)
        self.new = whole[:, parts].T.contiguous()  # [H, S + C]
        self.other = whole[:, rest].T
        self.bias = torch.cat(bias)
        self.scorer = scorer

    def precompute(self, other_half: torch.Tensor) -> torch.Tensor:
        """The other half's part (with the biases) [..., S + C] of states [..., H]."""
        return other_half @ self.other + self.bias

    def __call__(self, new_half: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """[rows, 1 + C]: score, then token logits."""
        both = torch.addmm(other, new_half, self.new)
        pre, logits = both[:, : self.scored], both[:, self.scored :]
        if isinstance(self.scorer, AdditiveAttention):
            score = _tanh(pre) @ self.scorer.vector.weight.T
        elif isinstance(self.scorer, DotAttention):
            score = pre * self.scorer.scale
        else:
            score = logits.new_zeros(len(logits), 1)
        return torch.cat([score, logits], 1)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1: on CPU torch.tanh is about 10x slower than sigmoid (no
    vectorised kernel; measured on [1200, 128]); the two agree to 2e-7."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def _cell(gates: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from pre-activations [rows, 4H] in PyTorch's gate order i, f, g, o, the
    g block doubled (:func:`_lstm_weights`) so that one sigmoid serves all four gates."""
    i, f, g, o = torch.sigmoid(gates).chunk(4, 1)
    cell = i * (2 * g - 1)
    if c is not None:
        cell = cell + f * c
    return o * _tanh(cell), cell


def _lstm_weights(rnn: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input map [4H, E], recurrent map transposed [H, 4H] and bias [4H] of a one-layer LSTM,
    the g block doubled for :func:`_cell` (tanh(g) = 2 sigmoid(2g) - 1)."""
    size = rnn.hidden_size
    scale = torch.ones(4 * size, 1)
    scale[2 * size : 3 * size] = 2.0
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0) * scale[:, 0]
    return rnn.weight_ih_l0 * scale, (rnn.weight_hh_l0 * scale).T.contiguous(), bias


def _all_states(
    projected: torch.Tensor, recurrent: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, c) [batch, tokens, H] after every step of a one-way LSTM over input projections
    [batch, tokens, 4H], from zero states."""
    hs, cs = [], []
    h, c = _cell(projected[:, 0], None)
    hs.append(h)
    cs.append(c)
    for step in range(1, projected.shape[1]):
        h, c = _cell(torch.addmm(projected[:, step], h, recurrent), c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1)


def _rerun(
    projected: torch.Tensor,
    recurrent: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    start: torch.Tensor,
    direction: int,
    steps: torch.Tensor,
    readout: _HalfReadout,
    other: torch.Tensor,
) -> torch.Tensor:
    """Re-run one direction for many deletions in lock-step.

    projected: [batch * tokens, 4H] input projections; other: [batch * tokens, S + C] the other
    half's readout part; h, c: [variants, H] initial states; start: [variants] flat index of
    the first input; direction: +1 or -1 along the sequence; steps: [variants] how many inputs.
    Returns [max steps, variants, 1 + C]: step s of variant i (score, then logits) at [s, i];
    zero past a variant's end.
    """
    order = steps.argsort(descending=True, stable=True)
    h, c, start = h[order], c[order], start[order]
    longest = int(steps.max()) if len(steps) else 0
    # how many variants (a prefix of the longest-first order) are still running at each step
    active = torch.searchsorted(-steps[order], -torch.arange(longest))
    out = other.new_zeros(longest, len(order), readout.width)
    for step, count in enumerate(active.tolist()):
        index = start[:count] + direction * step
        gates = torch.addmm(projected.index_select(0, index), h[:count], recurrent)
        h, c = _cell(gates, c[:count])
        out[step, :count] = readout(h, other.index_select(0, index))
    result = torch.empty_like(out)
    result[:, order] = out
    return result


def _lstm_deletions(
    model: ClassicModel, batch: Batch, rows: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """:func:`deletion_probabilities` for the BiLSTM (module docstring). Each variant's
    softmax runs over its forward re-run's steps (new positions t ..) and its backward
    re-run's steps (new positions .. t - 1), each paired with the other direction's old state.
    """
    encoder: LSTMEncoder = model.encoder
    count, width = batch.token_ids.shape
    lengths = batch.lengths
    embedded = model.embedding(batch.token_ids)
    (f_in, f_rec, f_bias), (b_in, b_rec, b_bias) = (
        _lstm_weights(encoder.forward_rnn),
        _lstm_weights(encoder.backward_rnn),
    )
    forward_projected = embedded @ f_in.T + f_bias  # [batch, tokens, 4H], once per token
    backward_projected = embedded @ b_in.T + b_bias
    forward_h, forward_c = _all_states(forward_projected, f_rec)
    reverse = reverse_within_length(lengths, width).unsqueeze(-1)
    backward_h, backward_c = (
        states.gather(1, reverse.expand_as(states))
        for states in _all_states(
            backward_projected.gather(1, reverse.expand_as(backward_projected)), b_rec
        )
    )
    size = forward_h.shape[-1]
    forward_readout, backward_readout = _HalfReadout(model, 0), _HalfReadout(model, 1)
    # Forward re-run: from the state after t - 1 (zero at the start) over t + 1 .. L - 1, each
    # step read out against the old backward state at the same old position.
    flat = rows * width + positions
    zero = forward_h.new_zeros(len(rows), size)
    starts_at_zero = (positions == 0).unsqueeze(1)
    before = (flat - 1).clamp_min(0)
    h0 = torch.where(starts_at_zero, zero, forward_h.reshape(-1, size)[before])
    c0 = torch.where(starts_at_zero, zero, forward_c.reshape(-1, size)[before])
    forward_part = _rerun(
        forward_projected.reshape(count * width, -1),
        f_rec,
        h0,
        c0,
        flat + 1,
        1,
        lengths[rows] - 1 - positions,
        forward_readout,
        forward_readout.precompute(backward_h).reshape(count * width, -1),
    )
    # Backward re-run: from the backward state at t + 1 (zero at the end) over t - 1 .. 0.
    ends_at_zero = (positions + 1 >= lengths[rows]).unsqueeze(1)
    after = (flat + 1).clamp_max(count * width - 1)
    h0 = torch.where(ends_at_zero, zero, backward_h.reshape(-1, size)[after])
    c0 = torch.where(ends_at_zero, zero, backward_c.reshape(-1, size)[after])
    backward_part = _rerun(
        backward_projected.reshape(count * width, -1),
        b_rec,
        h0,
        c0,
        flat - 1,
        -1,
        positions,
        backward_readout,
        backward_readout.precompute(forward_h).reshape(count * width, -1),
    )
    # Which re-run steps are content tokens of the shortened sequence.
    content = batch.content_mask.reshape(-1)
    last = count * width - 1
    forward_steps = torch.arange(len(forward_part)).unsqueeze(1)
    backward_steps = torch.arange(len(backward_part)).unsqueeze(1)
    forward_mask = content[(flat + 1 + forward_steps).clamp_max(last)] & (
        forward_steps < (lengths[rows] - 1 - positions)
    )
    backward_mask = content[(flat - 1 - backward_steps).clamp_min(0)] & (backward_steps < positions)
    both = torch.cat([forward_part, backward_part]).transpose(0, 1)  # [variants, steps, 1 + C]
    mask = torch.cat([forward_mask, backward_mask]).T
    return _distribution(model, both[..., 0], both[..., 1:], mask)

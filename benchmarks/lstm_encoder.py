"""BiLSTM encoder: our padded two-LSTM form vs a packed ``nn.LSTM(bidirectional=True)``.

Both give the same outputs at every real position (tests/test_classic_models.py checks it);
this prints how much faster the padded form trains on IMDB-like batches, measured side by side
in one run. Usage: ``python benchmarks/lstm_encoder.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnexplain.models.classic import LSTMEncoder


class PackedBiLSTM(nn.Module):
    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(embed_dim, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(
            self.rnn(packed)[0], batch_first=True, total_length=embedded.shape[1]
        )
        return hidden


def seconds_per_step(
    encoder: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, repeats: int
) -> float:
    """Median wall time of one forward + backward pass."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        encoder(inputs, lengths).sum().backward()
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[repeats // 2]  # the first pass warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{'batch x tokens':<16}{'packed s':>10}{'padded s':>10}{'speed-up':>10}")
    for batch, width, spread in ((32, 40, 10), (32, 200, 15), (32, 400, 20)):
        inputs = torch.randn(batch, width, 50, requires_grad=True)
        lengths = torch.randint(width - spread, width + 1, (batch,))
        lengths[0] = width
        packed = seconds_per_step(PackedBiLSTM(50, 128), inputs, lengths, args.repeats)
        padded = seconds_per_step(LSTMEncoder(50, 128), inputs, lengths, args.repeats)
        print(f"{batch} x {width:<11}{packed:>10.3f}{padded:>10.3f}{packed / padded:>9.1f}x")


if __name__ == "__main__":
    main()

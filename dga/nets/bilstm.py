"""BiLSTM over one-hot DNA -> per-base class logits (CDS 0, intron 1, UTR 2, intergenic 3)."""

from __future__ import annotations

import torch
from torch import nn

from dga.labels import N_CLASSES


class BiLSTMTagger(nn.Module):
    """Bidirectional LSTM tagger.

    Input x: float [batch, length, 4] one-hot (N = all zeros); length must be divisible by
    bases_per_step. Output: float [batch, length, 4] class logits.
    With bases_per_step = k the LSTM reads k bases per timestep (4k features) and the head emits
    k bases' logits per timestep, as Helixer does: k-fold fewer recurrent steps at equal cost per step.
    """

    def __init__(self, input_size: int = 4, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 bases_per_step: int = 1):
        super().__init__()
        self.input_size, self.bases_per_step = input_size, bases_per_step
        self.n_outputs = N_CLASSES
        self.lstm = nn.LSTM(input_size * bases_per_step, hidden_size, num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(2 * hidden_size, self.n_outputs * bases_per_step)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths` (bases per row, optional): rows shorter than the batch are read as sequences of
        that length (packed), so padding after a short sequence never reaches its backward pass."""
        b, length, channels = x.shape
        if channels < self.input_size:  # ACGT one-hot into the seed's wider IUPAC input: extra channels zero
            x = nn.functional.pad(x, (0, self.input_size - channels))
        k = self.bases_per_step
        steps = x.reshape(b, length // k, k * self.input_size)
        if lengths is None or bool((lengths >= length).all()):
            out, _ = self.lstm(steps)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(steps, ((lengths + k - 1) // k).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=length // k)
        return self.head(out).reshape(b, length, self.n_outputs)

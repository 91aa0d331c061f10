"""Sliding-window inference over whole regions, stitched by keeping window centres.

Windows overlap by 2 * margin; each base is decided by the window in which it lies furthest from
an edge (within `margin` of the centre part), so window edges never decide a base except at the
two ends of a region. Used by validation (sharded across DDP ranks) and by prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dga.data.windows import ONEHOT


@dataclass(frozen=True)
class Tile:
    start: int  # window start, relative to the region
    keep_from: int  # kept part [keep_from, keep_to), relative to the region
    keep_to: int


def tiles(length: int, window: int, margin: int) -> list[Tile]:
    """Windows covering [0, length) whose kept parts partition it exactly."""
    if length <= window:
        return [Tile(0, 0, length)]
    step = window - 2 * margin
    starts = list(range(0, length - window + 1, step))
    if starts[-1] + window < length:
        starts.append(length - window)
    out, prev_end = [], 0
    for i, s in enumerate(starts):
        end = length if i == len(starts) - 1 else s + window - margin
        out.append(Tile(s, prev_end, end))
        prev_end = end
    return out


def iter_region_batches(codes: np.ndarray, window: int, margin: int, batch_size: int,
                        shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[np.ndarray, list[Tile]]]:
    """Batches of window codes (uint8 [B, window], N-padded when the region is shorter) with their tiles.

    shard=(rank, world) takes every world-th tile, so ranks split the work without overlap.
    """
    all_tiles = tiles(len(codes), window, margin)[shard[0]::shard[1]]
    for b in range(0, len(all_tiles), batch_size):
        batch = all_tiles[b: b + batch_size]
        x = np.full((len(batch), window), 4, dtype=np.uint8)
        for j, t in enumerate(batch):
            chunk = codes[t.start: t.start + window]
            x[j, : len(chunk)] = chunk
        yield x, batch


def iter_pieces_batches(pieces: list[np.ndarray], window: int, margin: int, batch_size: int,
                        multiple: int = 1) -> Iterator[tuple[np.ndarray, list[tuple[int, Tile]]]]:
    """Like `iter_region_batches` over several sequences at once: a batch holds windows of different
    pieces ((piece index, tile) per row), so thousands of short contigs share batches instead of each
    being a padded batch of one. A batch of pieces shorter than the window is only as wide as its
    longest piece (rounded up to `multiple`, the model's bases per step), not padded to the window;
    each row's length goes with it (`row_lengths`), so the model reads a short piece as exactly itself."""
    batch: list[tuple[int, Tile]] = []

    def emit():
        longest = max(min(window, len(pieces[i]) - t.start) for i, t in batch)
        width = window if longest >= window else -(-longest // multiple) * multiple
        x = np.full((len(batch), width), 4, dtype=np.uint8)
        for j, (i, t) in enumerate(batch):
            chunk = pieces[i][t.start: t.start + window]
            x[j, : len(chunk)] = chunk
        return x, list(batch)

    for i, codes in enumerate(pieces):
        for t in tiles(len(codes), window, margin):
            batch.append((i, t))
            if len(batch) == batch_size:
                yield emit()
                batch.clear()
    if batch:
        yield emit()


@torch.no_grad()
def forward_codes(model: torch.nn.Module, codes: np.ndarray, device: torch.device, bf16: bool = False,
                  lengths: np.ndarray | None = None) -> torch.Tensor:
    """Model logits (float32 [B, W, C]) for a batch of uint8 codes (rows of `lengths` bases, if given)."""
    x = torch.from_numpy(ONEHOT[codes]).to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
        if lengths is None:
            return model(x).float()
        return model(x, torch.from_numpy(np.asarray(lengths, dtype=np.int64))).float()

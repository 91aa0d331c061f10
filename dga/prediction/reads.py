"""The network's reads of whole sequences: class probabilities for every base, forward and reverse complement.

Every sequence is read in overlapping windows (centre-stitched, `dga.nets.infer`) on the forward
strand and on the reverse complement; short pieces share batches. Probabilities are float16, in
memory for short reads and memory-mapped for long ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dga.data.windows import COMPLEMENT
from dga.decoding.hmm import Progress
from dga.files import make_dir
from dga.labels import N_CLASSES
from dga.nets.infer import forward_codes, iter_pieces_batches
from dga.prediction.model import LoadedModel

IN_MEMORY = 1 << 20  # reads shorter than this keep their probabilities in memory, longer ones memory-mapped


def strand_probs(model: torch.nn.Module, codes: np.ndarray, window: int, margin: int, batch_size: int,
                 device: torch.device, bf16: bool, out: np.ndarray, progress: Progress = None) -> None:
    """Softmax class probabilities for every base of `codes` (one read), written into `out` [L, 4]."""
    pieces_probs(model, [codes], window, margin, batch_size, device, bf16, [out], progress)


def pieces_probs(model: torch.nn.Module, pieces: list[np.ndarray], window: int, margin: int, batch_size: int,
                 device: torch.device, bf16: bool, outs: list[np.ndarray], progress: Progress = None) -> None:
    """`strand_probs` for several reads at once, their windows sharing batches (many short contigs
    cost a few full batches, not one padded batch each); results are the same as one by one in
    float32 (the int8 network moves logits by ~0.01 with its call company: one activation scale
    per ONNX Runtime call, `dga.nets.onnx_int8.BASES_PER_CALL`)."""
    multiple = getattr(model, "bases_per_step", 1)
    for x, batch in iter_pieces_batches(pieces, window, margin, batch_size, multiple):
        lengths = np.array([min(x.shape[1], len(pieces[i]) - t.start) for i, t in batch])
        probs = torch.softmax(forward_codes(model, x, device, bf16, lengths)[..., :N_CLASSES], dim=-1).cpu().numpy()
        for j, (i, t) in enumerate(batch):
            outs[i][t.keep_from: t.keep_to] = probs[j, t.keep_from - t.start: t.keep_to - t.start]
        if progress is not None:
            progress(sum(t.keep_to - t.keep_from for _, t in batch))


def _prob_arrays(n: int, workdir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(forward, reverse) probability arrays [n, 4] float16: in memory when small or when there is
    no scratch folder, else memory-mapped files named by the process (never by a sequence id)."""
    if workdir is None or n < IN_MEMORY:
        return np.zeros((n, N_CLASSES), np.float16), np.zeros((n, N_CLASSES), np.float16)
    tmp = make_dir(workdir, "dga-predict-")
    return (np.lib.format.open_memmap(tmp / "fwd.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES)),
            np.lib.format.open_memmap(tmp / "rev.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES)))


def read_both_strands(lm: LoadedModel, pieces: list[np.ndarray], *, batch_size: int, device: torch.device,
                      workdir: Path | None = None, progress: Progress = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(forward read, reverse-complement read) probabilities of each piece, the pieces batched together."""
    cfg = lm.config
    window, margin = lm.window, lm.margin
    arrays = [_prob_arrays(len(c), workdir) for c in pieces]
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar lengths share a batch: less padding
    pieces_probs(lm.model, [pieces[i] for i in order], window, margin, batch_size, device, cfg.bf16,
                 [arrays[i][0] for i in order], progress)
    pieces_probs(lm.model, [COMPLEMENT[pieces[i][::-1]] for i in order], window, margin, batch_size, device,
                 cfg.bf16, [arrays[i][1] for i in order], progress)
    return arrays

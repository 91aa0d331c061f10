"""What a smaller (distilled) network would save on the CPU: the int8 ONNX Runtime forward passes of
BiLSTM taggers of several shapes over the same 1 Mb of A. thaliana chr1, both strands, with the
prediction tiling (20 kb windows, 1 kb margins), in one run.

    python benchmarks/bench_network_shapes.py [--start 5000000] [--bases 1000000]

The weights are untrained (seeded): the time of an LSTM does not depend on its weights, and no
accuracy is claimed. zoo:athaliana is the first shape (hidden 256 x 3, 10 bases per step).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

from dga.data.fasta import read_fasta
from dga.data.sources import resolve
from dga.data.windows import COMPLEMENT
from dga.nets.bilstm import BiLSTMTagger
from dga.nets.onnx_int8 import int8_tagger
from dga.prediction.reads import pieces_probs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_features import cpu_line  # noqa: E402

SHAPES = [(256, 3), (192, 3), (192, 2), (128, 3), (128, 2)]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=int, default=5_000_000)
    ap.add_argument("--bases", type=int, default=1_000_000)
    args = ap.parse_args()
    torch.manual_seed(0)
    (rec, *_) = read_fasta(resolve("athaliana-chr1")[0])
    codes = rec.codes[args.start: args.start + args.bases]
    mb = len(codes) / 1e6
    print(f"CPU: {cpu_line()}")
    print("| shape (10 bases/step) | parameters | CPU s / Mb, both strands | wall s / Mb | vs 256 x 3 |")
    print("|---|---|---|---|---|")
    first = 0.0
    with tempfile.TemporaryDirectory(prefix="dga-shapes-") as cache:
        os.environ["DGA_CACHE_DIR"] = cache  # never the user's cache
        for hidden, layers in SHAPES:
            model = BiLSTMTagger(4, hidden, layers, 0.0, 10).eval()
            tagger = int8_tagger(model, 20_000, torch.get_num_threads())
            outs = [np.zeros((len(codes), 4), np.float16) for _ in range(2)]
            c0, w0 = cpu_seconds(), time.perf_counter()
            pieces_probs(tagger, [codes, COMPLEMENT[codes[::-1]]], 20_000, 1_000, 64, torch.device("cpu"), False,
                         outs)
            cpu, wall = (cpu_seconds() - c0) / mb, (time.perf_counter() - w0) / mb
            first = first or cpu
            params = sum(p.numel() for p in model.parameters())
            print(f"| {hidden} x {layers} | {params:,} | {cpu:.1f} | {wall:.1f} | {first / cpu:.2f}x |", flush=True)

if __name__ == "__main__":
    main()

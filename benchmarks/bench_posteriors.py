"""What the gene posteriors cost: the network's two reads, the Viterbi pass and the forward-backward
pass over the same stretch, timed side by side in one run (CPU seconds of this process).

    python benchmarks/bench_posteriors.py [--model zoo:athaliana] [--dataset athaliana-chr1]
                                          [--region NC_003070.9:27384905-28384904] [--repeats 3]

The region defaults to the first 1 Mb of the dataset's test region (only timed: nothing is chosen
on it). Prints the CPU it ran on, each stage's best of `--repeats`, forward-backward against the
Viterbi pass, and the whole prediction (reads + Viterbi + posteriors) against the same without
posteriors. Writes benchmarks/results/bench_posteriors.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cpu_features import cpu_line


def cpu_seconds(fn, repeats: int) -> tuple[float, object]:
    """Best CPU time of `repeats` calls (after one warm-up call that compiles), and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:athaliana")
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--region", help="SEQID:START-END (1-based); default: 1 Mb of the test region")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    import torch
    from confidence_report import test_regions

    import dga.bundle as bundle_io
    from dga.data.fasta import iter_fasta
    from dga.decoding.pieces import hmm_decode
    from dga.decoding.reads import SequenceReads
    from dga.decoding.registry import tables_for
    from dga.evaluation.evaluate import parse_region
    from dga.prediction.model import loaded
    from dga.prediction.reads import read_both_strands

    fasta, _, lengths, tests = test_regions(args.dataset)
    if args.region:
        span = parse_region(args.region, lengths)
        seqid, start, end = span.seqid, span.start, span.end
    else:
        seqid, start = tests[0].seqid, tests[0].start
        end = min(tests[0].end, start + 1_000_000)
    codes = next(r for r in iter_fasta(fasta) if r.id == seqid).codes[start:end]
    lm = loaded(bundle_io.load(args.model))
    settings = lm.decoder_settings
    print(f"{cpu_line()}\n{args.model} on {seqid}:{start + 1}-{end} ({len(codes):,} bases), "
          f"{torch.get_num_threads()} torch threads", flush=True)
    t_net, (((fwd, rev),)) = cpu_seconds(lambda: read_both_strands(lm, [codes], batch_size=32,
                                                                   device=torch.device("cpu")), 1)
    reads = SequenceReads(seqid, codes, fwd, rev[::-1], lm.config.labels == "stranded")
    tables = tables_for(codes, settings)

    def decode(posteriors: bool):
        return hmm_decode(reads.plus(), reads.minus(), codes, seqid, params=settings.hmm, signals=settings.signals,
                          tables=tables, posteriors=posteriors)

    t_vit, genes = cpu_seconds(lambda: decode(False), args.repeats)
    t_both, _ = cpu_seconds(lambda: decode(True), args.repeats)
    t_fb = t_both - t_vit
    row = {"cpu": cpu_line(), "model": args.model, "region": f"{seqid}:{start + 1}-{end}", "bases": len(codes),
           "genes": len(genes), "network_cpu_s": round(t_net, 2), "viterbi_cpu_s": round(t_vit, 2),
           "forward_backward_cpu_s": round(t_fb, 2), "fb_over_viterbi": round(t_fb / t_vit, 3),
           "predict_with_over_without": round((t_net + t_both) / (t_net + t_vit), 3),
           "temperature": settings.hmm.temperature}
    print(f"network reads {t_net:.1f} s, Viterbi {t_vit:.1f} s, forward-backward {t_fb:.1f} s "
          f"({row['fb_over_viterbi']:.2f}x Viterbi); prediction with posteriors "
          f"{row['predict_with_over_without']:.2f}x without (CPU seconds, {len(genes)} genes)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_posteriors.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()

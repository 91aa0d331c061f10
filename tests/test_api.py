"""DGA from Python: the README's "From Python" example runs verbatim, and the API is the CLI's own code."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs_verbatim(tmp_path):
    code = readme_python_example()
    assert "import dga.api" in code
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "genes" in proc.stdout and "exon F1" in proc.stdout
    assert (tmp_path / "chr4-start.gff3").read_text().startswith("##gff-version 3")


def test_importing_the_api_stays_light():
    code = "import sys, dga.api; assert not {'torch', 'mlflow', 'optuna'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_annotate_equals_dga_predict(tmp_path):
    """The API's GFF3 is byte for byte what `dga predict` writes for the same input."""
    import dga.api as dga
    from dga.prediction.command import run_predict

    fa = tmp_path / "x.fa"
    seq = "".join("ACGT"[(i * 7 + i // 13) % 4] for i in range(6000))
    fa.write_text(f">x\n{seq}\n")
    run_predict(str(fa), "zoo:dmelanogaster", str(tmp_path / "cli.gff3"))
    dga.annotate("zoo:dmelanogaster", str(fa), out=tmp_path / "api.gff3")
    assert (tmp_path / "api.gff3").read_text() == (tmp_path / "cli.gff3").read_text()
    fwd, rev = dga.probabilities("zoo:dmelanogaster", seq)
    assert fwd.shape == rev.shape == (6000, 4) and abs(float(fwd.sum(axis=1).mean()) - 1) < 1e-2

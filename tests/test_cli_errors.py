"""Config and input mistakes reach the user as one ``error: ...`` line on stderr, with exit code 2 (an argument) or 1
(data), and no traceback unless ``SRACL_DEBUG=1``."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from jsonargparse import ArgumentError

from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.training.cli import SRACLCLI
from sracl_lightning.training.cli_errors import concise_parse_error
from tests.conftest import REPO_ROOT


def run_script(name: str, args: list[str], capsys, monkeypatch) -> tuple[int, list[str]]:
    """Run ``<name>.py``'s ``__main__`` in this process; its exit code and the non-log lines of its stderr."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    monkeypatch.delenv("SRACL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / f"{name}.py"), run_name="__main__")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("[data]")]
    return exit_info.value.code, err


def data_args(dataset: Path | str, tmp_path: Path) -> list[str]:
    return ["--config", str(REPO_ROOT / "configs" / "debug.yaml"), "--data.dataset", str(dataset),
            "--data.data_root", str(tmp_path / "processed"), "--trainer.default_root_dir", str(tmp_path / "runs"),
            "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--trainer.fast_dev_run", "true"]


def write_inter(path: Path, users: int = 4, items: int = 6) -> Path:
    """A RecBole ``.inter`` file: every user rates every item, in order."""
    rows = [f"u{u}\ti{i}\t{i}" for u in range(users) for i in range(items)]
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    return path


BAD_YAML = "data:\n  batch_size: [1\n"
#: An objective's weight below 0, given on the command line (the headline case).
NEGATIVE_WEIGHT = ["--model.init_args.base_objective", "sracl_lightning.DuoRecContrast",
                   "--model.init_args.base_objective.init_args.weight", "-1"]


@pytest.mark.integration
@pytest.mark.parametrize(("extra", "code", "expected"), [
    (NEGATIVE_WEIGHT, 2, "model.init_args.base_objective: DuoRecContrast.weight must be >= 0"),
    (["--model.init_args.nope", "1"], 2, "model.init_args.nope: unknown argument"),
    (["--data.batch_size", "abc"], 2, "data.batch_size: expected int, got 'abc'"),
    (["--model.init_args.encoder.init_args.hidden_size", "x"], 2,
     "model.init_args.encoder.init_args.hidden_size: expected int, got 'x'"),
    (["--data.source_format", "csv"], 2, "data.source_format: expected one of s3rec, sracl, recbole, amazon, yelp"),
    (["--data.dataset", "MISSING/reviews_Gone_5.json.gz"], 1, "not found: MISSING/reviews_Gone_5.json.gz"),
    (["--data.dataset", "no_such_catalog_name"], 2, "unknown dataset 'no_such_catalog_name'"),
    (["--config", "BAD_YAML"], 2, "bad.yaml:3:1: invalid YAML: expected ',' or ']'"),
    (["--config", "MISSPELT_YAML"], 2, "data.batch_sizee: unknown argument (did you mean data.batch_size?)"),
    (["--trainer.max_epochs", "x"], 2, "trainer.max_epochs: expected int or null, got 'x'"),
], ids=["negative-cl-weight", "unknown-argument", "wrong-type", "nested-wrong-type", "bad-choice", "missing-dataset",
        "unknown-dataset", "bad-yaml", "misspelt-yaml-key", "optional-int"])
def test_train_reports_one_line(extra, code, expected, synthetic_reviews, tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    (tmp_path / "misspelt.yaml").write_text("data:\n  batch_sizee: 3\n")
    replace = {"BAD_YAML": str(tmp_path / "bad.yaml"), "MISSPELT_YAML": str(tmp_path / "misspelt.yaml"),
               "MISSING/reviews_Gone_5.json.gz": str(tmp_path / "reviews_Gone_5.json.gz")}
    extra = [replace.get(arg, arg) for arg in extra]
    expected = expected.replace("MISSING/reviews_Gone_5.json.gz", str(tmp_path / "reviews_Gone_5.json.gz"))
    exit_code, err = run_script("train", [*data_args(synthetic_reviews, tmp_path), *extra], capsys, monkeypatch)
    assert exit_code == code
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], err
    assert not any("Traceback" in line or line.startswith("usage:") for line in err), err


@pytest.mark.integration
def test_train_subprocess_prints_one_line(synthetic_reviews, tmp_path) -> None:
    """The headline case end to end: ``python train.py ... --model.init_args.base_objective.init_args.weight -1``."""
    command = [sys.executable, str(REPO_ROOT / "train.py"), *data_args(synthetic_reviews, tmp_path), *NEGATIVE_WEIGHT]
    env = {k: v for k, v in os.environ.items() if k != "SRACL_DEBUG"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == ("error: got -1.0: model.init_args.base_objective: DuoRecContrast.weight "
                                           "must be >= 0"), run.stderr
    assert "Traceback" not in run.stderr and "Namespace(" not in run.stderr


@pytest.mark.integration
def test_sracl_debug_raises_instead(synthetic_reviews, tmp_path, monkeypatch) -> None:
    """With SRACL_DEBUG=1 the error propagates (full traceback): the constructor's, and the parser's."""
    monkeypatch.setenv("SRACL_DEBUG", "1")
    for extra, error in ([NEGATIVE_WEIGHT, InvalidArgumentError],
                         [["--data.batch_size", "abc"], ArgumentError]):
        monkeypatch.setattr(sys, "argv", ["train.py", *data_args(synthetic_reviews, tmp_path), *extra])
        with pytest.raises(error):
            runpy.run_path(str(REPO_ROOT / "train.py"), run_name="__main__")


@pytest.mark.integration
def test_parse_errors_keep_raising_systemexit_in_python(tmp_path, monkeypatch, capsys) -> None:
    """SRACLCLI(args=...) from Python: a parse error is still SystemExit(2), with the one line on stderr."""
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as exit_info:
        SRACLCLI(args=["--data.max_len", "zero", "--data.data_root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: data.max_len: expected int, got 'zero'"


@pytest.mark.unit
def test_concise_parse_error_of_a_union_and_a_class_path() -> None:
    message = ('Parser key "model":\n\n  - Expected a path but Nope either not accessible or invalid\n'
               '  - Does not validate against any of the Union subtypes\n  Subtypes: [<class \'a.B\'>, '
               '<class \'NoneType\'>]\n  Errors:\n    - Expected a dot import path string: Nope\n')
    assert concise_parse_error(message, ["--model", "Nope"]) == (
        "model: expected a class path (e.g. package.module.Class) or a config file, got 'Nope'")
    assert concise_parse_error("unrecognized arguments: --x 1") == (
        "unrecognized arguments: --x 1 (--help lists the arguments)")


# ------------------------------------------------------------------------------------- source format inference
@pytest.mark.integration
def test_an_inter_file_is_read_as_recbole_without_a_format(tmp_path, monkeypatch) -> None:
    """configs/default.yaml no longer pins source_format: an explicit path's format is inferred from its name."""
    monkeypatch.setattr(sys, "argv", ["train.py"])
    inter = write_inter(tmp_path / "ratings.inter")
    cli = SRACLCLI(args=["--data.dataset", str(inter), "--data.data_root", str(tmp_path / "processed"),
                         "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert cli.datamodule.source_format == "recbole"
    assert cli.datamodule.num_items == 6 and cli.datamodule.num_users == 4


@pytest.mark.integration
def test_the_synthetic_default_still_reads_as_amazon_and_a_given_format_wins(synthetic_reviews, tmp_path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py"])
    args = ["--data.dataset", str(synthetic_reviews), "--data.data_root", str(tmp_path / "processed"),
            "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert SRACLCLI(args=args).datamodule.source_format == "amazon"
    renamed = tmp_path / "ratings.json.gz"
    renamed.write_bytes(write_inter(tmp_path / "x.inter").read_bytes())
    cli = SRACLCLI(args=[*args[:1], str(renamed), *args[2:], "--data.source_format", "recbole"])
    assert cli.datamodule.source_format == "recbole"


# ----------------------------------------------------------------------------------------------- evaluate.py
@pytest.mark.integration
@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated"], ids=["missing", "empty", "truncated"])
def test_evaluate_reports_a_bad_checkpoint_in_one_line(content, tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    if content is not None:
        path.write_bytes(content)
    exit_code, err = run_script("evaluate", [str(path)], capsys, monkeypatch)
    assert exit_code == 1 and len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0], err


@pytest.mark.integration
def test_evaluate_reports_a_bad_argument_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    exit_code, err = run_script("evaluate", [str(tmp_path / "x.ckpt"), "--split", "train"], capsys, monkeypatch)
    assert exit_code == 2 and err == ["error: split: expected one of test, val, got 'train'"]

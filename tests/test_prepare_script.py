"""data/prepare.py: converts, prints the statistics, reuses, and reports bad input with a non-zero exit."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO_ROOT


def load_prepare():
    spec = importlib.util.spec_from_file_location("prepare", REPO_ROOT / "data" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_converts_then_reuses(tmp_path, synthetic_reviews, capsys) -> None:
    prepare = load_prepare()
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert first.startswith("converted:") and "synthetic: 301 users, 120 items" in first
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("up to date:")


def test_prepare_reports_bad_input(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 2 3\n2 4 x 6\n")
    assert load_prepare().main([str(bad), "--format", "s3rec", "--data_root", str(tmp_path / "out")]) == 1
    assert f"{bad}:2: item id must be a positive integer, got 'x'" in capsys.readouterr().err

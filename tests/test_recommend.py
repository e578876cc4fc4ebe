"""The recommendation API and CLI, round trip from a tiny checkpoint trained by train.py."""

from __future__ import annotations

import json
import logging
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch

from sracl_lightning.datasets.item_text import load_item_text
from sracl_lightning.datasets.sequences import DataFormatError
from sracl_lightning.errors import InvalidArgumentError, UsageError
from sracl_lightning.serving.recommend import Recommender, main, read_histories
from tests.conftest import REPO_ROOT, run_train, tiny_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_reviews) -> str:
    tmp_path = tmp_path_factory.mktemp("recommend")
    run_train(tiny_args(synthetic_reviews, tmp_path))
    return json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())["checkpoint"]


@pytest.fixture(scope="module")
def recommender(checkpoint) -> Recommender:
    return Recommender.from_checkpoint(checkpoint)


def source_history(recommender: Recommender, user: int) -> list[str]:
    return [recommender.source_ids[i] for i in recommender.data.sequences.sequence(user).tolist()]


def test_top_k_are_the_models_best_unseen_items_with_ids_and_titles(recommender):
    history = source_history(recommender, 0)
    ranked = recommender.recommend_one(history, k=10)
    assert len(ranked) == 10
    seen = set(recommender.internal_ids(history))
    assert not seen & {r.item for r in ranked}, "a seen item was recommended"
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)

    # Same scores as the model computes by hand on the left-padded window of the last max_len items.
    model = recommender.model
    ids = recommender.internal_ids(history)[-model.max_len:]
    window = torch.zeros(1, model.max_len, dtype=torch.long)
    window[0, model.max_len - len(ids):] = torch.tensor(ids)
    with torch.no_grad():
        expected = (model(window) @ model.encoder.item_embeddings().T)[0]  # (N,)
    expected[torch.tensor(sorted(seen)) - 1] = float("-inf")
    assert [r.item for r in ranked] == (expected.topk(10).indices + 1).tolist()
    assert scores == pytest.approx(expected.topk(10).values.tolist(), abs=1e-5)

    records = load_item_text(recommender.data.directory)
    for r in ranked:
        assert r.source_id == records[r.item]["source_id"]
        assert r.title == records[r.item]["title"]
    assert any(r.title for r in ranked), "titles were not attached"


def test_seen_items_are_kept_when_asked(checkpoint, recommender):
    keep = Recommender.from_checkpoint(checkpoint, exclude_seen=False)
    history = source_history(recommender, 3)
    ranked = keep.recommend_one(history, k=keep.num_items)
    assert len(ranked) == keep.num_items and {r.item for r in ranked} >= set(keep.internal_ids(history))
    excluded = recommender.recommend_one(history, k=recommender.num_items)
    assert len(excluded) == recommender.num_items - len(set(history)), "exactly the unseen items remain"


def test_batches_users_and_internal_ids_agree_with_one_history_at_a_time(checkpoint, recommender):
    small = Recommender.from_checkpoint(checkpoint, batch_size=2)
    histories = [source_history(recommender, u) for u in range(5)]
    one_by_one = [recommender.recommend_one(h, k=5) for h in histories]
    users = [str(u) for u in json.loads((recommender.data.directory / "id_map.json").read_text())["users"][:5]]
    internal = [recommender.internal_ids(h) for h in histories]
    for batched in (small.recommend(histories, k=5), recommender.recommend_users(users, k=5),
                    recommender.recommend(internal, k=5)):
        assert [[r.item for r in rs] for rs in batched] == [[r.item for r in rs] for rs in one_by_one]
        # The same scores up to the summation order of a batched matmul.
        assert [r.score for rs in batched for r in rs] == pytest.approx(
            [r.score for rs in one_by_one for r in rs], abs=1e-5)


def test_bad_input_names_what_is_wrong(recommender):
    good = source_history(recommender, 0)
    with pytest.raises(KeyError, match=r"histories\[0\]\[1\]: unknown item 'NOT-AN-ASIN'"):
        recommender.recommend([[good[0], "NOT-AN-ASIN"]])
    with pytest.raises(ValueError, match="at least one item"):
        recommender.recommend([[]])
    with pytest.raises(ValueError, match=r"outside 1\.\."):
        recommender.recommend([[0]])
    with pytest.raises(TypeError, match="string"):
        recommender.recommend([good[0]])
    with pytest.raises(ValueError, match="k must be"):
        recommender.recommend([good], k=0)
    for k in (2.5, True, "3", recommender.num_items + 1):
        with pytest.raises(InvalidArgumentError, match=rf"got {k!r}: k must be an int in 1\.\.{recommender.num_items}"):
            recommender.recommend_one(good, k=k)
    assert len(recommender.recommend_one(good, k=np.int64(3))) == 3  # any integral type
    with pytest.raises(KeyError, match="unknown user 'nobody'"):
        recommender.recommend_users(["nobody"])


def test_cli_prints_one_json_line_per_history(checkpoint, recommender, tmp_path, capsys):
    first, second = source_history(recommender, 0), source_history(recommender, 1)
    path = tmp_path / "histories.jsonl"
    path.write_text(json.dumps(second) + "\n\n")
    main(checkpoint, history=",".join(first), histories=str(path), k=3)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["history"] for line in lines] == [first, second]
    expected = recommender.recommend([first, second], k=3)
    for line, ranked in zip(lines, expected, strict=True):
        assert [r["source_id"] for r in line["recommendations"]] == [r.source_id for r in ranked]
        assert set(line["recommendations"][0]) == {"item", "source_id", "score", "title"}

    path.write_text('["a", "b"]\n{"not": "a list"}\n')
    with pytest.raises(DataFormatError, match=r"histories.jsonl:2: expected a JSON list"):
        main(checkpoint, histories=str(path))
    with pytest.raises(UsageError, match=r"--history\[1\]: unknown item 'NOPE'"):
        main(checkpoint, history=f"{first[0]},NOPE")
    with pytest.raises(UsageError, match="nothing to recommend"):
        main(checkpoint)


def test_histories_files_are_checked_line_by_line(checkpoint, recommender, tmp_path) -> None:
    good = source_history(recommender, 0)
    path = tmp_path / "histories.jsonl"
    with pytest.raises(FileNotFoundError, match=f"histories file not found: {path}"):
        read_histories(path)
    path.write_text("\n  \n")
    with pytest.raises(DataFormatError, match=f"{path}: no histories found"):
        read_histories(path)
    path.write_text(json.dumps(good) + "\n[\"B00\", \n")
    with pytest.raises(DataFormatError, match=f"{path}:2: expected a JSON list of item ids"):
        read_histories(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps([good[0], {"id": 1}]) + "\n")
    with pytest.raises(DataFormatError, match=rf'{path}:2: history\[1\] is {{"id": 1}}; item ids are strings'):
        read_histories(path)
    # Unknown items are an error naming the file and line, never silently dropped.
    path.write_text(json.dumps(good) + "\n\n" + json.dumps([good[0], "NOPE"]) + "\n")
    with pytest.raises(DataFormatError, match=rf"{path}:3: history\[1\]: unknown item 'NOPE'"):
        main(checkpoint, histories=str(path))


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``python -m sracl_lightning.serving.recommend ARGS`` in this process: its exit code and stderr's non-log
    lines."""
    saved = {name: (logger.handlers[:], logger.propagate) for name in ("lightning.pytorch", "lightning.fabric")
             for logger in [logging.getLogger(name)]}

    def run(*args: str) -> tuple[int, list[str]]:
        monkeypatch.setattr(sys, "argv", ["recommend", *args])
        monkeypatch.delenv("SRACL_DEBUG", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("sracl_lightning.serving.recommend", run_name="__main__")
        err = capsys.readouterr().err.splitlines()
        return exit_info.value.code, [line for line in err if line.strip() and not line.startswith("[data]")]

    yield run
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


@pytest.mark.filterwarnings("ignore:'sracl_lightning.serving.recommend' found in sys.modules:RuntimeWarning")
def test_cli_errors_are_one_line(checkpoint, recommender, tmp_path, cli) -> None:
    good = ",".join(source_history(recommender, 0))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n")
    cases = [
        ([str(broken), "--history", good], 1, f"error: {broken}: not a readable checkpoint"),
        ([str(tmp_path / "gone.ckpt"), "--history", good], 1, f"error: checkpoint not found: {tmp_path / 'gone.ckpt'}"),
        ([checkpoint, "--histories", str(tmp_path / "missing.jsonl")], 1, "error: histories file not found: "),
        ([checkpoint, "--histories", str(blank)], 1, f"error: {blank}: no histories found"),
        ([checkpoint, "--history", good, "--k", "2.5"], 2, "error: k: expected int, got '2.5'"),
        ([checkpoint, "--history", good, "--k", "0"], 2, "error: got 0: k must be an int in 1.."),
        ([checkpoint, "--user", "nobody"], 2, "error: --user: unknown user 'nobody'"),
        ([checkpoint], 2, "error: nothing to recommend for"),
    ]
    for args, code, start in cases:
        exit_code, err = cli(*args)
        assert (exit_code, len(err)) == (code, 1) and err[0].startswith(start), (args, err)


@pytest.mark.slow  # ~14 s (a subprocess); the CLI's JSON lines and one-line errors stay in the default suite
def test_cli_stdout_is_only_json_even_when_the_root_logger_writes_to_stdout(checkpoint, recommender) -> None:
    """Lightning propagates its records to a configured root logger (here one on stdout, as many apps set up);
    the CLI still keeps its ``[data]`` lines off stdout, which carries only the JSON results."""
    history = ",".join(source_history(recommender, 0))
    code = ("import logging, runpy, sys; logging.basicConfig(stream=sys.stdout, level=logging.INFO); "
            f"sys.argv = ['recommend', {checkpoint!r}, '--history', {history!r}, '--k', '3']; "
            "runpy.run_module('sracl_lightning.serving.recommend', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["recommendations"]) == 3, run.stdout
    assert "[data]" in run.stderr

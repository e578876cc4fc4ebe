"""A checkpoint knows its data: evaluate, the recommender and resume refuse other data, and never convert over it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from sracl_lightning.datasets import processed
from sracl_lightning.datasets.sequences import DataFormatError
from sracl_lightning.errors import DataMismatchError, InvalidArgumentError
from sracl_lightning.serving.recommend import Recommender
from sracl_lightning.training.datamodule import SeqRecDataModule
from sracl_lightning.training.trained import load_run, read_checkpoint
from tests.conftest import load_script, run_train, tiny_args


def _rewrite_reviews(path: Path, edit) -> None:
    """Rewrite a gzipped Amazon review file through ``edit(rows) -> rows``."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in edit(rows))


def _reverse_time(rows: list[dict]) -> list[dict]:
    """Every user's sequence reversed: same users, items and counts, other order."""
    low, high = min(r["unixReviewTime"] for r in rows), max(r["unixReviewTime"] for r in rows)
    return [{**r, "unixReviewTime": low + high - r["unixReviewTime"]} for r in rows]


def _first_users(count: int):
    def keep(rows: list[dict]) -> list[dict]:
        users = list(dict.fromkeys(r["reviewerID"] for r in rows))[:count]
        return [r for r in rows if r["reviewerID"] in set(users)]
    return keep


def _evaluate(ckpt: str, tmp_path: Path, **kwargs) -> dict:
    return load_script("evaluate").evaluate(ckpt, output_dir=str(tmp_path / "eval"), accelerator="cpu", **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_reviews) -> dict:
    """A tiny run on a private copy of the synthetic source (the tests edit the copy)."""
    root = tmp_path_factory.mktemp("identity")
    source = root / "raw" / synthetic_reviews.name
    source.parent.mkdir()
    shutil.copy(synthetic_reviews, source)
    run_train(tiny_args(source, root, "--trainer.max_epochs", "1"))
    ckpt = next((root / "runs").rglob("last.ckpt"))
    return {"root": root, "source": source, "ckpt": str(ckpt), "data_root": str(root / "processed")}


@pytest.fixture
def run(trained, tmp_path) -> dict:
    """The trained run with a fresh copy of its source and its checkpoint's folder layout, per test."""
    source = tmp_path / "raw" / trained["source"].name
    source.parent.mkdir()
    shutil.copy(trained["source"], source)
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["dataset"] = str(source)
    ckpt["datamodule_hyper_parameters"]["data_root"] = str(tmp_path / "processed")
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    return {"source": source, "ckpt": str(path), "data_root": tmp_path / "processed"}


def _folder_state(data_root: Path) -> dict[str, int]:
    return {str(p.relative_to(data_root)): p.stat().st_mtime_ns for p in data_root.rglob("*") if p.is_file()}


@pytest.mark.integration
def test_checkpoint_records_the_identity_of_its_data(trained) -> None:
    state = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)["SeqRecDataModule"]
    data = SeqRecDataModule(dataset=str(trained["source"]), data_root=trained["data_root"])
    assert state["data_identity"] == processed.data_identity(data.stats)
    assert state["data_identity"]["num_users"] == 301


@pytest.mark.integration
def test_evaluate_on_unchanged_data_and_on_a_moved_copy(run, tmp_path) -> None:
    """The identity is the content, not the path: a copy elsewhere (another machine) evaluates to equal metrics."""
    metrics = _evaluate(run["ckpt"], tmp_path)
    moved = tmp_path / "elsewhere" / run["source"].name
    moved.parent.mkdir()
    shutil.copy(run["source"], moved)
    run["source"].unlink()
    ckpt = torch.load(run["ckpt"], map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["dataset"] = str(moved)
    torch.save(ckpt, run["ckpt"])
    assert _evaluate(run["ckpt"], tmp_path) == metrics


@pytest.mark.integration
@pytest.mark.parametrize("edit", [_reverse_time, _first_users(270)], ids=["reversed", "270-users"])
def test_evaluate_refuses_a_changed_source_and_converts_nothing(run, tmp_path, edit) -> None:
    _evaluate(run["ckpt"], tmp_path)  # converts the run's data once
    before = _folder_state(run["data_root"])
    expected = read_checkpoint(run["ckpt"])["SeqRecDataModule"]["data_identity"]["source_sha256"]
    _rewrite_reviews(run["source"], edit)
    with pytest.raises(DataMismatchError) as error:
        _evaluate(run["ckpt"], tmp_path)
    message = str(error.value)
    assert expected[:12] in message and processed.file_sha256(run["source"])[:12] in message
    assert _folder_state(run["data_root"]) == before, "evaluation touched the cached conversion"


@pytest.mark.integration
def test_evaluate_refuses_a_conversion_replaced_behind_its_stats(run, tmp_path) -> None:
    """A cache whose files are another conversion's, consistent with a stats.json that claims today's source, is
    still not the checkpoint's data: the files' hashes differ from the identity the checkpoint recorded."""
    _evaluate(run["ckpt"], tmp_path)
    directory = SeqRecDataModule(dataset=str(run["source"]), data_root=str(run["data_root"])).directory
    original_source = processed.read_stats(directory)["source"]
    other = tmp_path / "other" / run["source"].name
    other.parent.mkdir()
    shutil.copy(run["source"], other)
    _rewrite_reviews(other, _reverse_time)
    other_dir, other_stats, _ = processed.prepare("synthetic", other, "amazon", tmp_path / "other_processed")
    for name in ("items.npy", "offsets.npy", "id_map.json"):
        shutil.copy(other_dir / name, directory / name)
    (directory / "stats.json").write_text(json.dumps({**other_stats, "source": original_source}))
    with pytest.raises(DataMismatchError, match="differs in id_map_sha256, items_sha256"):
        _evaluate(run["ckpt"], tmp_path)


@pytest.mark.integration
def test_recommender_refuses_a_changed_source(run) -> None:
    Recommender.from_checkpoint(run["ckpt"])
    _rewrite_reviews(run["source"], _reverse_time)
    with pytest.raises(DataMismatchError, match="refusing"):
        Recommender.from_checkpoint(run["ckpt"])


@pytest.mark.integration
def test_resume_on_another_dataset_is_refused_naming_both(trained, tmp_path) -> None:
    other = tmp_path / "reviews_Other_5.json.gz"
    shutil.copy(trained["source"], other)
    _rewrite_reviews(other, _first_users(270))
    with pytest.raises(DataMismatchError) as error:
        run_train(tiny_args(other, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", trained["ckpt"]))
    assert "synthetic (source sha256" in str(error.value) and "other (source sha256" in str(error.value)


@pytest.mark.integration
def test_resume_on_data_with_another_item_count_is_refused_by_identity(trained, tmp_path) -> None:
    # One item fewer: the model built for this data does not fit the checkpoint's weights. The data identity is
    # checked before Lightning restores them, so the error names the data, not a tensor shape.
    other = tmp_path / "reviews_Other_5.json.gz"
    shutil.copy(trained["source"], other)
    _rewrite_reviews(other, lambda rows: [r for r in rows if r["asin"] != rows[0]["asin"]])
    with pytest.raises(DataMismatchError, match="the checkpoint was trained on synthetic") as error:
        run_train(tiny_args(other, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", trained["ckpt"]))
    assert "120 items" in str(error.value) and "119 items" in str(error.value) and "num_items" in str(error.value)


@pytest.mark.integration
def test_a_model_with_another_item_count_is_refused(trained) -> None:
    model, data = load_run(trained["ckpt"])
    model.num_items += 1
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(DataMismatchError, match="121 items, but dataset synthetic has 120"):
        trainer.test(model, datamodule=data)


@pytest.mark.integration
def test_a_checkpoint_without_identity_loads_with_a_warning(run, caplog) -> None:
    ckpt = torch.load(run["ckpt"], map_location="cpu", weights_only=True)
    del ckpt["SeqRecDataModule"]
    torch.save(ckpt, run["ckpt"])
    with caplog.at_level("WARNING"):
        _, data = load_run(run["ckpt"])
    assert data.expected_identity is None
    assert any("records no data identity" in r.getMessage() for r in caplog.records)


@pytest.mark.unit
@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"], ids=["empty", "text", "zip"])
def test_unreadable_checkpoint_names_its_path(tmp_path, content) -> None:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=f"{path}: not a readable checkpoint"):
        load_run(path)


@pytest.mark.unit
@pytest.mark.parametrize(("argument", "value"), [("num_neighbours", -1), ("num_neighbours", 0), ("max_len", 0),
                                                  ("batch_size", 0), ("num_workers", -1)])
def test_count_arguments_are_validated_where_declared(argument, value) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got {value}: data.{argument} must be >= "):
        SeqRecDataModule(dataset="x.inter", **{argument: value})


@pytest.mark.integration
def test_no_temporary_files_in_the_conversion(run, tmp_path) -> None:
    _evaluate(run["ckpt"], tmp_path)
    assert not [p for p in run["data_root"].rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert os.listdir(run["data_root"])

"""Figures: the per-group metrics add up to the overall ones, and every plot writes a non-empty PNG."""

from __future__ import annotations

import json

import pytest

from sracl_lightning.experiments.figures import (
    curves,
    metrics_by_length,
    plug_and_play,
    sensitivity,
    sparse,
    top_ranks,
)
from sracl_lightning.experiments.records import RunRecord
from sracl_lightning.experiments.tables import RunResult, summarize, to_csv
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.training.datamodule import SeqRecDataModule
from tests.conftest import run_train, tiny_args

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5_000, f"{path} is not a drawn PNG"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_reviews) -> dict:
    tmp_path = tmp_path_factory.mktemp("figures")
    run_train(tiny_args(synthetic_reviews, tmp_path, "--trainer.limit_test_batches", "1.0"))
    return json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text()) | {"root": tmp_path}


@pytest.mark.integration
def test_group_metrics_add_up_to_the_overall_test_metrics(trained):
    model = SRACLModule.load_from_checkpoint(trained["checkpoint"], map_location="cpu")
    data = SeqRecDataModule.load_from_checkpoint(trained["checkpoint"])
    groups = metrics_by_length(model, data)
    assert list(groups) == ["< 7", "7-10", "> 10"]
    total = sum(g["users"] for g in groups.values())
    assert total == 301 and all(g["users"] > 0 for g in groups.values())
    for metric in ("hr@10", "ndcg@20", "mrr@10"):
        pooled = sum(g[metric] * g["users"] for g in groups.values()) / total
        assert pooled == pytest.approx(trained["metrics"][metric], abs=1e-6), metric


@pytest.mark.integration
def test_sparse_user_figure(trained, tmp_path):
    out = tmp_path / "fig5"
    results = sparse([trained["checkpoint"], trained["checkpoint"]], labels=["a", "b"], output=str(out))
    assert results["a"] == results["b"]
    assert_png(out.with_suffix(".png"))
    assert json.loads(out.with_suffix(".json").read_text())["results"]["a"]["< 7"]["users"] > 0
    with pytest.raises(ValueError, match="1 labels for 2 checkpoints"):
        sparse([trained["checkpoint"]] * 2, labels=["a"], output=str(out))
    # One label's checkpoints (a model's seeds) are one bar: their mean, their std as the error bar.
    pooled = sparse([trained["checkpoint"]] * 2, labels=["seeds", "seeds"], output=str(out))
    assert pooled == {"seeds": results["a"]}
    written = json.loads(out.with_suffix(".json").read_text())
    assert len(written["runs"]) == 2 and written["std"]["seeds"]["< 7"]["hr@20"] == 0.0


@pytest.mark.integration
def test_top_of_the_ranking(trained, tmp_path):
    out = tmp_path / "top"
    result = top_ranks([trained["checkpoint"]], labels=["run"], output=str(out))["run"]
    assert result["users"] == 301 and sum(result["target_rank_bins"].values()) == 301
    assert list(result["target_rank_bins"]) == ["1", "2-5", "6-10", "11-20", "21-50", "> 50"]
    # Unmasked, the ranking is evaluation's: the run's own test metrics.
    for metric in ("hr@10", "ndcg@10", "hr@20", "ndcg@20"):
        assert result["unmasked"][metric] == pytest.approx(trained["metrics"][metric], abs=1e-6), metric
    # Masking the window's items only moves targets up; the last item is one of the window's.
    assert all(result["window_masked"][m] >= result["unmasked"][m] for m in result["unmasked"])
    assert 0 <= result["top_is_last_item"] <= result["top_is_window_item"] <= 1
    assert result["user_vector_norm"] > 0 and 0 < result["target_probability"] < 1
    assert sum(result["target_rank_bins"][b] for b in ("1", "2-5", "6-10")) == round(result["unmasked"]["hr@10"] * 301)
    assert_png(out.with_suffix(".png"))
    assert json.loads(out.with_suffix(".json").read_text())["results"]["run"]["users"] == 301


@pytest.mark.unit
def test_sensitivity_figure_from_a_runner_table(tmp_path):
    results = [RunResult(dataset, f"α = {alpha}", seed, {m: 0.1 + alpha + 0.001 * seed for m in ("hr@20", "ndcg@20")})
               for dataset in ("beauty", "office") for alpha in (0.01, 0.05, 0.1) for seed in (0, 1)]
    table = tmp_path / "results.csv"
    table.write_text(to_csv(summarize(results, metrics=("hr@20", "ndcg@20"))))
    out = tmp_path / "fig4"
    drawn = sensitivity(str(table), output=str(out))
    assert [x for x, _, _ in drawn["hr@20"]["beauty"]] == [0.01, 0.05, 0.1]
    assert drawn["hr@20"]["office"][1][1] == pytest.approx(0.1505)
    assert_png(out.with_suffix(".png"))
    table.write_text(table.read_text().replace("α = 0.05", "alpha five"))
    with pytest.raises(ValueError, match="does not end in '= <value>'"):
        sensitivity(str(table), output=str(out))


@pytest.mark.unit
def test_plug_and_play_figure_pairs_each_row_with_its_versus_row_over_their_common_seeds(tmp_path):
    def run(row: str, seed: int, hr: float) -> RunResult:
        return RunResult("office", row, seed, {"hr@20": hr + 0.001 * seed, "ndcg@20": hr / 2})

    results = [run("GRU4Rec", s, 0.12) for s in (0, 1, 2)] + [run("GRU4Rec + SRA-CL", s, 0.13) for s in (0, 1)]
    results += [run("SASRec", s, 0.15) for s in (0, 1, 2)] + [run("SASRec + SRA-CL", s, 0.16 + 0.001 * (s == 1))
                                                            for s in (0, 1, 2)]
    table = tmp_path / "results.csv"
    versus = {"GRU4Rec + SRA-CL": "GRU4Rec", "SASRec + SRA-CL": "SASRec"}
    table.write_text(to_csv(summarize(results, metrics=("hr@20", "ndcg@20"), versus=versus)))
    out = tmp_path / "fig3"
    with pytest.raises(FileNotFoundError, match=r"results\.runs\.jsonl: the run records"):
        plug_and_play(str(table), output=str(out))
    table.with_suffix(".runs.jsonl").write_text("".join(RunRecord(r, "k").to_json() + "\n" for r in results))
    drawn = plug_and_play(str(table), output=str(out))
    gru, sas = drawn["office"]["hr@20"]
    assert (gru["backbone"], gru["row"], gru["seeds"]) == ("GRU4Rec", "GRU4Rec + SRA-CL", [0, 1])
    # GRU4Rec over the two seeds GRU4Rec + SRA-CL has (0.120, 0.121), not over its three.
    assert gru["without"][0] == pytest.approx(0.1205) and gru["with"][0] == pytest.approx(0.1305)
    assert gru["change"] == pytest.approx(0.1305 / 0.1205 - 1) and sas["seeds"] == [0, 1, 2]
    assert sas["p"] is not None and sas["p_corrected"], "two tests on one metric: Holm's p is shown"
    assert_png(out.with_suffix(".png"))
    assert json.loads(out.with_suffix(".json").read_text())["office"]["ndcg@20"][0]["backbone"] == "GRU4Rec"
    with pytest.raises(ValueError, match="no row tested against another row"):
        plug_and_play(str(table), output=str(out), metrics=("mrr@10",))
    records = table.with_suffix(".runs.jsonl")
    records.write_text(records.read_text() + '{"dataset": "office", "row": "SASRec", "seed": 3}\n')
    with pytest.raises(ValueError, match=r"results\.runs\.jsonl:12: a run record needs \['key', 'metrics'\]"):
        plug_and_play(str(table), output=str(out))
    table.write_text("\n".join(",".join(line.split(",")[:-1]) for line in table.read_text().splitlines()))
    with pytest.raises(ValueError, match="no 'versus' column"):
        plug_and_play(str(table), output=str(out))


@pytest.mark.integration
def test_training_curves_from_the_csv_log(trained, tmp_path):
    log = next((trained["root"] / "runs").rglob("metrics.csv"))
    assert_png(curves(str(log), output=str(tmp_path / "curves")))
    with pytest.raises(ValueError, match="none of the columns"):
        curves(str(log), output=str(tmp_path / "x"), columns=("nope",))

"""The results-table builder on fixture metric files: statistics, t-test, paper alignment, rendering."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from sracl_lightning.experiments.tables import (
    RunResult,
    bootstrap_interval,
    holm_adjust,
    mean_std,
    paired_t_test,
    rank_counts,
    read_run_result,
    student_t_two_sided_p,
    summarize,
    to_csv,
    to_markdown,
)
from sracl_lightning.models.metrics import per_user_values

pytestmark = pytest.mark.unit

PROTOCOL = {"max_len": 20, "mask_seen_items": False, "loss": "full-softmax cross-entropy", "encoder": "SASRec"}


def result(row: str, seed: int, hr20: float, ndcg20: float, dataset: str = "beauty") -> RunResult:
    metrics = {"hr@10": hr20 / 2, "ndcg@10": ndcg20 / 2, "hr@20": hr20, "ndcg@20": ndcg20}
    return RunResult(dataset, row, seed, metrics, PROTOCOL, None if row == "w/o CL" else "minilm_nollm")


@pytest.mark.parametrize(("t", "dof"), [(12.706, 1), (4.303, 2), (3.182, 3), (2.776, 4), (2.571, 5), (2.228, 10),
                                        (2.086, 20)])
def test_t_test_p_at_the_tabulated_5_percent_critical_values(t, dof):
    assert student_t_two_sided_p(t, dof) == pytest.approx(0.05, abs=2e-4)
    assert student_t_two_sided_p(-t, dof) == student_t_two_sided_p(t, dof)


def test_t_test_p_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in range(1, 31):
        for t in (0.0, 0.3, 1.0, 2.5, 7.0, 40.0):
            assert student_t_two_sided_p(t, dof) == pytest.approx(2 * stats.t.sf(t, dof), abs=1e-10), (t, dof)
    a, b = [0.10, 0.12, 0.11, 0.13, 0.125], [0.09, 0.115, 0.10, 0.12, 0.11]
    t, p = paired_t_test(a, b)
    expected = stats.ttest_rel(a, b)
    assert t == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)


def test_paired_t_test_by_hand():
    # d = [0.01, 0.02, 0.03]: mean 0.02, std 0.01, t = 0.02 / (0.01 / √3) = 2√3, dof 2: p = 1 − sin(atan(√6)).
    t, p = paired_t_test([0.11, 0.12, 0.13], [0.10, 0.10, 0.10])
    assert t == pytest.approx(2 * math.sqrt(3))
    assert p == pytest.approx(1 - math.sin(math.atan(2 * math.sqrt(3) / math.sqrt(2))))
    assert paired_t_test([0.1], [0.2]) is None
    assert paired_t_test([0.1, 0.2], [0.1, 0.2]) == (0.0, 1.0)
    assert paired_t_test([0.5, 0.75], [0.25, 0.5]) == (math.inf, 0.0)  # exact in binary
    with pytest.raises(ValueError, match="equal lengths"):
        paired_t_test([0.1, 0.2], [0.1])


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([0.5]) == (0.5, 0.0)


def test_summary_aligns_paper_numbers_and_tests_against_the_baseline_by_seed():
    results = [result("w/o CL", s, 0.120 + 0.001 * s, 0.050 + 0.0005 * s) for s in (0, 1, 2)]
    results += [result("SRA-CL", s, 0.125 + 0.001 * s + (0.002 if s == 1 else 0), 0.052 + 0.0005 * s)
                for s in (2, 1, 0)]
    results.append(result("SRA-CL", 3, 0.2, 0.1))  # a seed the baseline lacks: in the mean, not in the test
    paper = {"SRA-CL": {"beauty": {"hr@20": 0.1314, "ndcg@20": 0.0568}}, "w/o CL": {"beauty": {"hr@20": 0.1206}}}
    cells = {(c.row, c.metric): c for c in summarize(results, baseline="w/o CL", paper=paper)}

    ours = cells[("SRA-CL", "hr@20")]
    values = [0.125, 0.128, 0.127, 0.2]
    assert ours.seeds == (0, 1, 2, 3)
    assert (ours.mean, ours.std) == pytest.approx(mean_std(values))
    assert ours.paper == 0.1314 and ours.relative_to_paper == pytest.approx((ours.mean - 0.1314) / 0.1314)
    base = [0.120, 0.121, 0.122]
    assert ours.p_value == pytest.approx(paired_t_test([0.125, 0.128, 0.127], base)[1])
    assert cells[("SRA-CL", "ndcg@20")].p_value < 1e-6  # the same +0.002 on every seed
    assert cells[("w/o CL", "hr@20")].p_value is None and cells[("w/o CL", "ndcg@20")].paper is None

    with pytest.raises(ValueError, match="two results"):
        summarize([*results, result("w/o CL", 0, 0.1, 0.05)])


def test_markdown_and_csv_carry_every_number_and_the_protocol():
    results = [result("w/o CL", s, 0.12 + 0.01 * s, 0.05) for s in (0, 1)]
    results += [result("SRA-CL", s, 0.13 + 0.01 * s, 0.06 - 0.001 * s) for s in (0, 1)]
    cells = summarize(results, baseline="w/o CL", paper={"SRA-CL": {"beauty": {"hr@20": 0.1314}}})
    markdown = to_markdown(cells, results, title="Main results", baseline="w/o CL")
    assert "## beauty" in markdown and "max_len=20" in markdown and "mask_seen_items=False" in markdown
    assert "embeddings=minilm_nollm | none (w/o CL)" in markdown
    ours = next(line for line in markdown.splitlines() if line.startswith("| SRA-CL"))
    assert "0.1350 ± 0.0071 (paper 0.1314, +2.7%)" in ours and "| 2 |" in ours
    rows = list(csv.DictReader(io.StringIO(to_csv(cells))))
    assert len(rows) == 2 * 4
    hr20 = next(r for r in rows if r["row"] == "SRA-CL" and r["metric"] == "hr@20")
    assert float(hr20["mean"]) == pytest.approx(0.135) and hr20["seeds"] == "0 1" and hr20["paper"] == "0.1314"


def test_reads_the_files_train_py_writes_and_names_a_bad_one(tmp_path):
    good = tmp_path / "test_metrics.json"
    good.write_text(json.dumps({"split": "test", "metrics": {"hr@20": 0.1}, "protocol": PROTOCOL,
                                "semantic_profile": "minilm_nollm"}))
    run = read_run_result(good, dataset="beauty", row="SRA-CL", seed=0)
    assert run.metrics["hr@20"] == 0.1 and run.semantic_profile == "minilm_nollm"
    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": [1, 2]}')
    with pytest.raises(ValueError, match="bad.json: expected a 'metrics' object"):
        read_run_result(bad, dataset="beauty", row="x", seed=0)
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_run_result(bad, dataset="beauty", row="x", seed=0)


def test_one_seed_shows_the_mean_without_a_spread():
    results = [result("w/o CL", 0, 0.12, 0.05), result("SRA-CL", 0, 0.13, 0.06)]
    markdown = to_markdown(summarize(results, baseline="w/o CL"), results, title="One seed", baseline="w/o CL")
    ours = next(line for line in markdown.splitlines() if line.startswith("| SRA-CL"))
    assert "| 1 | 0.0650 | 0.0300 | 0.1300 | 0.0600 |" in ours and "±" not in markdown and "p=" not in ours


def test_holm_adjustment_by_hand():
    # m = 4, sorted 0.01 < 0.02 < 0.03 < 0.5: 4·0.01 = 0.04, 3·0.02 = 0.06, max(0.06, 2·0.03) = 0.06, 1·0.5 = 0.5.
    assert holm_adjust([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm_adjust([0.4, 0.9]) == pytest.approx([0.8, 0.9])  # capped at 1 and never below a smaller p's
    assert holm_adjust([0.7, 0.6]) == pytest.approx([1.0, 1.0])


def test_holm_applies_to_the_rows_tested_against_the_baseline_per_dataset_and_metric():
    results = [result("w/o CL", s, 0.120 + 0.001 * s, 0.050) for s in (0, 1, 2)]
    results += [result("A", s, 0.125 + 0.001 * s + 0.001 * (s == 1), 0.052 + 0.0005 * s) for s in (0, 1, 2)]
    results += [result("B", s, 0.121 + 0.002 * s, 0.049 + 0.001 * s) for s in (0, 1, 2)]
    cells = {(c.row, c.metric): c for c in summarize(results, baseline="w/o CL")}
    for metric in ("hr@20", "ndcg@20"):
        raw = [cells[(row, metric)].p_value for row in ("A", "B")]
        assert [cells[(row, metric)].p_holm for row in ("A", "B")] == pytest.approx(holm_adjust(raw))
        assert cells[("w/o CL", metric)].p_holm is None
    markdown = to_markdown(list(cells.values()), results, title="T", baseline="w/o CL")
    assert "Holm's correction" in markdown and f"(Holm {cells[('A', 'hr@20')].p_holm:.3g})" in markdown
    assert {r["p_holm"] != "" for r in csv.DictReader(io.StringIO(to_csv(list(cells.values()))))
            if r["row"] != "w/o CL"} == {True}
    # One row against the baseline is no family: no correction.
    single = summarize([r for r in results if r.row != "B"], baseline="w/o CL")
    assert all(c.p_holm is None for c in single)


def test_a_row_is_tested_against_its_own_versus_row_and_says_so():
    # Fig. 3: each backbone with SRA-CL against the same backbone without, not against the table's baseline.
    results = [result("SASRec", s, 0.150 + 0.001 * s, 0.060) for s in (0, 1, 2)]
    results += [result("GRU4Rec", s, 0.120 + 0.002 * s, 0.050 + 0.001 * s) for s in (0, 1, 2)]
    results += [result("GRU4Rec + SRA-CL", s, 0.130 + 0.002 * s + 0.001 * (s == 1), 0.055 + 0.001 * s)
                for s in (0, 1, 2)]
    results += [result("SASRec + SRA-CL", s, 0.160 + 0.001 * s + 0.001 * (s == 2), 0.065) for s in (0, 1, 2)]
    cells = {(c.row, c.metric): c for c in summarize(results, baseline="SASRec",
                                                     versus={"GRU4Rec + SRA-CL": "GRU4Rec"})}
    ours = cells[("GRU4Rec + SRA-CL", "hr@20")]
    assert ours.versus == "GRU4Rec" and ours.p_value == pytest.approx(
        paired_t_test([0.130, 0.133, 0.134], [0.120, 0.122, 0.124])[1])
    assert cells[("SASRec + SRA-CL", "hr@20")].versus == "SASRec" and cells[("SASRec", "hr@20")].versus is None
    # Holm's family is every test of the dataset and metric: here GRU4Rec, GRU4Rec + SRA-CL and SASRec + SRA-CL.
    tested = [cells[(row, "hr@20")] for row in ("GRU4Rec", "GRU4Rec + SRA-CL", "SASRec + SRA-CL")]
    assert [c.p_holm for c in tested] == pytest.approx(holm_adjust([c.p_value for c in tested]))
    markdown = to_markdown(list(cells.values()), results, title="T", baseline="SASRec")
    line = next(li for li in markdown.splitlines() if li.startswith("| GRU4Rec + SRA-CL"))
    assert f"p={ours.p_value:.3g} vs GRU4Rec (Holm" in line
    assert " vs " not in next(li for li in markdown.splitlines() if li.startswith("| SASRec + SRA-CL"))
    assert "against the 'SASRec' row, or the row named after it" in markdown
    rows = list(csv.DictReader(io.StringIO(to_csv(list(cells.values())))))
    assert {(r["row"], r["versus"]) for r in rows if r["metric"] == "hr@20"} == {
        ("SASRec", ""), ("GRU4Rec", "SASRec"), ("GRU4Rec + SRA-CL", "GRU4Rec"), ("SASRec + SRA-CL", "SASRec")}
    # Without a table baseline only the rows with their own versus are tested.
    alone = summarize(results, versus={"GRU4Rec + SRA-CL": "GRU4Rec", "SASRec + SRA-CL": "SASRec"})
    assert {c.row for c in alone if c.p_value is not None} == {"GRU4Rec + SRA-CL", "SASRec + SRA-CL"}
    assert "against the row named after it" in to_markdown(alone, results, title="T")


def test_rows_far_from_the_paper_get_their_note_and_the_others_none():
    results = [result("w/o CL", s, 0.12, 0.05) for s in (0, 1)]
    results += [result("A", s, 0.10, 0.05) for s in (0, 1)] + [result("B", s, 0.13, 0.05) for s in (0, 1)]
    results += [result("C", s, 0.10, 0.05) for s in (0, 1)]
    paper = {"A": {"beauty": {"hr@20": 0.125, "ndcg@20": 0.05}},  # -20 % at HR@20 only
             "B": {"beauty": {"hr@20": 0.125, "ndcg@20": 0.05}},  # +4 %: within 10 %
             "C": {"beauty": {"hr@20": 0.08, "ndcg@20": 0.04}}}  # +25 %, +25 %: no note given
    cells = summarize(results, baseline="w/o CL", paper=paper)
    markdown = to_markdown(cells, results, title="T", baseline="w/o CL",
                           notes={"A": "the paper masked seen items", "B": "never printed"})
    assert "Far from the paper (more than 10% either way):" in markdown
    assert "- A: -20.0% from the paper (HR@20). the paper masked seen items." in markdown
    assert "- C: +25.0% to +25.0% from the paper (HR@20, NDCG@20). No protocol difference known to explain it." \
        in markdown
    assert "never printed" not in markdown and "- B:" not in markdown
    # Nothing far: no section.
    near = summarize(results[:4], baseline="w/o CL", paper={"A": {"beauty": {"hr@20": 0.1}}})
    assert "Far from the paper" not in to_markdown(near, results[:4], title="T", notes={"A": "x"})
    # A table's own threshold (the main table asks w/o CL within 3 %), and a note per dataset.
    strict = to_markdown(cells, results, title="T", baseline="w/o CL", far_from_paper=0.03,
                         notes={"B": {"beauty": "B's reason on beauty", "office": "not this one"}})
    assert "Far from the paper (more than 3% either way):" in strict
    assert "- B: +4.0% from the paper (HR@20). B's reason on beauty." in strict and "not this one" not in strict


def test_bootstrap_intervals_of_single_seed_cells_by_hand(tmp_path):
    assert rank_counts(np.array([1, 3, 3, 50, 51, 400])) == (1, 0, 2) + (0,) * 46 + (1, 2)
    # Every user at rank 1: no spread at all.
    assert bootstrap_interval(rank_counts(np.ones(50, dtype=np.int64)), "hr@10") == (1.0, 1.0)
    # Half the users hit HR@10, half miss: the interval covers 0.5 with about ±1.96·sqrt(0.25 / U).
    ranks = np.array([1, 100] * 2000)
    low, high = bootstrap_interval(rank_counts(ranks), "hr@10")
    half_width = 1.96 * math.sqrt(0.25 / len(ranks))
    assert low < 0.5 < high and (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    # NDCG@10 of rank 3 is 1 / log2(4) = 0.5 for everyone.
    assert bootstrap_interval(rank_counts(np.full(10, 3)), "ndcg@10") == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="no per-user values"):
        bootstrap_interval(rank_counts(ranks), "auc")
    with pytest.raises(ValueError, match="hr@20 needs the ranks up to 20; these rank counts pool every rank above 10"):
        bootstrap_interval(rank_counts(ranks, top=10), "hr@20")

    # A run folder with test_ranks.npy gets the interval in its single-seed cells, a run without none.
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "test_metrics.json").write_text(json.dumps({"metrics": {"hr@10": 0.5, "ndcg@10": 0.3, "hr@20": 0.5,
                                                                      "ndcg@20": 0.3}, "protocol": PROTOCOL}))
    np.save(folder / "test_ranks.npy", np.stack([np.arange(len(ranks)), ranks], axis=1))
    ours = read_run_result(folder / "test_metrics.json", dataset="beauty", row="SRA-CL", seed=0)
    results = [ours, result("w/o CL", 0, 0.4, 0.2)]
    cells = {(c.row, c.metric): c for c in summarize(results, baseline="w/o CL")}
    assert cells[("SRA-CL", "hr@10")].interval == (low, high) and cells[("w/o CL", "hr@10")].interval is None
    markdown = to_markdown(list(cells.values()), results, title="T", baseline="w/o CL")
    assert f"0.5000 [{low:.4f}, {high:.4f}]" in markdown and "95% per-user bootstrap interval" in markdown
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(list(cells.values())))) if r["row"] == "SRA-CL")
    assert float(row["ci_low"]) == pytest.approx(low, abs=1e-6)
    np.save(folder / "test_ranks.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"test_ranks.npy: expected a \(U, 2\) array"):
        read_run_result(folder / "test_metrics.json", dataset="beauty", row="SRA-CL", seed=0)


def test_the_bootstrap_over_rank_counts_is_the_bootstrap_over_users():
    ranks = np.random.default_rng(1).geometric(0.05, size=3000)  # (U,) 1-based, about 40 % beyond rank 10
    rng = np.random.default_rng(2)
    for metric in ("hr@10", "ndcg@20", "mrr@10"):
        values = per_user_values(torch.from_numpy(ranks), [int(metric.partition("@")[2])])[metric].numpy()  # (U,)
        means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(2000)])
        expected = np.quantile(means, [0.025, 0.975])
        assert bootstrap_interval(rank_counts(ranks), metric, resamples=2000) == \
            pytest.approx(tuple(expected), abs=0.25 * means.std())

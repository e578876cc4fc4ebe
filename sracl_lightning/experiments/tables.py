"""Results tables over seeds: mean ± std, the paper's number beside each cell, and a paired t-test.

Input: one :class:`RunResult` per (dataset, row, seed), read from the ``test_metrics.json`` files ``train.py``
writes. Output: a Markdown table per dataset, with the protocol of its runs in the header, and a long-format CSV.

The t-test is paired by seed against a baseline row (the same seed gives the same data order and initialisation
to both rows): t = mean(d) / (std(d) / √n) over the n seeds both rows have, d = row − baseline, two-sided
p-value from Student's t with n − 1 degrees of freedom. The t distribution's CDF for an integer number of degrees
of freedom has a closed form (Abramowitz & Stegun 26.7.3–4), so no statistics package is needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from sracl_lightning.models.metrics import per_user_values

#: The metrics of the paper's Tables 1, 2, 4 and 5.
TABLE_METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")


@dataclass(frozen=True)
class RunResult:
    """The test metrics of one finished run."""

    dataset: str
    row: str
    seed: int
    metrics: Mapping[str, float]
    protocol: Mapping[str, object] = field(default_factory=dict)
    semantic_profile: str | None = None
    #: :func:`rank_counts` of every user's target rank (``test_ranks.npy`` beside the metrics), when the run kept
    #: them: all a per-user bootstrap of an @K metric needs, small enough for a run record.
    rank_counts: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    #: Training and validation seconds of every epoch, the parts before a resume included (``fit`` in the metrics
    #: file, from :class:`~sracl_lightning.training.callbacks.EpochTimer`); ``None`` for results written without it.
    fit_seconds: float | None = field(default=None, compare=False)


def read_run_result(path: str | Path, *, dataset: str, row: str, seed: int) -> RunResult:
    """Read a ``test_metrics.json`` written by ``train.py`` / ``evaluate.py``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(payload.get("metrics"), dict):
        raise ValueError(f"{path}: expected a 'metrics' object, as train.py writes")
    fit_seconds = (payload.get("fit") or {}).get("seconds")
    if fit_seconds is not None and not isinstance(fit_seconds, int | float):
        raise ValueError(f"{path}: 'fit.seconds' must be a number, as train.py writes")
    return RunResult(dataset=dataset, row=row, seed=seed, metrics=payload["metrics"],
                     protocol=payload.get("protocol", {}), semantic_profile=payload.get("semantic_profile"),
                     fit_seconds=fit_seconds,
                     rank_counts=read_rank_counts(path.with_name(path.name.replace("_metrics.json", "_ranks.npy"))))


#: A run's rank counts keep ranks 1..RANK_COUNTS_TOP apart and pool the rest: every HR / NDCG / MRR @K with
#: K <= RANK_COUNTS_TOP is exact from them.
RANK_COUNTS_TOP = 50


def rank_counts(ranks: np.ndarray, top: int = RANK_COUNTS_TOP) -> tuple[int, ...]:
    """``(top + 1,)`` how many users ranked their target 1st, 2nd, ..., ``top``-th, and (last) below ``top``."""
    ranks = np.asarray(ranks, dtype=np.int64)  # (U,) 1-based
    return tuple(int(c) for c in np.bincount(np.minimum(ranks, top + 1) - 1, minlength=top + 1))


def read_rank_counts(path: Path) -> tuple[int, ...] | None:
    """The :func:`rank_counts` of a ``<split>_ranks.npy`` (train.py's (user, rank) pairs), ``None`` if there is
    none."""
    if not path.is_file():
        return None
    try:
        pairs = np.load(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy file ({err})") from None
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0 or pairs[:, 1].min() < 1:
        raise ValueError(f"{path}: expected a (U, 2) array of (user, rank >= 1) pairs, got shape {pairs.shape}")
    return rank_counts(pairs[:, 1])


#: Resamples and level of the per-user bootstrap intervals of single-seed cells.
BOOTSTRAP_RESAMPLES, BOOTSTRAP_LEVEL = 1000, 0.95


def bootstrap_interval(counts: Sequence[int], metric: str, resamples: int = BOOTSTRAP_RESAMPLES,
                       level: float = BOOTSTRAP_LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` (``"hr@20"``, ...) over the users, from their
    :func:`rank_counts`: the users are resampled with replacement ``resamples`` times and the metric's mean
    recomputed; returns the ``(1 ± level) / 2`` quantiles.

    A user's value depends only on the bin of its rank, so resampling U users is one multinomial draw of U over the
    bins, weighted by their counts."""
    name, _, k = metric.partition("@")
    if name not in ("hr", "ndcg", "mrr") or not k.isdigit():
        raise ValueError(f"no per-user values for metric {metric!r}")
    counts = np.asarray(counts, dtype=np.int64)  # (top + 1,)
    top, users = len(counts) - 1, int(counts.sum())
    if int(k) > top:
        raise ValueError(f"{metric} needs the ranks up to {k}; these rank counts pool every rank above {top}")
    # (top + 1,) the value of a user in each bin; the last bin (rank > top >= k) is worth 0.
    values = per_user_values(torch.arange(1, top + 2), [int(k)])[metric].numpy()
    draws = np.random.default_rng(seed).multinomial(users, counts / users, size=resamples)  # (resamples, top + 1)
    low, high = np.quantile(draws @ values / users, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); the std of a single value is 0."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def student_t_two_sided_p(t: float, dof: int) -> float:
    """P(|T| ≥ |t|) for Student's t with an integer number of degrees of freedom ``dof`` ≥ 1."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    series, term = 1.0, 1.0
    if dof % 2 == 1:
        # A(t|ν) = 2/π (θ + sinθ cosθ (1 + 2/3 cos²θ + … + (2·4⋯(ν−3))/(1·3⋯(ν−2)) cos^(ν−3)θ)), ν odd
        for j in range(1, (dof - 1) // 2):
            term *= (2 * j) / (2 * j + 1) * c2
            series += term
        inside = 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * series if dof > 1 else 0.0))
    else:
        # A(t|ν) = sinθ (1 + 1/2 cos²θ + … + (1·3⋯(ν−3))/(2·4⋯(ν−2)) cos^(ν−2)θ), ν even
        for j in range(1, dof // 2):
            term *= (2 * j - 1) / (2 * j) * c2
            series += term
        inside = math.sin(theta) * series
    return min(1.0, max(0.0, 1.0 - inside))


def paired_t_test(values: Sequence[float], baseline: Sequence[float]) -> tuple[float, float] | None:
    """``(t, two-sided p)`` of ``values − baseline`` (paired), or ``None`` with fewer than 2 pairs.

    Identical non-zero differences give t = ±inf and p = 0; all-zero differences give t = 0 and p = 1.
    """
    if len(values) != len(baseline):
        raise ValueError(f"paired samples need equal lengths, got {len(values)} and {len(baseline)}")
    n = len(values)
    if n < 2:
        return None
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    mean, std = mean_std(diffs)
    if std == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (std / math.sqrt(n))
    return t, student_t_two_sided_p(t, n - 1)


# ---------------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One (dataset, row, metric) entry of a table."""

    dataset: str
    row: str
    metric: str
    seeds: tuple[int, ...]
    mean: float
    std: float
    paper: float | None
    p_value: float | None  # paired t-test against ``versus``; None for the baseline itself or < 2 pairs
    #: ``p_value`` after Holm's correction over every test of this dataset and metric; None unless there are two.
    p_holm: float | None = None
    #: Per-user bootstrap interval (:func:`bootstrap_interval`) of a single-seed cell whose run kept its ranks.
    interval: tuple[float, float] | None = None
    #: The row ``p_value`` compares against (the table's baseline, or the row's own ``versus``); None if untested.
    versus: str | None = None

    @property
    def relative_to_paper(self) -> float | None:
        """(ours − paper) / paper."""
        return None if self.paper in (None, 0) else (self.mean - self.paper) / self.paper


def summarize(results: Iterable[RunResult], *, baseline: str | None = None,
              paper: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
              metrics: Sequence[str] = TABLE_METRICS, versus: Mapping[str, str] | None = None) -> list[Cell]:
    """One :class:`Cell` per (dataset, row, metric) present in ``results``, in first-seen order.

    Args:
        results: Finished runs; a (dataset, row, seed) may appear once.
        baseline: Row name the paired t-test compares every other row against (by common seeds).
        paper: ``paper[row][dataset][metric]``: the paper's numbers, where it has them.
        metrics: Metric names to tabulate.
        versus: ``versus[row]``: the row that row is tested against instead of ``baseline``.
    """
    versus = versus or {}
    paper = paper or {}
    by_key: dict[tuple[str, str], dict[int, RunResult]] = {}
    for result in results:
        runs = by_key.setdefault((result.dataset, result.row), {})
        if result.seed in runs:
            raise ValueError(f"two results for dataset {result.dataset!r}, row {result.row!r}, seed {result.seed}")
        runs[result.seed] = result
    cells = []
    for (dataset, row), runs in by_key.items():
        against = versus.get(row, baseline)
        base = by_key.get((dataset, against)) if against is not None and row != against else None
        for metric in metrics:
            seeds = tuple(sorted(runs))
            values = [_metric(runs[s], metric) for s in seeds]
            mean, std = mean_std(values)
            p_value = None
            if base is not None:
                common = [s for s in seeds if s in base]
                test = paired_t_test([_metric(runs[s], metric) for s in common],
                                     [_metric(base[s], metric) for s in common])
                p_value = None if test is None else test[1]
            counts = runs[seeds[0]].rank_counts if len(seeds) == 1 else None
            cells.append(Cell(dataset, row, metric, seeds, mean, std,
                              paper.get(row, {}).get(dataset, {}).get(metric), p_value,
                              interval=None if counts is None else bootstrap_interval(counts, metric),
                              versus=against if base is not None else None))
    return holm_corrected(cells)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: the i-th smallest of m becomes
    ``max_{j <= i} min(1, (m - j + 1) · p_(j))``; rejecting where the adjusted p < α controls the family-wise error."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def holm_corrected(cells: Sequence[Cell]) -> list[Cell]:
    """``cells`` with ``p_holm`` set wherever a dataset has several tests on one metric (the family is those
    tests, whichever row each compares against)."""
    families: dict[tuple[str, str], list[int]] = {}
    for index, cell in enumerate(cells):
        if cell.p_value is not None:
            families.setdefault((cell.dataset, cell.metric), []).append(index)
    out = list(cells)
    for members in families.values():
        if len(members) < 2:
            continue
        for index, adjusted in zip(members, holm_adjust([cells[i].p_value for i in members]), strict=True):
            out[index] = replace(cells[index], p_holm=adjusted)
    return out


def _metric(result: RunResult, metric: str) -> float:
    if metric not in result.metrics:
        raise KeyError(f"run {result.dataset}/{result.row}/seed {result.seed} has no {metric!r} "
                       f"(it has {sorted(result.metrics)})")
    return float(result.metrics[metric])


# -------------------------------------------------------------------------------------------------- rendering
def protocol_line(results: Iterable[RunResult], dataset: str) -> str:
    """The protocol the dataset's runs share; fields on which they differ are listed with every value."""
    values: dict[str, set[str]] = {}
    for result in results:
        if result.dataset != dataset:
            continue
        fields = {**{k: str(v) for k, v in result.protocol.items() if k != "loss"},
                  "embeddings": result.semantic_profile or "none (w/o CL)"}
        for key, value in fields.items():
            values.setdefault(key, set()).add(value)
    return "; ".join(f"{k}={' | '.join(sorted(v))}" for k, v in values.items())


def format_cell(cell: Cell, baseline: str | None = None) -> str:
    # One seed has no spread to show; "± 0.0000" would read as a measured zero variance.
    text = f"{cell.mean:.4f} ± {cell.std:.4f}" if len(cell.seeds) > 1 else f"{cell.mean:.4f}"
    if cell.interval is not None:
        text += f" [{cell.interval[0]:.4f}, {cell.interval[1]:.4f}]"
    if cell.paper is not None:
        text += f" (paper {cell.paper:.4f}, {cell.relative_to_paper:+.1%})"
    if cell.p_value is not None:
        text += f" p={cell.p_value:.3g}" + (f" vs {cell.versus}" if cell.versus != baseline else "")
    if cell.p_holm is not None:
        text += f" (Holm {cell.p_holm:.3g})"
    return text


#: A cell further than this from the paper's number (relative, either way) gets its row's note under the table.
FAR_FROM_PAPER = 0.10


def far_from_paper_lines(cells: Sequence[Cell], notes: Mapping[str, str | Mapping[str, str]],
                         threshold: float = FAR_FROM_PAPER) -> list[str]:
    """One line per row with a cell more than ``threshold`` from the paper: the range of its differences and its
    note (a row's note, or its note for this dataset; or that none explains it). ``cells`` are one dataset's."""
    lines = []
    for row in dict.fromkeys(c.row for c in cells):
        far = [c for c in cells if c.row == row and c.relative_to_paper is not None
               and abs(c.relative_to_paper) > threshold]
        if not far:
            continue
        gaps = sorted(c.relative_to_paper for c in far)
        span = f"{gaps[0]:+.1%}" if len(gaps) == 1 else f"{gaps[0]:+.1%} to {gaps[-1]:+.1%}"
        metrics = ", ".join(c.metric.upper() for c in far)
        note = notes.get(row)
        reason = (note.get(far[0].dataset) if isinstance(note, Mapping) else note) or \
            "No protocol difference known to explain it"
        lines.append(f"{row}: {span} from the paper ({metrics}). {reason.rstrip('.')}.")
    return lines


@dataclass(frozen=True)
class NotRunRow:
    """A row of a table that is not trained here: its reason and the paper's numbers, shown instead of results."""

    dataset: str
    row: str
    reason: str
    paper: Mapping[str, float]


def to_markdown(cells: Sequence[Cell], results: Sequence[RunResult], *, title: str, baseline: str | None = None,
                metrics: Sequence[str] = TABLE_METRICS, command: str | None = None,
                not_run: Sequence[NotRunRow] = (), notes: Mapping[str, str | Mapping[str, str]] | None = None,
                far_from_paper: float = FAR_FROM_PAPER) -> str:
    """A Markdown section per dataset: mean ± std over seeds (paper, relative difference) and p vs ``baseline``;
    ``command``, when given, is stated under the title; ``not_run`` rows show the paper's numbers and why they
    were not run (never another row's numbers). Under each dataset's table, every row with a cell more than
    ``far_from_paper`` from the paper gets a line with its ``notes`` entry (:func:`far_from_paper_lines`)."""
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    tested = [c for c in cells if c.p_value is not None]
    if tested:
        own = any(c.versus != baseline for c in tested)
        against = (f"against the {baseline!r} row" + (", or the row named after it ('p=… vs X')" if own else "")
                   if baseline is not None else "against the row named after it ('p=… vs X')")
        lines += [f"p: two-sided paired t-test (by seed) {against}"
                  + ("; Holm: the same p after Holm's correction over every test on that dataset and metric."
                     if any(c.p_holm is not None for c in cells) else "."), ""]
    if any(c.interval is not None for c in cells):
        lines += [f"[a, b]: {BOOTSTRAP_LEVEL:.0%} per-user bootstrap interval of a single-seed cell "
                  f"({BOOTSTRAP_RESAMPLES:,} resamples of the users; the spread over users, not over seeds).", ""]
    for dataset in dict.fromkeys(c.dataset for c in cells):
        rows = list(dict.fromkeys(c.row for c in cells if c.dataset == dataset))
        lines += [f"## {dataset}", "", f"Protocol: {protocol_line(results, dataset)}", "",
                  "| row | seeds | " + " | ".join(m.upper() for m in metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        for row in rows:
            by_metric = {c.metric: c for c in cells if c.dataset == dataset and c.row == row}
            seeds = next(iter(by_metric.values())).seeds
            lines.append(f"| {row} | {len(seeds)} | "
                         + " | ".join(format_cell(by_metric[m], baseline) for m in metrics) + " |")
        skipped = [r for r in not_run if r.dataset == dataset]
        for r in skipped:
            lines.append(f"| {r.row} | 0 | " + " | ".join(
                "not run" + (f" (paper {r.paper[m]:.4f})" if m in r.paper else "") for m in metrics) + " |")
        if skipped:
            lines += [""] + [f"{r.row}: not run: {r.reason}." for r in skipped]
        far = far_from_paper_lines([c for c in cells if c.dataset == dataset and c.metric in metrics], notes or {},
                                   far_from_paper)
        if far:
            lines += ["", "Far from the paper (more than "
                      f"{far_from_paper:.0%} either way):", ""] + [f"- {line}" for line in far]
        lines.append("")
    return "\n".join(lines)


def to_csv(cells: Sequence[Cell]) -> str:
    """Long format: one line per (dataset, row, metric)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "row", "metric", "n", "seeds", "mean", "std", "paper", "relative_to_paper",
                     "p_value", "p_holm", "ci_low", "ci_high", "versus"])
    for c in cells:
        writer.writerow([c.dataset, c.row, c.metric, len(c.seeds), " ".join(map(str, c.seeds)), f"{c.mean:.6f}",
                         f"{c.std:.6f}", "" if c.paper is None else c.paper,
                         "" if c.relative_to_paper is None else f"{c.relative_to_paper:.6f}",
                         "" if c.p_value is None else f"{c.p_value:.6g}",
                         "" if c.p_holm is None else f"{c.p_holm:.6g}",
                         "" if c.interval is None else f"{c.interval[0]:.6f}",
                         "" if c.interval is None else f"{c.interval[1]:.6f}", c.versus or ""])
    return out.getvalue()

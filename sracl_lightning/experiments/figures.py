"""Figures as PNG: sparse-user groups (paper Fig. 5), sensitivity curves (Fig. 4), plug-and-play bars (Fig. 3) and
training curves.

    # Fig. 5: metrics per user group (sequence length < 7, 7-10, > 10), one bar per checkpoint
    python -m sracl_lightning.experiments.figures sparse --checkpoints [A.ckpt,B.ckpt] --labels [w/o CL,SRA-CL] \
        --output docs/results/sparse_beauty
    # what takes the first places of the ranking (the user's own last item?), and the metrics with them masked
    python -m sracl_lightning.experiments.figures top_ranks --checkpoints [A.ckpt,B.ckpt] --labels [w/o CL,SRA-CL] \
        --output docs/results/top_ranks_beauty
    # Fig. 4: a sweep is a table whose rows are parameter values (configs/tables/sensitivity_*.yaml), then
    python -m sracl_lightning.experiments.figures sensitivity --results_csv runs/tables/sensitivity_alpha/results.csv \
        --output fig4_alpha
    # Fig. 3: each backbone with and without SRA-CL, from the runner's table (rows with a 'versus')
    python -m sracl_lightning.experiments.figures plug_and_play --results_csv docs/results/plug_and_play_office.csv \
        --output docs/results/plug_and_play_office
    # training curves from a run's CSV log
    python -m sracl_lightning.experiments.figures curves --metrics_csv runs/beauty/csv/version_0/metrics.csv \
        --output curves_beauty

Each command writes ``<output>.png`` and, but for ``curves``, the plotted numbers as ``<output>.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from sracl_lightning.atomic import atomic_write, atomic_write_text  # noqa: E402
from sracl_lightning.experiments.records import iter_records  # noqa: E402
from sracl_lightning.experiments.tables import mean_std  # noqa: E402
from sracl_lightning.models.metrics import RankingMetrics, per_user_values  # noqa: E402

log = logging.getLogger(__name__)


#: The paper's Fig. 5 groups: total sequence length < 7, 7–10, > 10.
DEFAULT_GROUPS = ((0, 7), (7, 11), (11, None))


def group_label(low: int, high: int | None) -> str:
    if low == 0 and high is not None:
        return f"< {high}"
    return f"> {low - 1}" if high is None else f"{low}-{high - 1}"


# ----------------------------------------------------------------------------------------------- sparse users
def labelled_runs(checkpoints: Sequence[str], labels: Sequence[str] | None, data_root: str | None,
                  source_root: str | None):
    """Each checkpoint's ``(label, checkpoint, model, data)``, its run rebuilt as ``evaluate.py`` does, one at a
    time; ``labels`` default to the checkpoints' file names."""
    from sracl_lightning.training.trained import load_run

    labels = labels or [Path(c).stem for c in checkpoints]
    if len(labels) != len(checkpoints):
        raise ValueError(f"{len(labels)} labels for {len(checkpoints)} checkpoints")
    for label, checkpoint in zip(labels, checkpoints, strict=True):
        yield (label, checkpoint, *load_run(checkpoint, source_root=source_root, data_root=data_root))


@torch.no_grad()
def metrics_by_length(model, data, *, split: str = "test", groups=DEFAULT_GROUPS, ks: Sequence[int] = (10, 20),
                      batch_size: int = 1024) -> dict[str, dict[str, float]]:
    """Full-ranking metrics of ``model`` per group of users by their whole sequence length.

    Args:
        model: A trained :class:`~sracl_lightning.methods.module.SRACLModule` (the backbone ranks all items).
        data: Its :class:`~sracl_lightning.training.datamodule.SeqRecDataModule`.
        split: ``test`` or ``val``.
        groups: ``(low, high)`` half-open length ranges; ``high=None`` is unbounded.
        ks: Cut-offs.
        batch_size: Users per forward pass.

    Returns:
        ``{group label: {"users": n, "hr@10": ..., ...}}``, same protocol as evaluation (masking as the model's).
    """
    data.prepare_data()
    data.setup("test" if split == "test" else "validate")
    samples = data.datasets[split]
    lengths = torch.from_numpy(data.sequences.lengths)  # (U,)
    metrics = {group_label(*g): RankingMetrics(ks) for g in groups}
    model.eval()
    for start in range(0, len(samples), batch_size):
        batch = samples.__getitems__(list(range(start, min(start + batch_size, len(samples)))))
        exclude = (batch.history - 1).to(model.device) if model.mask_seen_items else None  # (B, H)
        target = batch.target - 1  # (B,)
        h = model(batch.input_ids.to(model.device))  # (B, D)
        ranks = model.target_ranks(h, target.to(model.device), exclude).cpu()  # (B,), evaluation's rule
        user_lengths = lengths[batch.user]  # (B,)
        for (low, high), metric in zip(groups, metrics.values(), strict=True):
            rows = (user_lengths >= low) & (user_lengths < (high if high is not None else math.inf))
            if rows.any():
                metric.update_ranks(ranks[rows])
    out = {}
    for label, metric in metrics.items():
        values = {k: float(v) for k, v in metric.compute().items()}
        out[label] = {"users": int(values.pop("count")), **values}
    return out


def plot_groups(results: dict[str, dict[str, dict[str, float]]], metrics: Sequence[str], path: Path,
                title: str = "", errors: dict[str, dict[str, dict[str, float]]] | None = None) -> Path:
    """Grouped bars: one panel per metric, groups on the x axis, one bar per model (``errors``: error bars)."""
    models = list(results)
    groups = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    width = 0.8 / len(models)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, model in enumerate(models):
            heights = [results[model][g][metric] for g in groups]
            spread = None if errors is None else [errors[model][g][metric] for g in groups]
            ax.bar([x + i * width for x in range(len(groups))], heights, width, yerr=spread, capsize=3, label=model)
        counts = [results[models[0]][g]["users"] for g in groups]
        ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(groups))],
                      [f"{g}\n({n:,} users)" for g, n in zip(groups, counts, strict=True)])
        ax.set_xlabel("sequence length")
        ax.set_title(metric.upper())
    axes[0][0].legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def sparse(checkpoints: list[str], labels: list[str] | None = None, output: str = "sparse_users",
           split: str = "test", metrics: tuple[str, ...] = ("hr@20", "ndcg@20"), data_root: str | None = None,
           source_root: str | None = None) -> dict:
    """Fig. 5: metrics per sequence-length group for each checkpoint; writes ``<output>.png`` and ``.json``.

    Checkpoints given the same label (one model's seeds) are one bar: their mean, with their sample standard
    deviation as the error bar; the JSON keeps every checkpoint's numbers under ``runs``. Returns the means."""
    ks = sorted({int(m.split("@")[1]) for m in metrics})
    runs = [(label, checkpoint, metrics_by_length(model, data, split=split, ks=ks))
            for label, checkpoint, model, data in labelled_runs(checkpoints, labels, data_root, source_root)]
    labels = [label for label, _, _ in runs]
    means: dict[str, dict[str, dict[str, float]]] = {}
    stds: dict[str, dict[str, dict[str, float]]] = {}
    for label in dict.fromkeys(labels):
        mine = [result for run_label, _, result in runs if run_label == label]
        means[label], stds[label] = {}, {}
        for group, first in mine[0].items():
            spread = {name: mean_std([result[group][name] for result in mine]) for name in first}
            means[label][group] = {name: int(mean) if name == "users" else mean for name, (mean, _) in spread.items()}
            stds[label][group] = {name: std for name, (_, std) in spread.items()}
    several = any(labels.count(label) > 1 for label in means)
    path = plot_groups(means, metrics, Path(output).with_suffix(".png"), errors=stds if several else None,
                       title=f"{split} metrics by user group" + (" (mean ± std over seeds)" if several else ""))
    atomic_write_text(Path(output).with_suffix(".json"),
                      json.dumps({"split": split, "results": means, "std": stds,
                                  "runs": [{"label": label, "checkpoint": checkpoint, "results": result}
                                           for label, checkpoint, result in runs]}, indent=2) + "\n")
    log.info(f"wrote {path}")
    return means


# ------------------------------------------------------------------------------------------- the top of ranking
#: Rank bins of :func:`top_ranks`' histogram: (first, last) rank, ``None`` = unbounded.
RANK_BINS = ((1, 1), (2, 5), (6, 10), (11, 20), (21, 50), (51, None))


@torch.no_grad()
def top_of_ranking(model, data, *, split: str = "test", batch_size: int = 1024) -> dict:
    """What takes the first places of ``model``'s full ranking (no masking, as evaluated): how often the top item is
    one of the user's own window items (the last one in particular), where the targets land, and the metrics with
    the window's items masked (the S3-Rec lineage's protocol) beside the unmasked ones; and how sharp the ranking
    is: the mean norm of the user vectors and the mean softmax probability of the target over all items.

    Returns:
        ``{"users": U, "top_is_last_item": share, "top_is_window_item": share, "user_vector_norm": mean,
        "target_probability": mean, "target_rank_bins": {bin: users}, "unmasked": {"hr@10": ..., ...},
        "window_masked": {...}}``.
    """
    data.prepare_data()
    data.setup("test" if split == "test" else "validate")
    samples = data.datasets[split]
    model.eval()
    last = window = 0
    norm = probability = 0.0
    ranks, masked = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples.__getitems__(list(range(start, min(start + batch_size, len(samples)))))
        input_ids = batch.input_ids.to(model.device)  # (B, L), left-padded with 0
        target = (batch.target - 1).to(model.device)  # (B,)
        h = model(input_ids)  # (B, D)
        scores = model.item_scores(h)  # (B, N)
        top = scores.argmax(1) + 1  # (B,) item ids
        norm += float(h.float().norm(dim=1).sum())
        probability += float(scores.log_softmax(1).gather(1, target[:, None]).exp().sum())
        last += int((top == input_ids[:, -1]).sum())
        window += int((top[:, None] == input_ids).any(1).sum())
        ranks.append(model.target_ranks(h, target).cpu())
        masked.append(model.target_ranks(h, target, input_ids - 1).cpu())  # padding -> -1: nothing masked
    ranks, masked = torch.cat(ranks), torch.cat(masked)  # (U,)
    users = len(ranks)

    def summary(r: torch.Tensor) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in per_user_values(r, (10, 20)).items() if not m.startswith("mrr")}

    bins = {}
    for low, high in RANK_BINS:
        name = str(low) if low == high else f"> {low - 1}" if high is None else f"{low}-{high}"
        inside = (ranks >= low) if high is None else (ranks >= low) & (ranks <= high)
        bins[name] = int(inside.sum())
    return {"users": users, "top_is_last_item": last / users, "top_is_window_item": window / users,
            "user_vector_norm": norm / users, "target_probability": probability / users,
            "target_rank_bins": bins, "unmasked": summary(ranks), "window_masked": summary(masked)}


def top_ranks(checkpoints: list[str], labels: list[str] | None = None, output: str = "top_ranks",
              split: str = "test", data_root: str | None = None, source_root: str | None = None) -> dict:
    """:func:`top_of_ranking` of each checkpoint; writes ``<output>.json`` and ``<output>.png`` (users per bin of
    the target's rank up to 50, one bar per checkpoint)."""
    results, paths = {}, {}
    for label, checkpoint, model, data in labelled_runs(checkpoints, labels, data_root, source_root):
        results[label], paths[label] = top_of_ranking(model, data, split=split), checkpoint
    bins = list(next(iter(results.values()))["target_rank_bins"])[:-1]  # the open last bin (most users) in the JSON
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(results)
    for i, (label, result) in enumerate(results.items()):
        ax.bar([x + i * width for x in range(len(bins))], [result["target_rank_bins"][b] for b in bins], width,
               label=f"{label} (top item = last input item for {result['top_is_last_item']:.0%})")
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(bins))], bins)
    ax.set_xlabel(f"rank of the {split} target (full ranking, no masking)")
    ax.set_ylabel("users")
    ax.legend(fontsize=8)
    path = _save(fig, Path(output).with_suffix(".png"))
    atomic_write_text(Path(output).with_suffix(".json"),
                      json.dumps({"split": split, "checkpoints": paths, "results": results}, indent=2) + "\n")
    log.info(f"wrote {path}")
    return results


# ------------------------------------------------------------------------------------------------ sensitivity
_VALUE = re.compile(r"=\s*([-+0-9.eE]+)\s*$")


def sensitivity(results_csv: str, output: str = "sensitivity", metrics: tuple[str, ...] = ("hr@20", "ndcg@20"),
                parameter: str | None = None) -> dict:
    """Fig. 4: metric (mean ± std over seeds) against a swept value, from a runner table whose row names end in
    ``= <value>`` (e.g. ``α = 0.05``). One panel per metric, one line per dataset."""
    with Path(results_csv).open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    curves: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for row in rows:
        match = _VALUE.search(row["row"])
        if match is None:
            raise ValueError(f"{results_csv}: row {row['row']!r} does not end in '= <value>'")
        if row["metric"] in metrics:
            curves.setdefault(row["metric"], {}).setdefault(row["dataset"], []).append(
                (float(match.group(1)), float(row["mean"]), float(row["std"])))
    if not curves:
        raise ValueError(f"{results_csv}: none of the metrics {list(metrics)}")
    parameter = parameter or rows[0]["row"].split("=")[0].strip()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.4), squeeze=False)
    for ax, (metric, by_dataset) in zip(axes[0], curves.items(), strict=True):
        for dataset, points in by_dataset.items():
            points.sort()
            xs, ys, es = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=dataset)
        ax.set_xlabel(parameter)
        ax.set_title(metric.upper())
    axes[0][0].legend()
    path = _save(fig, Path(output).with_suffix(".png"))
    atomic_write_text(Path(output).with_suffix(".json"), json.dumps(curves, indent=2) + "\n")
    log.info(f"wrote {path}")
    return curves


# ------------------------------------------------------------------------------------------------ plug and play
def plug_and_play(results_csv: str, output: str = "plug_and_play",
                  metrics: tuple[str, ...] = ("hr@20", "ndcg@20")) -> dict:
    """Fig. 3: each row tested against its own row (the runner's CSV ``versus`` column, e.g. ``GRU4Rec + SRA-CL``
    against ``GRU4Rec``) as a pair of bars, labelled with the relative change and the paired p (Holm-corrected
    where the table corrected it). One panel per (dataset, metric).

    Both bars are the mean ± std over the seeds the two rows share, as the paired test is (the per-seed numbers come
    from the ``.runs.jsonl`` the runner writes beside the CSV), so a row with fewer seeds is not compared with its
    partner's mean over other seeds."""
    csv_path = Path(results_csv)
    records_path = csv_path.with_suffix(".runs.jsonl")
    with csv_path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "versus" not in rows[0]:
        raise ValueError(f"{results_csv}: no 'versus' column (a table written before the runner recorded which row "
                         "each row is tested against): rebuild it with the runner's --table_only true")
    if not records_path.is_file():
        raise FileNotFoundError(f"{records_path}: the run records the runner writes beside {csv_path.name} (the "
                                "per-seed numbers) are missing")
    values: dict[tuple[str, str, str], dict[int, float]] = {}
    # Every record, by the row it was written for: two rows of one configuration are one run but two bars.
    for record, _ in iter_records([records_path]):
        r = record.result
        for metric, value in r.metrics.items():
            values.setdefault((r.dataset, r.row, metric), {})[r.seed] = float(value)
    pairs: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        if not r["versus"] or r["metric"] not in metrics:
            continue
        ours, theirs = (values.get((r["dataset"], row, r["metric"]), {}) for row in (r["row"], r["versus"]))
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            continue
        without, with_ = mean_std([theirs[s] for s in seeds]), mean_std([ours[s] for s in seeds])
        p = r["p_holm"] or r["p_value"]
        pairs.setdefault(r["dataset"], {}).setdefault(r["metric"], []).append({
            "backbone": r["versus"], "row": r["row"], "seeds": seeds, "without": list(without), "with": list(with_),
            "change": with_[0] / without[0] - 1, "p": float(p) if p else None, "p_corrected": bool(r["p_holm"])})
    if not pairs:
        raise ValueError(f"{results_csv}: no row tested against another row, with a seed in common, on "
                         f"{list(metrics)} (a table spec's 'versus')")
    panels = [(dataset, metric) for dataset, by_metric in pairs.items() for metric in by_metric]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (dataset, metric) in zip(axes[0], panels, strict=True):
        drawn = pairs[dataset][metric]
        xs = range(len(drawn))
        for offset, side, label in ((-0.2, "without", "without"), (0.2, "with", "with SRA-CL")):
            ax.bar([x + offset for x in xs], [d[side][0] for d in drawn], width=0.4, yerr=[d[side][1] for d in drawn],
                   capsize=3, label=label)
        for x, d in zip(xs, drawn, strict=True):
            p = "" if d["p"] is None else f"\np={d['p']:.2g}" + (" (Holm)" if d["p_corrected"] else "")
            top = max(d["with"][0] + d["with"][1], d["without"][0] + d["without"][1])
            ax.annotate(f"{d['change']:+.1%}{p}", (x, top), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(list(xs), [f"{d['backbone']}\n({len(d['seeds'])} seeds)" for d in drawn])
        ax.set_title(f"{dataset}: {metric.upper()}")
        ax.margins(y=0.25)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2, frameon=False)
    path = _save(fig, Path(output).with_suffix(".png"), rect=(0, 0, 1, 0.93))
    atomic_write_text(Path(output).with_suffix(".json"), json.dumps(pairs, indent=2) + "\n")
    log.info(f"wrote {path}")
    return pairs


# ---------------------------------------------------------------------------------------------------- curves
def curves(metrics_csv: str, output: str = "curves", columns: tuple[str, ...] = ("val/mrr@10", "val/ndcg@20",
                                                                                  "train/loss_epoch")) -> Path:
    """Training curves from a CSVLogger ``metrics.csv``: one panel per column, by epoch."""
    with Path(metrics_csv).open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    present = [c for c in columns if any(r.get(c) for r in rows)]
    if not present:
        raise ValueError(f"{metrics_csv}: none of the columns {list(columns)} has a value")
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.2), squeeze=False)
    for ax, column in zip(axes[0], present, strict=True):
        points = [(int(float(r["epoch"])), float(r[column])) for r in rows if r.get(column)]
        ax.plot(*zip(*points, strict=True), marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(column)
    path = _save(fig, Path(output).with_suffix(".png"))
    log.info(f"wrote {path}")
    return path


def _save(fig, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Save atomically (temporary file, then rename) and close the figure; ``rect``: the area ``tight_layout`` fills
    (room for a figure legend)."""
    fig.tight_layout(rect=rect)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path


if __name__ == "__main__":
    from jsonargparse import auto_cli

    from sracl_lightning.training.cli_errors import show_package_logs

    show_package_logs()
    auto_cli({"sparse": sparse, "top_ranks": top_ranks, "sensitivity": sensitivity, "plug_and_play": plug_and_play,
              "curves": curves}, as_positional=False)

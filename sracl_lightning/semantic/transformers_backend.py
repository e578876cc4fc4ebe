"""A local Hugging Face causal LM as the LLM stage's backend, greedy decoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sracl_lightning.datasets.manifest import model_folder_fingerprint
from sracl_lightning.semantic.llm import Messages, ResultCallback, SummaryBackend


class TransformersBackend(SummaryBackend):
    """A local causal LM via ``transformers``, greedy decoding (the equivalent of temperature 0).

    Prompts go through the tokenizer's chat template when it has one, else the message contents joined by a
    blank line ("system\\n\\nuser"). Batches are left-padded and sorted by length (order is restored); only the
    generated continuation is returned, stripped. The model loads on the first :meth:`summarize`.

    Args:
        model_path: A local model directory (or a hub id, if the hub is reachable).
        max_new_tokens: Most tokens generated per response.
        batch_size: Prompts per ``generate`` call.
        device: Torch device.
        dtype: ``"auto"`` (the checkpoint's dtype) or a torch dtype name such as ``"bfloat16"``.
    """

    def __init__(self, model_path: str | Path, max_new_tokens: int = 160, batch_size: int = 8, device: str = "cpu",
                 dtype: str = "auto") -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"need max_new_tokens >= 1 and batch_size >= 1; got {max_new_tokens}, {batch_size}")
        self.model_path = str(model_path)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self._model = None
        self._tokenizer = None

    def _fingerprint(self) -> str | None:
        """Hash of a local model folder (:func:`~sracl_lightning.datasets.manifest.model_folder_fingerprint`), so
        replaced weights miss the cache; ``None`` for a hub name."""
        root = Path(self.model_path)
        return model_folder_fingerprint(root) if root.is_dir() else None

    def settings(self) -> dict[str, Any]:
        # batch_size and device are left out: they change speed, not (nominally) the greedy output.
        return {"backend": "transformers", "model": self.model_path, "fingerprint": self._fingerprint(),
                "max_new_tokens": self.max_new_tokens, "decoding": "greedy", "dtype": self.dtype}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"{self.model_path}: the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        self._model = model.to(self.device).eval()
        self._tokenizer = tokenizer

    def prompt_text(self, messages: Messages) -> str:
        self._load()
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    def summarize(self, requests: Sequence[Messages], on_result: ResultCallback | None = None) -> list[str]:
        if not requests:
            return []
        import torch

        self._load()
        tok, model = self._tokenizer, self._model
        chat = bool(getattr(tok, "chat_template", None))
        prompts = [self.prompt_text(m) for m in requests]
        # Similar lengths share a batch, which keeps padding (and wasted compute) small.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # A chat template already inserts the special tokens it wants.
            enc = tok([prompts[i] for i in batch], return_tensors="pt", padding=True,
                      add_special_tokens=not chat).to(self.device)
            with torch.inference_mode():
                out = model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                     pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)  # (B, new)
            for i, text in zip(batch, texts, strict=True):
                results[i] = text.strip()
                if on_result is not None:
                    on_result(i, results[i])
        return results



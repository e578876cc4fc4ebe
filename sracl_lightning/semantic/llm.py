"""The LLM stage's interface and its crash-safe response cache (docs/method.md#semantic-stage).

A :class:`SummaryBackend` turns chat prompts into summaries; three implementations are interchangeable:

* :class:`~sracl_lightning.semantic.openai_backend.OpenAICompatibleBackend`: any ``/chat/completions`` server
  (DeepSeek's API, as in the paper, or a local vLLM / llama.cpp server), asynchronous with bounded concurrency and
  retries;
* :class:`~sracl_lightning.semantic.transformers_backend.TransformersBackend`: a local Hugging Face causal LM,
  greedy decoding;
* :class:`PassthroughBackend`: no LLM; returns the prompt's user message (the paper's "w/o LLM" ablation).

:func:`summarize_with_cache` asks a backend only for prompts missing from a :class:`ResponseCache`, an
append-only JSONL file written response by response, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from sracl_lightning.datasets.manifest import stable_hash
from sracl_lightning.semantic.prompts import user_message_text

Messages = list[dict[str, str]]
#: Called with (index in the request list, response text) as soon as a response is complete.
ResultCallback = Callable[[int, str], None]


class LLMRequestError(RuntimeError):
    """A request failed for good: a non-retryable HTTP status, or retries exhausted."""


class LLMRateLimitError(LLMRequestError):
    """The server asked (``Retry-After``) to wait longer than the backend's ``max_retry_wait_s`` allows.

    Attributes:
        retry_after_s: The wait the server asked for, in seconds.
        max_retry_wait_s: The backend's cap.
    """

    def __init__(self, message: str, retry_after_s: float, max_retry_wait_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.max_retry_wait_s = max_retry_wait_s


class SummaryBackend(ABC):
    """Turns chat requests into response texts."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """What determines the responses (model and sampling parameters); part of every cache key.

        Must never hold credentials.
        """

    @abstractmethod
    def summarize(self, requests: Sequence[Messages], on_result: ResultCallback | None = None) -> list[str]:
        """Answer every request; the result is in request order.

        Args:
            requests: Chat message lists ``[{"role": ..., "content": ...}, ...]``.
            on_result: Called with ``(index, text)`` as each response completes (in completion order), so a
                caller can persist it before the whole batch is done.
        """


class PassthroughBackend(SummaryBackend):
    """No LLM: the "summary" is the prompt's user message, i.e. the raw item/user text (Table 4, "w/o LLM")."""

    def settings(self) -> dict[str, Any]:
        return {"backend": "passthrough"}

    def summarize(self, requests: Sequence[Messages], on_result: ResultCallback | None = None) -> list[str]:
        texts = [user_message_text(messages) for messages in requests]
        if on_result is not None:
            for i, text in enumerate(texts):
                on_result(i, text)
        return texts


# ---- response cache ------------------------------------------------------------------------------------------
class ResponseCache:
    """Append-only JSONL of ``{"key": sha256, "response": str}``, one line per completed response.

    Each :meth:`put` writes and flushes its line at once, so a crash or Ctrl-C loses at most the line being
    written. Loading ignores a truncated last line (and cuts it off the file before the next append); a damaged
    line elsewhere is an error, since no crash produces one. One writer at a time.

    Args:
        path: The JSONL file; created on the first :meth:`put`.
        fsync: Also ``os.fsync`` after each line (survives power loss, at a cost per response).
    """

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._responses: dict[str, str] = {}
        self._file: IO[bytes] | None = None
        self._valid_bytes = 0  # the file's length up to its last complete line
        self._needs_newline = False
        self._load()

    @staticmethod
    def key(settings: dict[str, Any], messages: Messages) -> str:
        """Cache key of one request under one backend's settings."""
        return stable_hash({"settings": settings, "messages": messages})

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        offset = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            if line.strip():
                try:
                    entry = json.loads(line)
                    if not (isinstance(entry, dict) and isinstance(entry.get("key"), str)
                            and isinstance(entry.get("response"), str)):
                        raise ValueError("expected {\"key\": str, \"response\": str}")
                except ValueError as err:
                    if last:
                        break  # an interrupted write: drop it
                    raise ValueError(f"{self.path}:{number}: damaged cache line ({err}); only the last line can "
                                     "be cut short by a crash, so remove this line or the file") from err
                self._responses[entry["key"]] = entry["response"]
                self._needs_newline = last  # a complete last line that lacks only its newline
            offset += len(line) + (0 if last else 1)
        self._valid_bytes = offset

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # kept open across puts; closed in close()
            if self._file.tell() > self._valid_bytes:
                self._file.truncate(self._valid_bytes)  # cut a half-written last line
                self._file.seek(self._valid_bytes)
            if self._needs_newline:
                self._file.write(b"\n")
                self._needs_newline = False
        return self._file

    def put(self, key: str, response: str) -> None:
        """Record one response and flush it to disk."""
        f = self._open()
        f.write(json.dumps({"key": key, "response": response}, ensure_ascii=False).encode("utf-8") + b"\n")
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        self._responses[key] = response

    def get(self, key: str) -> str | None:
        return self._responses.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._responses

    def __len__(self) -> int:
        return len(self._responses)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize_with_cache(backend: SummaryBackend, requests: Sequence[Messages], cache: ResponseCache,
                         progress: bool = True, description: str = "LLM") -> list[str]:
    """Responses to all ``requests``, asking ``backend`` only for those missing from ``cache``.

    Identical requests are asked once. Each response is appended to the cache as soon as the backend reports it,
    so rerunning after an interruption asks only for what is still missing.

    Args:
        backend: Produces missing responses.
        requests: Chat message lists.
        cache: Where responses are kept, keyed by (``backend.settings()``, messages).
        progress: Show a progress bar over the missing requests.
        description: Progress-bar label.

    Returns:
        One response per request, in order.
    """
    from tqdm.auto import tqdm

    settings = backend.settings()
    keys = [ResponseCache.key(settings, messages) for messages in requests]
    todo: dict[str, int] = {}  # key -> first request with it
    for i, key in enumerate(keys):
        if key not in cache and key not in todo:
            todo[key] = i
    todo_keys = list(todo)
    stored = [False] * len(todo_keys)

    with tqdm(total=len(todo_keys), desc=description, disable=not progress or not todo_keys, unit="req") as bar:

        def on_result(j: int, text: str) -> None:
            if not stored[j]:
                cache.put(todo_keys[j], text)
                stored[j] = True
                bar.update(1)

        if todo_keys:
            texts = backend.summarize([requests[todo[k]] for k in todo_keys], on_result=on_result)
            if len(texts) != len(todo_keys):
                raise RuntimeError(f"{type(backend).__name__} returned {len(texts)} responses for "
                                   f"{len(todo_keys)} requests")
            for j, text in enumerate(texts):  # a backend that never calls on_result still gets cached
                on_result(j, text)
    return [cache.get(key) for key in keys]  # type: ignore[misc]  # all present now

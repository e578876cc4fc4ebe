"""LLM backends that turn chat prompts into summaries, and the crash-safe response cache
(docs/method.md#semantic-stage).

Three interchangeable :class:`SummaryBackend` implementations:

* :class:`OpenAICompatibleBackend`: any ``/chat/completions`` server (DeepSeek's API, as in the paper, or a
  local vLLM / llama.cpp server), asynchronous with bounded concurrency and retries;
* :class:`TransformersBackend`: a local Hugging Face causal LM, greedy decoding;
* :class:`PassthroughBackend`: no LLM; returns the prompt's user message (the paper's "w/o LLM" ablation).

:func:`summarize_with_cache` asks a backend only for prompts missing from a :class:`ResponseCache`, an
append-only JSONL file written response by response, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import email.utils
import json
import os
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

from sracl_lightning.manifest import model_folder_fingerprint, stable_hash
from sracl_lightning.prompts import user_message_text

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


# ---- OpenAI-compatible HTTP backend ----------------------------------------------------------------------------
_BODY_EXCERPT = 500


#: Query parameters whose values are shown in messages; every other value (api-key, key, token, sig, ...) is not.
_PUBLIC_QUERY_PARAMS = frozenset({"api-version"})
#: Shorter URL parts are not searched for in server bodies (replacing "1" everywhere would garble them).
_MIN_SECRET_LEN = 4


def redact_url(url: str) -> str:
    """``url`` with its user info and query values replaced by ``***``, for messages.

    ``https://user:pw@host/v1?api-key=K&api-version=2024-06-01`` becomes
    ``https://***@host/v1?api-key=***&api-version=2024-06-01``: the user name and password go entirely, and so
    does the value of every query parameter except ``api-version`` (a bare ``?TOKEN`` goes whole). The fragment is
    dropped. A URL that cannot be parsed becomes ``<unparsable URL>``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    netloc = f"{host}:{port}" if port is not None else host
    if "@" in parts.netloc:
        netloc = f"***@{netloc}"
    query = "&".join(_redact_query_item(item) for item in parts.query.split("&") if item)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _redact_query_item(item: str) -> str:
    name, has_value, _ = item.partition("=")
    if unquote_plus(name) in _PUBLIC_QUERY_PARAMS:
        return item
    return f"{name}=***" if has_value else "***"  # a bare ?TOKEN is all value


def _url_secrets(parts: SplitResult) -> list[str]:
    """The credential-bearing parts of a URL (user, password, non-public query values), raw and decoded."""
    values = [parts.username, parts.password]
    for item in parts.query.split("&"):
        name, has_value, value = item.partition("=")
        if unquote_plus(name) not in _PUBLIC_QUERY_PARAMS:
            values += [value, unquote_plus(value)] if has_value else [name, unquote_plus(name)]
    secrets = {v for value in values if value for v in (value, unquote(value)) if len(v) >= _MIN_SECRET_LEN}
    return sorted(secrets, key=len, reverse=True)  # longest first, so a secret's substring never splits it


def _redact(text: str, secrets: str | Sequence[str] | None) -> str:
    if isinstance(secrets, str):
        secrets = [secrets]
    for secret in secrets or ():
        if secret:
            text = text.replace(secret, "***")
    return text


_DELTA_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (also fractional) or an HTTP date.

    Returns None (use the backend's own backoff) for a missing or unusable value: empty, negative, ``inf``/``nan``,
    exponents, words, or a date that does not parse. A date in the past means 0; a date without a zone is read as
    GMT, which HTTP dates always are.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # a number too large for a float is inf: longer than any cap
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # Python < 3.10 returned None for some unparsable dates
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleBackend(SummaryBackend):
    """Chat completions over HTTP, ``POST {base_url}/chat/completions``, as the released code did with aiohttp.

    The endpoint is ``base_url`` with ``/chat/completions`` appended to its path; its query string is kept on every
    request, so ``https://{resource}.openai.azure.com/openai/deployments/{name}?api-version=2024-06-01`` works.

    Requests run concurrently (at most ``concurrency`` in flight). HTTP 429, 5xx, timeouts, connection errors and
    malformed 200 answers are retried up to ``max_retries`` times with exponential backoff (``backoff_s * 2^k``,
    jittered, capped at ``max_backoff_s``), or after the server's ``Retry-After`` when it sends one and it is at
    most ``max_retry_wait_s``; a longer ``Retry-After`` fails at once with :class:`LLMRateLimitError` rather than
    leave the run asleep. Any other 4xx fails at once with the status and an excerpt of the body. The first
    request that fails for good stops the run; responses completed before it were already passed to
    ``on_result``.

    The API key is read from the environment variable ``api_key_env`` when :meth:`summarize` runs and sent as
    ``Authorization: Bearer ...``; it is never stored on the object, logged, or put in :meth:`settings`. Without
    the variable (a local server) no Authorization header is sent. Credentials in ``base_url`` itself (user info,
    which aiohttp sends as basic auth, or a query parameter such as ``?api-key=``) are sent as written but never
    shown: messages, exceptions, ``repr`` and the :attr:`base_url` / :attr:`url` attributes carry the URL as
    :func:`redact_url` prints it, and :meth:`settings` keeps only scheme, host, port and path.

    NOTE: the released code used 200 concurrent requests in batches of 1000 with 5 s pauses and retried only
    connection errors and timeouts (a 429 or 5xx left a ``None`` response); here failures are retried or raised.

    Args:
        base_url: API root, e.g. ``https://api.deepseek.com/v1`` or ``http://127.0.0.1:8000/v1``, optionally with
            a query string; ``http`` or ``https``.
        model: Model name, ``deepseek-chat`` in the paper.
        api_key_env: Name of the environment variable holding the key.
        temperature: Sampling temperature; 0.0 in the paper (docs/method.md#user-summaries).
        top_p: Nucleus mass; 0.001 in the paper.
        max_tokens: Response length cap, or None for the server's default (the code set none).
        concurrency: Most requests in flight.
        max_retries: Retries per request after the first attempt (code: 5).
        timeout_s: Total time allowed per attempt (code: 200 s for users, 120 s for items).
        backoff_s: First retry delay; doubles with each retry.
        max_backoff_s: Cap on the computed backoff.
        max_retry_wait_s: Longest server ``Retry-After`` honoured, in seconds; a longer one raises
            :class:`LLMRateLimitError`. Raise it to sit out long rate-limit windows unattended.

    Raises:
        ValueError: an invalid ``base_url`` or limit.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0,
                 top_p: float = 0.001, max_tokens: int | None = None, concurrency: int = 16, max_retries: int = 5,
                 timeout_s: float = 200.0, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 max_retry_wait_s: float = 120.0) -> None:
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0 or not max_retry_wait_s >= 0:
            raise ValueError(f"need concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0, "
                             f"max_retry_wait_s >= 0; got {concurrency}, {max_retries}, {timeout_s}, {backoff_s}, "
                             f"{max_retry_wait_s}")
        try:
            parts = urlsplit(base_url.strip())
            parts.port  # noqa: B018  # raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"base_url {redact_url(base_url)!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, like https://api.deepseek.com/v1; got "
                             f"{redact_url(base_url)!r}")
        endpoint = parts._replace(path=parts.path.rstrip("/") + "/chat/completions", fragment="")
        self._endpoint = _SecretURL(urlunsplit(endpoint))
        self._secrets = _SecretList(_url_secrets(parts))
        self._base = _SecretURL(urlunsplit(parts._replace(path=parts.path.rstrip("/"), fragment="")))
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_wait_s = max_retry_wait_s

    @property
    def base_url(self) -> str:
        """The API root as given, credentials redacted (:func:`redact_url`)."""
        return redact_url(self._base.value)

    @property
    def url(self) -> str:
        """The endpoint requests go to, credentials redacted (:func:`redact_url`)."""
        return redact_url(self._endpoint.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    def settings(self) -> dict[str, Any]:
        # Credentials can hide in a URL (user:password@host, ?api-key=...): keep only scheme, host and path.
        parts = urlsplit(self._base.value)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return {"backend": "openai-compatible", "base_url": urlunsplit((parts.scheme, host, parts.path, "", "")),
                "model": self.model, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens}

    def payload(self, messages: Messages) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                "top_p": self.top_p, "stream": False}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def summarize(self, requests: Sequence[Messages], on_result: ResultCallback | None = None) -> list[str]:
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(requests, on_result))
        # Called from inside an event loop (a notebook): run ours in a worker thread instead of nesting loops.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._run(requests, on_result)).result()

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(1.0, 1.25)

    async def _run(self, requests: Sequence[Messages], on_result: ResultCallback | None) -> list[str]:
        import aiohttp  # imported here so the other backends work without it
        import yarl  # aiohttp's URL type

        key = os.environ.get(self.api_key_env) or None
        secrets = _SecretList(([key] if key else []) + list(self._secrets))
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # encoded=True: the query goes out byte for byte as written (a signature's %2F must not become /).
        endpoint = yarl.URL(self._endpoint.value, encoded=True)
        results: list[str | None] = [None] * len(requests)
        pending = iter(range(len(requests)))

        async def worker(session: aiohttp.ClientSession) -> None:
            # A fixed pool of workers bounds the requests in flight without creating one task per request.
            for index in pending:
                results[index] = text = await self._fetch(session, endpoint, index, requests[index], headers,
                                                          secrets)
                if on_result is not None:
                    on_result(index, text)

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [asyncio.ensure_future(worker(session)) for _ in range(min(self.concurrency, len(requests)))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if t.exception() is not None]
            if failed:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise failed[0].exception()
        return results  # type: ignore[return-value]  # every slot is filled when no worker failed

    async def _fetch(self, session: Any, endpoint: Any, index: int, messages: Messages, headers: dict[str, str],
                     secrets: Sequence[str]) -> str:
        try:
            return await self._attempts(session, endpoint, index, messages, headers, secrets)
        except LLMRequestError:
            raise
        except Exception as err:  # e.g. aiohttp.InvalidURL, whose text holds the whole URL
            # Raised without its cause: a traceback of the original would print the URL with its credentials.
            raise LLMRequestError(f"request {index} to {self.url} failed: {type(err).__name__}: "
                                  f"{_redact(str(err), secrets)}") from None

    async def _attempts(self, session: Any, endpoint: Any, index: int, messages: Messages,
                        headers: dict[str, str], secrets: Sequence[str]) -> str:
        import aiohttp

        body = json.dumps(self.payload(messages))
        last_error = ""
        for attempt in range(self.max_retries + 1):
            delay = self._delay(attempt)
            try:
                async with session.post(endpoint, data=body, headers=headers) as response:
                    text = await response.text(errors="replace")
                    excerpt = _redact(text[:_BODY_EXCERPT], secrets)
                    if response.status == 200:
                        try:
                            content = json.loads(text)["choices"][0]["message"]["content"]
                            if isinstance(content, str):
                                return content
                        except (ValueError, KeyError, IndexError, TypeError):
                            pass
                        last_error = f"HTTP 200 without choices[0].message.content: {excerpt!r}"
                    elif response.status == 429 or response.status >= 500:
                        last_error = f"HTTP {response.status}: {excerpt!r}"
                        header = response.headers.get("Retry-After")
                        wait = _retry_after(header)
                        if wait is not None and wait > self.max_retry_wait_s:
                            raise LLMRateLimitError(
                                f"request {index} to {self.url}: HTTP {response.status} and the server asked to "
                                f"wait {wait:.0f} s before retrying (Retry-After: {_redact(header, secrets)!r}), "
                                f"more than max_retry_wait_s={self.max_retry_wait_s:g} s; raise max_retry_wait_s "
                                f"to wait that long, or rerun later (the cache keeps finished responses). "
                                f"Body: {excerpt!r}", retry_after_s=wait, max_retry_wait_s=self.max_retry_wait_s)
                        delay = delay if wait is None else wait
                    else:
                        raise LLMRequestError(f"request {index} to {self.url} failed with HTTP {response.status} "
                                              f"(not retried): {excerpt!r}")
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as err:
                last_error = f"{type(err).__name__}: {_redact(str(err), secrets)}"
            if attempt < self.max_retries:
                await asyncio.sleep(delay)
        raise LLMRequestError(f"request {index} to {self.url} failed after {self.max_retries + 1} attempts; "
                              f"last error: {last_error}")


class _SecretURL:
    """A URL that may carry credentials: ``repr`` shows it redacted, :attr:`value` is the real one."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"_SecretURL({redact_url(self.value)!r})"

    __str__ = __repr__


class _SecretList(tuple):
    """Secrets to redact from messages; ``repr`` shows only how many there are."""

    def __repr__(self) -> str:
        return f"<{len(self)} secrets>"

    __str__ = __repr__


# ---- local Hugging Face backend --------------------------------------------------------------------------------
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
        """Hash of a local model folder (:func:`~sracl_lightning.manifest.model_folder_fingerprint`), so replaced
        weights miss the cache; ``None`` for a hub name."""
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

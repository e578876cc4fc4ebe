"""An LLM behind any OpenAI-compatible ``/chat/completions`` endpoint (DeepSeek's API, as in the paper, or a
local vLLM / llama.cpp / Ollama server): asynchronous with bounded concurrency, retries with backoff, ``Retry-After``
honoured up to a cap, and credentials redacted from every message.
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
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

from sracl_lightning.semantic.llm import LLMRateLimitError, LLMRequestError, Messages, ResultCallback, SummaryBackend

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



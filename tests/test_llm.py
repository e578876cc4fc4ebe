"""Tests of the LLM backends and the response cache against a real local HTTP server and a tiny local model.

The server (``http.server`` on 127.0.0.1, port 0) speaks OpenAI's ``/chat/completions`` and can be scripted to
answer 429/5xx/4xx, to stall, or to hold requests at a gate; it counts requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sracl_lightning.semantic.llm import (
    LLMRateLimitError,
    LLMRequestError,
    PassthroughBackend,
    ResponseCache,
    SummaryBackend,
    summarize_with_cache,
)
from sracl_lightning.semantic.openai_backend import OpenAICompatibleBackend, _retry_after, redact_url
from sracl_lightning.semantic.transformers_backend import TransformersBackend

KEY_ENV = "SRACL_TEST_LLM_KEY"
SECRET = "sk-test-SECRET-0123456789"


def make_requests(n: int, prefix: str = "history") -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "You are a test."}, {"role": "user", "content": f"{prefix} {i}"}]
            for i in range(n)]


def expected(requests: list[list[dict[str, str]]]) -> list[str]:
    return [f"summary of <{r[-1]['content']}>" for r in requests]


class FakeLLM:
    """State and script of the fake server; hit numbers count from 1 in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[dict] = []  # {"n", "prompt", "auth", "query", "payload"} per request, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = 0.0
        self.slow: dict[int, float] = {}  # hit -> extra seconds before answering
        self.script: dict[int, tuple[int, dict[str, str], str]] = {}  # hit -> (status, headers, body)
        self.always: tuple[int, dict[str, str], str] | None = None  # answer to every hit
        self.gate_after: int | None = None  # hits after this one wait for `release`
        self.release = threading.Event()
        self.url = ""

    def prompts(self, since: int = 0) -> list[str]:
        return [h["prompt"] for h in self.hits[since:]]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802  # http.server's naming
        fake: FakeLLM = self.server.fake
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        path, _, query = self.path.partition("?")
        with fake.lock:
            n = len(fake.hits) + 1
            fake.hits.append({"n": n, "prompt": payload["messages"][-1]["content"], "query": query,
                              "auth": self.headers.get("Authorization"), "payload": payload})
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            if path != "/v1/chat/completions":
                return self._send(404, '{"error": "no such route"}')
            if fake.gate_after is not None and n > fake.gate_after:
                fake.release.wait(30)
                return self._send(503, '{"error": "gate"}')
            time.sleep(fake.delay_s + fake.slow.get(n, 0.0))
            scripted = fake.script.get(n) or fake.always
            if scripted is not None:
                status, headers, body = scripted
                return self._send(status, body, headers)
            reply = f"summary of <{payload['messages'][-1]['content']}>"
            self._send(200, json.dumps({"id": f"c{n}", "object": "chat.completion", "model": payload["model"],
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": reply}}]}))
        finally:
            with fake.lock:
                fake.in_flight -= 1


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a killed client leaves broken pipes; expected
        pass


@pytest.fixture
def server():
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.fake = FakeLLM()
    httpd.fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd.fake
    httpd.fake.release.set()
    httpd.shutdown()
    httpd.server_close()


def backend(fake: FakeLLM, **overrides) -> OpenAICompatibleBackend:
    kwargs = {"base_url": fake.url, "model": "test-model", "api_key_env": KEY_ENV, "concurrency": 4,
              "max_retries": 3, "timeout_s": 5.0, "backoff_s": 0.01}
    return OpenAICompatibleBackend(**(kwargs | overrides))


@pytest.fixture(autouse=True)
def no_key(monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


# ---- OpenAI-compatible backend -----------------------------------------------------------------------------
@pytest.mark.integration
def test_responses_in_order_with_paper_sampling(server: FakeLLM) -> None:
    requests = make_requests(10)
    assert backend(server).summarize(requests) == expected(requests)
    assert len(server.hits) == 10
    payload = server.hits[0]["payload"]
    assert payload["model"] == "test-model"
    # The paper's sampling settings (docs/method.md#user-summaries).
    assert (payload["temperature"], payload["top_p"], payload["stream"]) == (0.0, 0.001, False)
    assert "max_tokens" not in payload
    assert payload["messages"] in requests


@pytest.mark.integration
def test_rate_limit_honours_retry_after(server: FakeLLM) -> None:
    server.script = {n: (429, {"Retry-After": "0.2"}, '{"error": "slow down"}') for n in (1, 2)}
    requests = make_requests(3)
    start = time.perf_counter()
    assert backend(server, concurrency=1).summarize(requests) == expected(requests)
    assert time.perf_counter() - start >= 0.4  # two waits of the server's 0.2 s, not the 0.01 s backoff
    assert len(server.hits) == 5
    assert server.prompts()[:3] == ["history 0"] * 3


@pytest.mark.integration
def test_server_errors_midway_are_retried(server: FakeLLM) -> None:
    server.script = {4: (500, {}, "internal error"), 5: (502, {}, "bad gateway")}
    requests = make_requests(8)
    assert backend(server, concurrency=2).summarize(requests) == expected(requests)
    assert len(server.hits) == 10


@pytest.mark.integration
def test_timeouts_are_retried(server: FakeLLM) -> None:
    server.slow = {1: 1.0}
    requests = make_requests(2)
    assert backend(server, concurrency=1, timeout_s=0.3).summarize(requests) == expected(requests)
    assert server.prompts()[:2] == ["history 0", "history 0"]


@pytest.mark.integration
def test_concurrency_never_exceeds_bound(server: FakeLLM) -> None:
    server.delay_s = 0.05
    requests = make_requests(15)
    assert backend(server, concurrency=3).summarize(requests) == expected(requests)
    assert 2 <= server.max_in_flight <= 3


@pytest.mark.integration
def test_bad_request_fails_at_once_with_body(server: FakeLLM) -> None:
    server.always = (400, {}, '{"error": {"message": "unknown model test-model"}}')
    with pytest.raises(LLMRequestError, match=r"HTTP 400 \(not retried\).*unknown model test-model"):
        backend(server, concurrency=1).summarize(make_requests(3))
    assert len(server.hits) == 1


@pytest.mark.integration
def test_retries_exhausted(server: FakeLLM) -> None:
    server.always = (503, {}, "overloaded")
    with pytest.raises(LLMRequestError, match=r"after 4 attempts; last error: HTTP 503: 'overloaded'"):
        backend(server, concurrency=1, max_retries=3).summarize(make_requests(1))
    assert len(server.hits) == 4


@pytest.mark.integration
def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.01, timeout_s=2)
    with pytest.raises(LLMRequestError, match="after 3 attempts; last error: Client"):
        dead.summarize(make_requests(1))


@pytest.mark.integration
def test_api_key_is_sent_but_never_stored(server: FakeLLM, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    llm = backend(server)
    requests = make_requests(4)
    with ResponseCache(tmp_path / "cache.jsonl") as cache:
        assert summarize_with_cache(llm, requests, cache, progress=False) == expected(requests)
    assert [h["auth"] for h in server.hits] == [f"Bearer {SECRET}"] * 4
    assert SECRET not in json.dumps(llm.settings())
    assert SECRET not in repr(vars(llm))
    assert SECRET.encode() not in (tmp_path / "cache.jsonl").read_bytes()
    # A server that echoes the key in an error body does not get it into our error message.
    server.always = (401, {}, f'{{"error": "invalid key {SECRET}"}}')
    with pytest.raises(LLMRequestError, match="HTTP 401") as info:
        llm.summarize(make_requests(1, prefix="other"))
    assert SECRET not in str(info.value) and "invalid key ***" in str(info.value)


@pytest.mark.integration
def test_no_key_means_no_authorization_header(server: FakeLLM) -> None:
    backend(server).summarize(make_requests(2))
    assert [h["auth"] for h in server.hits] == [None, None]


@pytest.mark.unit
def test_retry_after_forms() -> None:
    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert _retry_after(None) is None and _retry_after("soon") is None


@pytest.mark.unit
def test_settings_hide_url_credentials() -> None:
    llm = OpenAICompatibleBackend("https://user:pw@api.example.com:8443/v1?api-key=abc", "m", max_tokens=64)
    assert llm.settings() == {"backend": "openai-compatible", "base_url": "https://api.example.com:8443/v1",
                              "model": "m", "temperature": 0.0, "top_p": 0.001, "max_tokens": 64}


URL_PASSWORD = "pw-URL-SECRET-42"
QUERY_KEY = "qk-QUERY-SECRET-77"
QUERY_SIG = "a+b/c=="  # as a SAS signature: percent-encoded in the URL
URL_SECRETS = (URL_PASSWORD, QUERY_KEY, "a%2Bb%2Fc%3D%3D", QUERY_SIG, SECRET)


def secret_url(base: str, user: str = "alice") -> str:
    """``base`` (``http://host:port/v1``) with a password and credential query parameters put in."""
    parts = urlsplit(base)
    return (f"http://{user}:{URL_PASSWORD}@{parts.netloc}{parts.path}?api-key={QUERY_KEY}"
            f"&sig=a%2Bb%2Fc%3D%3D&api-version=2024-06-01")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in URL_SECRETS:
            assert secret not in text, f"{secret!r} leaked into {text!r}"


def failure(llm: OpenAICompatibleBackend, requests: list, error: type[Exception] = LLMRequestError) -> str:
    """The message and full traceback (causes included) of the error ``llm.summarize(requests)`` raises."""
    with pytest.raises(error) as info:
        llm.summarize(requests)
    return "".join(traceback.format_exception(info.type, info.value, info.tb))


def run_within(seconds: float, fn):
    """``fn()``'s result, failing the test if it is still running after ``seconds`` (left to die as a daemon)."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the test below
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.integration
def test_base_url_query_string_is_kept_on_requests(server: FakeLLM) -> None:
    # Azure-style: the API version (and here a signature whose %2F must survive) rides on the query string.
    query = "api-version=2024-06-01&sig=a%2Bb%2Fc%3D%3D"
    requests = make_requests(3)
    for base in (f"{server.url}?{query}", f"{server.url}/?{query}"):
        assert backend(server, base_url=base).summarize(requests) == expected(requests)
    assert [h["query"] for h in server.hits] == [query] * 6  # and the path was /v1/chat/completions


@pytest.mark.integration
def test_url_credentials_are_sent_but_never_shown(server: FakeLLM) -> None:
    llm = OpenAICompatibleBackend(secret_url(server.url), "test-model", api_key_env=KEY_ENV, max_retries=1,
                                  backoff_s=0.01, timeout_s=5.0)
    requests = make_requests(2)
    assert llm.summarize(requests) == expected(requests)
    basic = base64.b64encode(f"alice:{URL_PASSWORD}".encode()).decode()
    assert [h["auth"] for h in server.hits] == [f"Basic {basic}"] * 2  # user info is still used, as basic auth
    assert server.hits[0]["query"] == f"api-key={QUERY_KEY}&sig=a%2Bb%2Fc%3D%3D&api-version=2024-06-01"
    shown = "https://***@127.0.0.1"
    assert llm.base_url.startswith(shown.replace("https", "http")) and "api-key=***" in llm.url
    assert_no_secret(repr(llm), str(llm), repr(vars(llm)), json.dumps(llm.settings()), llm.url, llm.base_url)

    # A server that echoes the credentials it got, in a non-retried error and in retried ones.
    echo = f'{{"error": "bad key {QUERY_KEY} for alice:{URL_PASSWORD}, sig {QUERY_SIG}"}}'
    server.always = (403, {}, echo)
    message = failure(llm, requests)
    assert "HTTP 403" in message and "api-key=***&sig=***&api-version=2024-06-01" in message
    assert_no_secret(message)
    server.always = (503, {}, echo)
    message = failure(llm, requests)
    assert "after 2 attempts" in message and "bad key ***" in message
    assert_no_secret(message)
    server.always = (429, {"Retry-After": "3600"}, echo)
    assert_no_secret(failure(llm, requests, LLMRateLimitError))

    # Connection errors, and errors aiohttp raises before any request (basic auth plus a key cannot both go).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = secret_url(f"http://127.0.0.1:{s.getsockname()[1]}/v1")
    dead = OpenAICompatibleBackend(dead_url, "m", api_key_env=KEY_ENV, max_retries=1, backoff_s=0.01, timeout_s=2)
    message = failure(dead, requests)
    assert "after 2 attempts; last error: Client" in message
    assert_no_secret(message)
    os.environ[KEY_ENV] = SECRET  # removed again by the autouse no_key fixture
    message = failure(llm, requests)
    assert "Cannot combine AUTHORIZATION header" in message
    assert_no_secret(message)
    with pytest.raises(ValueError, match=r"http\(s\) URL") as info:
        OpenAICompatibleBackend(f"ftp://bob:{URL_PASSWORD}@example.com/v1?token={QUERY_KEY}", "m")
    assert_no_secret(str(info.value))


@pytest.mark.unit
def test_redact_url() -> None:
    assert redact_url("https://u:p@h.example:8443/v1?api-key=K&key=K&token=T&access_token=A&sig=S&api-version=1"
                      "#frag") == ("https://***@h.example:8443/v1?api-key=***&key=***&token=***&access_token=***"
                                   "&sig=***&api-version=1")
    assert redact_url("https://user@h/v1?BARETOKEN&x=") == "https://***@h/v1?***&x=***"
    assert redact_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert redact_url("https://h:notaport/v1") == "<unparsable URL>"


@pytest.mark.integration
def test_long_retry_after_fails_at_once_with_a_named_error(server: FakeLLM) -> None:
    server.always = (429, {"Retry-After": "3600"}, '{"error": "come back in an hour"}')
    llm = backend(server, concurrency=1)  # the default cap, 120 s
    with pytest.raises(LLMRateLimitError) as info:
        run_within(20, lambda: llm.summarize(make_requests(2)))
    message = str(info.value)
    assert "asked to wait 3600 s" in message and "max_retry_wait_s=120 s" in message
    assert "raise max_retry_wait_s" in message and "come back in an hour" in message
    assert (info.value.retry_after_s, info.value.max_retry_wait_s) == (3600.0, 120.0)
    assert isinstance(info.value, LLMRequestError)  # callers catching the old error still catch it
    assert len(server.hits) == 1

    # The HTTP-date form, and a cap the caller lowered.
    server.always = (503, {"Retry-After": email.utils.formatdate(time.time() + 3600, usegmt=True)}, "maintenance")
    with pytest.raises(LLMRateLimitError, match=r"HTTP 503 and the server asked to wait 3[56]\d\d s"):
        run_within(20, lambda: llm.summarize(make_requests(1)))
    server.always = (429, {"Retry-After": "1"}, "{}")
    with pytest.raises(LLMRateLimitError, match=r"wait 1 s .*max_retry_wait_s=0.5 s"):
        run_within(20, lambda: backend(server, max_retry_wait_s=0.5).summarize(make_requests(1)))


@pytest.mark.integration
def test_retry_after_within_cap_or_garbage_is_retried(server: FakeLLM) -> None:
    server.script = {1: (429, {"Retry-After": "0.3"}, "{}"), 2: (503, {"Retry-After": "soon"}, "{}"),
                     3: (503, {"Retry-After": "-1"}, "{}"), 4: (429, {"Retry-After": "nan"}, "{}")}
    requests = make_requests(1)
    start = time.perf_counter()
    llm = backend(server, concurrency=1, max_retries=4, max_retry_wait_s=0.3)  # a wait equal to the cap is fine
    assert run_within(20, lambda: llm.summarize(requests)) == expected(requests)
    assert 0.3 <= time.perf_counter() - start < 5 and len(server.hits) == 5
    with pytest.raises(ValueError, match="max_retry_wait_s >= 0"):
        backend(server, max_retry_wait_s=-1.0)


@pytest.mark.unit
def test_retry_after_garbage_and_edge_forms() -> None:
    assert _retry_after(" 7 ") == 7.0 and _retry_after("0") == 0.0
    for garbage in ("", "  ", "-5", "nan", "inf", "-inf", "1e3", "0x10", "soon", "12, 13", "Wed, 99 Foo 2015"):
        assert _retry_after(garbage) is None, garbage
    assert _retry_after("9" * 400) == float("inf")  # longer than any cap
    future = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 98 <= _retry_after(future) <= 100
    naive = email.utils.formatdate(time.time() + 100).rsplit(" ", 1)[0] + " -0000"  # no zone: read as GMT
    assert 98 <= _retry_after(email.utils.format_datetime(email.utils.parsedate_to_datetime(naive))) <= 100


@pytest.mark.integration
def test_summarize_inside_a_running_event_loop(server: FakeLLM) -> None:
    requests = make_requests(3)

    async def notebook_cell() -> list[str]:
        return backend(server).summarize(requests)

    assert asyncio.run(notebook_cell()) == expected(requests)


# ---- cache -------------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_cache_asks_only_for_missing_and_dedupes(server: FakeLLM, tmp_path: Path) -> None:
    llm = backend(server)
    requests = make_requests(3)
    requests = requests + [requests[0]]  # a duplicate is asked once
    path = tmp_path / "cache.jsonl"
    with ResponseCache(path) as cache:
        assert summarize_with_cache(llm, requests, cache, progress=False) == expected(requests)
    assert sorted(server.prompts()) == ["history 0", "history 1", "history 2"]
    more = requests + make_requests(5)[3:]
    with ResponseCache(path) as cache:
        assert len(cache) == 3
        assert summarize_with_cache(llm, more, cache, progress=True) == expected(more)
    assert sorted(server.prompts(since=3)) == ["history 3", "history 4"]
    # Other sampling settings are other cache keys.
    with ResponseCache(path) as cache:
        summarize_with_cache(backend(server, temperature=0.7), requests[:1], cache, progress=False)
    assert len(server.hits) == 6


@pytest.mark.integration
def test_failure_midway_keeps_earlier_responses(server: FakeLLM, tmp_path: Path) -> None:
    server.script = {3: (422, {}, '{"error": "context too long"}')}
    requests = make_requests(5)
    with ResponseCache(tmp_path / "cache.jsonl") as cache, pytest.raises(LLMRequestError, match="HTTP 422"):
        summarize_with_cache(backend(server, concurrency=1), requests, cache, progress=False)
    with ResponseCache(tmp_path / "cache.jsonl") as cache:
        assert len(cache) == 2
        assert summarize_with_cache(backend(server), requests, cache, progress=False) == expected(requests)
    # Only what was missing is asked again; the rerun's requests run concurrently, so in any order.
    assert sorted(server.prompts()[3:]) == ["history 2", "history 3", "history 4"]


KILLED_RUN = """
import sys
from sracl_lightning.semantic.llm import ResponseCache, summarize_with_cache
from sracl_lightning.semantic.openai_backend import OpenAICompatibleBackend
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
requests = [[{"role": "system", "content": "You are a test."}, {"role": "user", "content": f"history {i}"}]
            for i in range(n)]
llm = OpenAICompatibleBackend(url, "test-model", api_key_env="SRACL_TEST_LLM_KEY", concurrency=2, timeout_s=60)
summarize_with_cache(llm, requests, ResponseCache(path), progress=False)
"""


@pytest.mark.integration
def test_killed_run_resumes_with_only_missing_requests(server: FakeLLM, tmp_path: Path) -> None:
    n, served = 20, 6
    path = tmp_path / "cache.jsonl"
    server.gate_after = served  # the 7th and later requests hang, so the run is stuck mid-way
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, server.url, str(path), str(n)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (path.is_file() and path.read_bytes().count(b"\n") >= served and len(server.hits) >= served + 2):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the subprocess did not reach the gate"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    # Responses were appended as they completed, before the run ended.
    lines = path.read_bytes().splitlines()
    assert len(lines) == served and all(json.loads(line)["response"].startswith("summary of") for line in lines)

    done_before = set(server.prompts()[:served])
    server.gate_after = None
    server.release.set()
    first_run_hits = len(server.hits)
    requests = make_requests(n)
    with ResponseCache(path) as cache:
        assert summarize_with_cache(backend(server), requests, cache, progress=False) == expected(requests)
    resumed = server.prompts(since=first_run_hits)
    assert len(resumed) == n - served  # each missing request once, no cached one again
    assert set(resumed) == {f"history {i}" for i in range(n)} - done_before
    assert len(path.read_bytes().splitlines()) == n


@pytest.mark.unit
def test_truncated_last_line_is_ignored_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    with ResponseCache(path) as cache:
        for i in range(3):
            cache.put(f"k{i}", f"r{i}")
    with path.open("ab") as f:
        f.write(b'{"key": "k3", "respo')  # a crash mid-write
    with ResponseCache(path) as cache:
        assert len(cache) == 3 and "k3" not in cache
        cache.put("k4", "r4")
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [e["key"] for e in entries] == ["k0", "k1", "k2", "k4"]


@pytest.mark.unit
def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "response": "x"}\n{"key": "b", "response": "y"}', encoding="utf-8")
    with ResponseCache(path) as cache:
        assert cache.get("b") == "y"
        cache.put("c", "z")
    assert [json.loads(line)["key"] for line in path.read_bytes().splitlines()] == ["a", "b", "c"]


@pytest.mark.unit
def test_damaged_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "response": "x"}\nnot json\n{"key": "b", "response": "y"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"cache\.jsonl:2: damaged cache line"):
        ResponseCache(path)


@pytest.mark.unit
def test_passthrough_returns_user_text(tmp_path: Path) -> None:
    requests = make_requests(2)
    with ResponseCache(tmp_path / "c.jsonl") as cache:
        assert summarize_with_cache(PassthroughBackend(), requests, cache, progress=False) == ["history 0",
                                                                                               "history 1"]
    assert PassthroughBackend().settings() == {"backend": "passthrough"}


@pytest.mark.unit
def test_backend_without_callbacks_is_still_cached(tmp_path: Path) -> None:
    class Upper(SummaryBackend):
        def settings(self) -> dict:
            return {"backend": "upper"}

        def summarize(self, requests, on_result=None) -> list[str]:
            return [r[-1]["content"].upper() for r in requests]

    with ResponseCache(tmp_path / "c.jsonl") as cache:
        assert summarize_with_cache(Upper(), make_requests(2), cache, progress=False) == ["HISTORY 0", "HISTORY 1"]
    assert len(ResponseCache(tmp_path / "c.jsonl")) == 2


# ---- local transformers backend ----------------------------------------------------------------------------
WORDS = "the a user likes buys red blue lip balm tent stove camping makeup cream night summary of preference".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer GPT-2 and a word-level tokenizer, built offline and saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]")
    torch.manual_seed(0)
    # initializer_range 0.1 makes the random model's greedy outputs vary with the prompt (0.02 repeats one token).
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=2,
                        eos_token_id=2, pad_token_id=0, initializer_range=0.1)
    path = tmp_path_factory.mktemp("tiny_lm")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


LM_REQUESTS = [[{"role": "system", "content": "summary of preference"}, {"role": "user", "content": text}]
               for text in ["red lip balm", "the user buys tent stove camping night cream", "blue",
                            "a user likes makeup", "night cream"]]


@pytest.mark.integration
def test_transformers_backend_deterministic_and_batch_invariant(tiny_model: Path) -> None:
    batched = TransformersBackend(tiny_model, max_new_tokens=6, batch_size=4)
    first = batched.summarize(LM_REQUESTS)
    assert len(first) == len(LM_REQUESTS) and all(isinstance(t, str) for t in first)
    assert len(set(first)) > 1  # the prompts matter
    assert batched.summarize(LM_REQUESTS) == first
    seen: list[int] = []
    single = TransformersBackend(tiny_model, max_new_tokens=6, batch_size=1)
    assert single.summarize(LM_REQUESTS, on_result=lambda i, _: seen.append(i)) == first  # left padding is exact
    assert sorted(seen) == list(range(len(LM_REQUESTS)))
    # Without a chat template the prompt is "system\n\nuser".
    assert single.prompt_text(LM_REQUESTS[0]) == "summary of preference\n\nred lip balm"
    settings = batched.settings()
    assert settings["decoding"] == "greedy" and settings["fingerprint"] and "batch_size" not in settings


@pytest.mark.integration
def test_transformers_backend_uses_chat_template(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant"
    tokenizer.save_pretrained(tmp_path)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        if (tiny_model / name).is_file():
            (tmp_path / name).write_bytes((tiny_model / name).read_bytes())
    llm = TransformersBackend(tmp_path, max_new_tokens=4, batch_size=2)
    assert llm.prompt_text(LM_REQUESTS[2]) == "system summary of preference user blue assistant"
    assert llm.settings()["fingerprint"] != TransformersBackend(tiny_model).settings()["fingerprint"]
    with ResponseCache(tmp_path / "cache.jsonl") as cache:
        out = summarize_with_cache(llm, LM_REQUESTS, cache, progress=False)
    assert out == llm.summarize(LM_REQUESTS)

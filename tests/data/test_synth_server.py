"""`data synth --endpoint` against a stand-in OpenAI-compatible server on 127.0.0.1 that misbehaves on cue:
HTTP 500/503, 429 with Retry-After, a stall past the timeout, an answer cut off mid-body, a connection closed
without an answer, a 4xx; and synth saving as it goes: killed (SIGKILL, SIGTERM) after some records, run
again, it makes only the rest, without repeating a record already saved.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpudoctor.data.load import load_dataset
from gpudoctor.data.synth import RetryPolicy, _retry_after, endpoint_generator
from gpudoctor.errors import ProblemFound

EXAMPLES = [
    {"instruction": "Write a haiku about rain.", "input": "", "output": "Soft rain on the roof / ..."},
    {"instruction": "Write a haiku about snow.", "input": "", "output": "White hush on the hills / ..."},
    {"instruction": "Write a haiku about wind.", "input": "", "output": "Wind combs the tall grass / ..."},
]
TOPICS = ["fog", "the sea", "dawn", "a lighthouse", "moss", "a kettle", "the tram", "an owl", "frost", "a market",
          "the desert", "a violin", "harbour cranes", "a library"]
REPLIES = [json.dumps({"instruction": f"Write a haiku about {t}.", "input": "", "output": f"Lines on {t} / ..."}) for t in TOPICS]
FAST = ["--backoff", "0.001", "--timeout", "5"]


class StandIn:
    """/v1/chat/completions on 127.0.0.1 in a thread. Each request takes the next action of `script`, then
    "ok" (the next of `replies`, cycled): "500", "503", "400", "429:<Retry-After>", "stall" (answers after
    `stall_s`), "drop" (promises 1,000 bytes, sends 20, hangs up), "close" (hangs up without answering)."""

    def __init__(self, replies: list[str], script: list[str] | None = None, *, delay: float = 0.0, stall_s: float = 1.5) -> None:
        self.replies, self.script, self.delay, self.stall_s = replies, list(script or []), delay, stall_s
        self.requests: list[dict] = []
        self.served = 0
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                standin.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            self.requests.append(body)
            action = self.script.pop(0) if self.script else "ok"
            if action == "ok":
                reply, self.served = self.replies[self.served % len(self.replies)], self.served + 1
        time.sleep(self.delay)
        try:
            if action == "close":
                handler.close_connection = True
            elif action == "stall":
                time.sleep(self.stall_s)
                send(handler, 200, b"{}")
            elif action == "drop":
                handler.send_response(200)
                handler.send_header("Content-Length", "1000")
                handler.end_headers()
                handler.wfile.write(b'{"choices": [{"mess')
            elif action == "ok":
                send(handler, 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode())
            else:
                code, _, retry_after = action.partition(":")
                error = {"error": {"message": f"stand-in says {code}", "type": "server_error"}}
                send(handler, int(code), json.dumps(error).encode(), {"Retry-After": retry_after} if retry_after else {})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: BaseHTTPRequestHandler, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(payload)


@pytest.fixture
def standin():
    made: list[StandIn] = []

    def start(replies: list[str] = REPLIES, script: list[str] | None = None, **options) -> StandIn:
        made.append(StandIn(replies, script, **options))
        return made[-1]

    yield start
    for server in made:
        server.close()


@pytest.fixture
def examples(tmp_path):
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(EXAMPLES), encoding="utf-8")
    return path


def generator(server: StandIn, policy: RetryPolicy, **options):
    retries: list[tuple[str, int, int, float]] = []
    slept: list[float] = []
    generate = endpoint_generator(server.url, "tiny", retry=policy, on_retry=lambda *a: retries.append(a), sleep=slept.append, **options)
    return generate, retries, slept


def test_each_transient_failure_is_retried_and_retry_after_is_honoured(standin):
    server = standin(script=["500", "429:1", "stall", "drop", "close"], stall_s=1.0)
    generate, retries, slept = generator(server, RetryPolicy(tries=6, base=0.01), timeout=0.3)
    assert json.loads(generate("prompt"))["instruction"] == "Write a haiku about fog."
    assert [reason for reason, *_ in retries] == [
        "HTTP 500 (stand-in says 500)", "HTTP 429 (stand-in says 429)", "no answer in time", "the answer was cut off", "the connection dropped",
    ]
    assert [(failed, allowed) for _, failed, allowed, _ in retries] == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6)]
    assert 1.0 <= slept[1] < 1.1  # the Retry-After, not the 0.02 s backoff
    assert all(wait <= 0.01 * 2 ** (i + 1) for i, wait in enumerate(slept) if i != 1)
    assert len(server.requests) == 6


def test_backoff_doubles_with_jitter_up_to_the_cap():
    import random

    policy = RetryPolicy(base=1.0, cap=5.0)
    waits = [policy.wait(failed, random.Random(7)) for failed in range(1, 6)]
    for failed, wait in enumerate(waits, start=1):
        full = min(5.0, 2 ** (failed - 1))
        assert full / 2 <= wait <= full
    assert waits[-1] <= 5.0 and len({round(policy.wait(3, random.Random(s)), 6) for s in range(20)}) > 10


def test_gives_up_after_the_tries_with_one_line(standin):
    server = standin(script=["503"] * 10)
    generate, retries, _ = generator(server, RetryPolicy(tries=3, base=0.001))
    with pytest.raises(ProblemFound) as caught:
        generate("prompt")
    message = str(caught.value)
    assert message.startswith(f"{server.url}/chat/completions: HTTP 503 (stand-in says 503) (3 tries in ") and "\n" not in message
    assert len(server.requests) == 3 and len(retries) == 2


def test_a_4xx_is_not_retried_and_names_the_status_and_message(standin):
    server = standin(script=["400"])
    generate, retries, _ = generator(server, RetryPolicy(tries=5, base=0.001))
    with pytest.raises(ProblemFound, match=r"answered HTTP 400: stand-in says 400; check --model"):
        generate("prompt")
    assert len(server.requests) == 1 and retries == []


def test_a_long_retry_after_ends_the_run_instead_of_waiting(standin):
    server = standin(script=["429:3600"])
    generate, _, slept = generator(server, RetryPolicy(longest_retry_after=60))
    with pytest.raises(ProblemFound, match=r"HTTP 429 .* asks to wait 3600 s \(Retry-After\); run the same command again later"):
        generate("prompt")
    assert slept == []


def test_retry_after_reads_seconds_and_http_dates():
    assert _retry_after("7") == 7.0 and _retry_after(None) is None and _retry_after("soon") is None
    assert 25 <= _retry_after(formatdate(time.time() + 30, usegmt=True)) <= 31
    assert _retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_is_one_line_after_a_short_wait(cli, examples, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    down = cli("data", "synth", "--examples", examples, "-n", "2", "-o", tmp_path / "x.jsonl", "--endpoint", url, *FAST)
    assert down.exit_code == 1 and time.monotonic() - started < 5
    line = down.stderr.splitlines()[-1]
    assert line.startswith(f"gpudoctor: error: cannot reach {url}/chat/completions (connection refused; 3 tries in ")
    assert line.endswith("is the server running? start it, or fix --endpoint")
    assert sum("connection refused: try" in x for x in down.stderr.splitlines()) == 2  # two short waits, then the line
    assert not (tmp_path / "x.jsonl").exists()


def test_an_unknown_host_is_one_line(cli, examples, tmp_path, monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    down = cli("data", "synth", "--examples", examples, "-n", "1", "-o", tmp_path / "x.json", "--endpoint", "http://llm.example/v1", *FAST)
    assert down.exit_code == 1
    assert "cannot reach http://llm.example/v1/chat/completions (no such host: Name or service not known; 3 tries" in down.stderr.splitlines()[-1]
    once = cli("data", "synth", "--examples", examples, "-n", "1", "-o", tmp_path / "x.json", "--endpoint", "http://llm.example/v1", "--retries", "0")
    assert once.exit_code == 1 and "(no such host: Name or service not known; 1 try in " in once.stderr and "try 2" not in once.stderr


def test_the_cli_says_what_it_retried(cli, standin, examples, tmp_path):
    server = standin(script=["500", "ok", "429:0"])
    out = tmp_path / "new.jsonl"
    result = cli("data", "synth", "--examples", examples, "-n", "2", "-o", out, "--endpoint", server.url, *FAST)
    assert result.exit_code == 0, result.stderr
    assert "HTTP 500 (stand-in says 500): try 2 of 5 in " in result.stderr
    assert "retried    HTTP 500 (stand-in says 500) 1 · HTTP 429 (stand-in says 429) 1" in result.stdout
    assert len(load_dataset(out).records) == 2


def test_a_failure_mid_run_keeps_what_was_made_and_says_how_to_go_on(cli, standin, examples, tmp_path):
    server = standin(script=["ok", "ok", "400"])
    out = tmp_path / "new.json"
    failed = cli("data", "synth", "--examples", examples, "-n", "5", "-o", out, "--endpoint", server.url, *FAST)
    assert failed.exit_code == 1 and failed.stderr.count("gpudoctor: error:") == 1
    assert failed.stderr.splitlines()[-1].endswith(f"{out} keeps 2 of 5 records; run the same command again to make the rest")
    assert len(load_dataset(out).records) == 2
    again = cli("data", "synth", "--examples", examples, "-n", "5", "-o", out, "--endpoint", server.url, *FAST)
    assert again.exit_code == 0, again.stderr
    assert f"wrote {out}: 5 of 5 records requested (2 from an earlier run)" in again.stdout


def test_a_full_disk_leaves_no_half_line_and_keeps_the_records(cli, standin, examples, tmp_path, monkeypatch):
    out = tmp_path / "made.jsonl"
    real_write, writes = os.write, []

    def full_after_two(fd, data):
        writes.append(data)
        return real_write(fd, data if len(writes) < 3 else data[: len(data) // 2])

    monkeypatch.setattr(os, "write", full_after_two)
    old_mask = os.umask(0o027)
    try:
        failed = cli("data", "synth", "--examples", examples, "-n", "5", "-o", out, "--endpoint", standin().url, *FAST)
    finally:
        os.umask(old_mask)
    monkeypatch.undo()
    assert failed.exit_code == 1
    assert failed.stderr.splitlines()[-1] == (
        f"gpudoctor: error: {out}: cannot save record 3 (short write); free some space or choose another -o path;"
        f" {out} keeps 2 of 5 records; run the same command again to make the rest"
    )
    assert out.read_text(encoding="utf-8").count("\n") == 2 and len(load_dataset(out).records) == 2
    assert out.stat().st_mode & 0o777 == 0o640  # the user's umask


def instructions(path) -> list[str]:
    return [r.alpaca.instruction for r in load_dataset(path).records]


@pytest.mark.parametrize("name", ["made.jsonl", "made.json"])
def test_a_rerun_resumes_and_never_repeats_a_saved_record(cli, standin, examples, tmp_path, name):
    out = tmp_path / name
    first = cli("data", "synth", "--examples", examples, "-n", "3", "-o", out, "--endpoint", standin().url, *FAST)
    assert first.exit_code == 0, first.stderr
    again = standin()  # a fresh server repeats its first replies, as a model can
    second = cli("data", "synth", "--examples", examples, "-n", "6", "-o", out, "--endpoint", again.url, *FAST)
    assert second.exit_code == 0, second.stderr
    made = instructions(out)
    assert len(made) == 6 and len(set(made)) == 6
    assert made == [f"Write a haiku about {t}." for t in TOPICS[:6]]
    assert "repeats an example or an earlier reply 3" in second.stdout
    done = cli("data", "synth", "--examples", examples, "-n", "6", "-o", out, "--endpoint", again.url, *FAST)
    assert done.exit_code == 0 and "already holds 6 records (-n 6); nothing to make" in done.stdout
    assert len(again.requests) == 6


def test_a_half_written_last_line_is_dropped_on_resume(cli, standin, examples, tmp_path):
    out = tmp_path / "made.jsonl"
    out.write_text(REPLIES[0] + "\n" + REPLIES[1] + "\n" + REPLIES[2][:25], encoding="utf-8")
    result = cli("data", "synth", "--examples", examples, "-n", "4", "-o", out, "--endpoint", standin().url, *FAST)
    assert result.exit_code == 0, result.stderr
    assert f"{out}: dropped a half-written last line" in result.stderr
    assert instructions(out) == [f"Write a haiku about {t}." for t in ["fog", "the sea", "dawn", "a lighthouse"]]


def test_an_output_of_another_format_is_refused(cli, standin, examples, tmp_path):
    out = tmp_path / "chat.jsonl"
    out.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    server = standin()
    result = cli("data", "synth", "--examples", examples, "-n", "4", "-o", out, "--endpoint", server.url, *FAST)
    assert result.exit_code == 2 and "holds messages records and the examples are alpaca; choose another -o path" in result.stderr
    assert server.requests == []


def synth_process(examples, out, url, n):
    command = [sys.executable, "-m", "gpudoctor", "data", "synth", "--examples", str(examples), "-n", str(n), "-o", str(out),
               "--endpoint", url, *FAST]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})


def saved_so_far(out) -> int:
    """Records in `out` now; it must load whenever it exists (never half-written)."""
    return len(load_dataset(out).records) if out.exists() and out.stat().st_size else 0


@pytest.mark.parametrize(("name", "how"), [("made.json", signal.SIGKILL), ("made.jsonl", signal.SIGKILL), ("made.jsonl", signal.SIGTERM)])
def test_a_killed_synth_keeps_its_records_and_a_rerun_makes_only_the_rest(cli, standin, examples, tmp_path, name, how):
    out, n = tmp_path / name, 10
    slow = standin(delay=0.15)
    process = synth_process(examples, out, slow.url, n)
    deadline = time.monotonic() + 60
    while saved_so_far(out) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=30)
    kept = saved_so_far(out)
    assert 3 <= kept < n
    if how == signal.SIGTERM:
        assert process.returncode == 130
        assert stderr.splitlines()[-1] == f"gpudoctor: interrupted: {out} keeps {kept} of {n} records; run the same command again to make the rest"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] or how == signal.SIGKILL
    again = cli("data", "synth", "--examples", examples, "-n", str(n), "-o", out, "--endpoint", standin().url, *FAST)
    assert again.exit_code == 0, again.stderr
    made = instructions(out)
    assert len(made) == n and len(set(made)) == n
    assert f"{kept} records from an earlier run; making {n - kept} more" in again.stderr

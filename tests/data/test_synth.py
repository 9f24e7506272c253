"""`data synth` against a tiny OpenAI-compatible server on 127.0.0.1 that stops by itself."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gpudoctor.data.load import load_dataset

EXAMPLES = [
    {"instruction": "Write a haiku about rain.", "input": "", "output": "Soft rain on the roof / ..."},
    {"instruction": "Write a haiku about snow.", "input": "", "output": "White hush on the hills / ..."},
    {"instruction": "Write a haiku about wind.", "input": "", "output": "Wind combs the tall grass / ..."},
]
REPLIES = [
    'Sure! {"instruction": "Write a haiku about fog.", "input": "", "output": "Fog swallows the pier / ..."}',
    "I cannot help with that.",  # no JSON object
    json.dumps(EXAMPLES[0]),  # repeats an example
    '{"instruction": "Write a haiku about fog.", "input": "", "output": "Fog swallows the pier / ..."}',  # repeats a reply
    '{"question": "x", "answer": "y"}',  # wrong keys
    '{"instruction": "Write a haiku about the sea.", "input": "", "output": "Salt wind, grey water / ..."}',
    '{"instruction": "Write a haiku about dawn.", "input": "", "output": "First light on the sill / ..."}',
]


@pytest.fixture
def server():
    requests: list[dict] = []
    replies = iter(REPLIES * 3)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if body["model"] == "missing":
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"error": "model not found"}')
                return
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": next(replies)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def examples(tmp_path):
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(EXAMPLES), encoding="utf-8")
    return path


def test_synth_validates_and_dedupes_replies(cli, server, examples, tmp_path, monkeypatch):
    url, requests = server
    monkeypatch.setenv("SYNTH_KEY", "secret")
    out = tmp_path / "new.json"
    result = cli("data", "synth", "--examples", examples, "-n", "3", "-o", out, "--endpoint", url,
                 "--model", "tiny", "--api-key-env", "SYNTH_KEY")
    assert result.exit_code == 0, result.stderr
    made = load_dataset(out)
    assert [r.alpaca.instruction for r in made.records] == [
        "Write a haiku about fog.", "Write a haiku about the sea.", "Write a haiku about dawn."
    ]
    assert "rejected   no JSON object in the reply 1 · repeats an example or an earlier reply 2 · not a valid alpaca record 1" in result.stdout
    assert requests[0]["path"] == "/v1/chat/completions" and requests[0]["auth"] == "Bearer secret"
    prompt = requests[0]["body"]["messages"][0]["content"]
    assert prompt.count('"instruction"') == 3


def test_synth_inputs_only_and_custom_prompt(cli, server, examples, tmp_path):
    url, requests = server
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Invent one more task like these:\n{examples}\n", encoding="utf-8")
    out = tmp_path / "inputs.jsonl"
    result = cli("data", "synth", "--examples", examples, "-n", "2", "-o", out, "--endpoint", url, "--model", "tiny",
                 "--inputs-only", "--prompt-file", prompt)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and all(row["output"] == "" for row in rows)
    assert requests[0]["body"]["messages"][0]["content"].startswith("Invent one more task like these:\nWrite a haiku")


def test_synth_errors_are_one_line(cli, server, examples, tmp_path):
    url, _ = server
    missing = cli("data", "synth", "--examples", examples, "-n", "1", "-o", tmp_path / "x.json", "--endpoint", url, "--model", "missing")
    assert missing.exit_code == 1 and "answered HTTP 404" in missing.stderr and missing.stderr.count("\n") == 1
    down = cli("data", "synth", "--examples", examples, "-n", "1", "-o", tmp_path / "x.json", "--endpoint", "http://127.0.0.1:9/v1", "--backoff", "0.001")
    assert down.exit_code == 1 and "cannot reach http://127.0.0.1:9/v1/chat/completions" in down.stderr
    neither = cli("data", "synth", "--examples", examples, "-n", "1", "-o", tmp_path / "x.json")
    assert neither.exit_code == 2 and "needs --endpoint" in neither.stderr
    assert not (tmp_path / "x.json").exists()

"""`data synth`: new records that imitate a few examples, from an LLM (HTTP endpoint or local model).

Each request shows the model a few examples (chosen with a seeded shuffle) and asks for one new
record as a JSON object in the same format. Replies are parsed, validated like any loaded record,
and dropped when they repeat an example, an earlier reply or a record already in the output
(exactly or nearly). With `inputs_only` the model writes only the user's side, as plain text; a
person writes the answers (semi-synthetic).

Every record is saved as it arrives (`SynthOutput`: a JSONL output is appended to, one line per
write; a JSON or CSV output is rewritten atomically), so an interrupted run keeps what it made, and
the same command run again counts what is there and makes only the rest.

The endpoint path uses only the standard library: timeouts, dropped connections, HTTP 429 and 5xx
are retried with bounded, jittered exponential backoff (a Retry-After is honoured); another 4xx,
or a server that stays unreachable for a few short tries, is one line. The local path imports
transformers lazily.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import json
import os
import random
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpudoctor.data.dedupe import NEAR_THRESHOLD, normalise, record_key_text, similarity, sketch
from gpudoctor.atomic import write_bytes, write_text
from gpudoctor.data.load import load_dataset, record_from_dict
from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record
from gpudoctor.data.write import CONVERTERS, container_for, render
from gpudoctor.errors import BadInput, GpudoctorError, ProblemFound

Generate = Callable[[str], str]
OnRetry = Callable[[str, int, int, float], None]  # reason, tries failed so far, tries allowed, seconds to wait

DEFAULT_PROMPT = """You write examples for fine-tuning a language model.
Here are some examples, one JSON object per line:

{examples}

Write ONE new example in the same format, language, tone and length, about a different situation
than any of the examples. Do not copy names, numbers or sentences from them.
Reply with the JSON object only, on one line."""

INPUTS_ONLY_PROMPT = """You write the user's side of conversations for fine-tuning a language model.
Here are some requests users made:

{examples}

Write ONE new request in the same language, tone and length, about a different situation than any
of the examples. Reply with the request text only."""

TRIES_PER_RECORD = 3


@dataclass
class SynthResult:
    dataset: Dataset
    requested: int
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    resumed: int = 0  # records an earlier run had saved (dataset.records starts with them)

    @property
    def new(self) -> int:
        return len(self.dataset.records) - self.resumed


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request is tried: `tries` in all, waiting between them `base` seconds doubled each
    time up to `cap`, with jitter; an unreachable server (connection refused, no such host) only
    `unreachable_tries`. A Retry-After up to `longest_retry_after` seconds is waited for; a longer one
    ends the run with one line."""

    tries: int = 5
    base: float = 1.0
    cap: float = 30.0
    unreachable_tries: int = 3
    longest_retry_after: float = 120.0

    def wait(self, failed: int, jitter: random.Random) -> float:
        """Seconds to wait after the `failed`-th try: half the doubled wait plus up to half again at random."""
        full = min(self.cap, self.base * 2 ** (failed - 1))
        return full / 2 + jitter.uniform(0, full / 2)


class _Transient(Exception):
    """A failed try worth another: `reason` in words, the server's Retry-After, whether it was unreachable."""

    def __init__(self, reason: str, *, retry_after: float | None = None, unreachable: bool = False, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry_after, self.unreachable, self.timeout = reason, retry_after, unreachable, timeout


UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def _transient(cause: object, target: str) -> _Transient:
    """What a failed connection or read was, in words; a certificate error is not worth another try."""
    if isinstance(cause, ssl.SSLCertVerificationError):
        raise ProblemFound(f"{target}: the server's certificate was refused ({cause.verify_message}); check --endpoint") from None
    if isinstance(cause, socket.gaierror):
        return _Transient(f"no such host: {cause.strerror or cause}", unreachable=True)
    if isinstance(cause, TimeoutError) or (isinstance(cause, str) and "timed out" in cause):
        return _Transient("no answer in time", timeout=True)
    if isinstance(cause, OSError) and cause.errno in UNREACHABLE_ERRNOS:
        return _Transient(cause.strerror.lower() if cause.strerror else "connection refused", unreachable=True)
    if isinstance(cause, http.client.IncompleteRead):
        return _Transient("the answer was cut off")
    if isinstance(cause, (ConnectionError, http.client.HTTPException)):
        return _Transient("the connection dropped")
    return _Transient(str(getattr(cause, "strerror", None) or cause or type(cause).__name__))


def _server_message(err: urllib.error.HTTPError) -> str:
    """The message in an error answer: OpenAI's error.message, FastAPI's detail, or the start of the text."""
    try:
        text = err.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        text = ""
    try:
        body = json.loads(text)
        inner = body.get("error", body) if isinstance(body, dict) else body
        found = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        text = found if isinstance(found, str) else json.dumps(found)
    except ValueError:
        pass
    return " ".join(text.split())[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _post(request: urllib.request.Request, target: str, timeout: float) -> object:
    """One try: the answer's JSON, or _Transient for what is worth another try, or ProblemFound."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        message = _server_message(err)
        if err.code == 429 or err.code >= 500:
            raise _Transient(f"HTTP {err.code}" + (f" ({message})" if message else ""), retry_after=_retry_after(err.headers.get("Retry-After"))) from None
        raise ProblemFound(f"{target} answered HTTP {err.code}: {message or err.reason}; check --model and the server's log") from None
    except urllib.error.URLError as err:
        raise _transient(err.reason, target) from None
    except (OSError, http.client.HTTPException) as err:
        raise _transient(err, target) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ProblemFound(f"{target} did not answer with JSON; is it an OpenAI-compatible server?") from None


def _gave_up(target: str, err: _Transient, tries: int, seconds: float, timeout: float) -> str:
    spent = f"{tries} {'try' if tries == 1 else 'tries'} in {seconds:.1f} s"
    if err.unreachable:
        return f"cannot reach {target} ({err.reason}; {spent}); is the server running? start it, or fix --endpoint"
    if err.timeout:
        return f"{target}: no answer within {timeout:g} s ({spent}); the server may be busy: raise --timeout or lower --max-tokens"
    return f"{target}: {err.reason} ({spent}); check the server's log"


def with_retries(send: Callable[[], object], target: str, policy: RetryPolicy, *, timeout: float,
                 on_retry: OnRetry | None = None, sleep: Callable[[float], None] = time.sleep) -> object:
    """`send()`, tried again after a _Transient failure as `policy` allows; giving up is one ProblemFound line."""
    jitter = random.Random()
    started = time.monotonic()
    failed = 0
    while True:
        try:
            return send()
        except _Transient as err:
            failed += 1
            allowed = min(policy.unreachable_tries, policy.tries) if err.unreachable else policy.tries
            if failed >= allowed:
                raise ProblemFound(_gave_up(target, err, failed, time.monotonic() - started, timeout)) from None
            wait = policy.wait(failed, jitter)
            if err.retry_after is not None:
                if err.retry_after > policy.longest_retry_after:
                    raise ProblemFound(f"{target} answered {err.reason} and asks to wait {err.retry_after:.0f} s (Retry-After); run the same command again later") from None
                wait = max(wait, err.retry_after)
            if on_retry:
                on_retry(err.reason, failed, allowed, wait)
            sleep(wait)


def endpoint_generator(url: str, model: str, *, api_key: str | None = None, temperature: float = 0.9,
                       max_tokens: int = 1024, timeout: float = 120.0, retry: RetryPolicy = RetryPolicy(),
                       on_retry: OnRetry | None = None, sleep: Callable[[float], None] = time.sleep) -> Generate:
    """POST to an OpenAI-compatible /v1/chat/completions (vLLM, Ollama, llama.cpp server, ...), with retries."""
    base = url.rstrip("/")
    target = base if base.endswith("/chat/completions") else (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
    if not target.startswith(("http://", "https://")):
        raise BadInput(f"--endpoint {url}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")

    def generate(prompt: str) -> str:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": temperature, "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        reply = with_retries(lambda: _post(request, target, timeout), target, retry, timeout=timeout, on_retry=on_retry, sleep=sleep)
        try:
            return str(reply["choices"][0]["message"]["content"] or "")  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            raise ProblemFound(f"{target} answered without choices[0].message.content; is it an OpenAI-compatible server?") from None

    return generate


def local_generator(model_path: str, *, temperature: float = 0.9, max_new_tokens: int = 512) -> Generate:
    """Generate with a local transformers model folder (imports the training stack: only here)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise BadInput("data synth --model needs the train extra: pip install 'gpudoctor[train]', or use --endpoint") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, torch_dtype="auto")
    except OSError as err:
        raise BadInput(f"{model_path}: not a local model folder transformers can load ({str(err).splitlines()[0]})") from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    def generate(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        else:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
        ids = ids.to(device)
        with torch.no_grad():
            out = model.generate(ids, do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    return generate


def _first_json_object(text: str) -> object | None:
    decoder = json.JSONDecoder()
    for start, ch in enumerate(text):
        if ch == "{":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    return None


def _user_text(record: Record) -> str:
    if record.alpaca is not None:
        return record.alpaca.instruction + ("\n\n" + record.alpaca.input if record.alpaca.input else "")
    return next((m.content for m in record.messages if m.role == "user"), "")


def _inputs_only_record(text: str, fmt: str, index: int) -> Record:
    if fmt == "alpaca":
        return Record(index, [Message("user", text), Message("assistant", "")], alpaca=AlpacaFields(instruction=text))
    return Record(index, [Message("user", text, "human"), Message("assistant", "", "gpt")])


class SynthOutput:
    """The output file, saved after every record so that an interruption keeps what was made: a JSONL
    file gets one whole line per write (then fsync), a JSON or CSV file is rewritten atomically.
    `records` starts with those an earlier run left there; `note` says what was repaired on opening."""

    def __init__(self, path: Path, fmt: str, records: list[Record], note: str = "") -> None:
        self.path, self.format, self.container = path, fmt, container_for(path)
        self.records, self.note = records, note
        self.resumed = len(records)

    def add(self, record: Record) -> None:
        """Save `record`; a Ctrl-C or SIGTERM meanwhile waits until it is saved and counted."""
        with _signals_held():
            if self.container != "jsonl":
                everything = Dataset(str(self.path), self.format, self.container, [*self.records, record])
                write_text(self.path, render(everything, self.format, self.container))
            else:
                self._append(render(Dataset(str(self.path), self.format, "jsonl", [record]), self.format, "jsonl").encode("utf-8"))
            self.records.append(record)

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as err:
            os.ftruncate(fd, size)  # a line either whole or not at all
            raise ProblemFound(f"{self.path}: cannot save record {len(self.records) + 1} ({err.strerror or err}); free some space or choose another -o path") from None
        finally:
            os.close(fd)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM are held (delivered on leaving) where the platform can, from the main thread."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _drop_half_line(path: Path) -> str:
    """A JSONL file whose last line was cut off (a run killed while saving, a full disk) loses that line."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return ""
    head, _, tail = data.rpartition(b"\n")
    try:
        json.loads(tail)
    except ValueError:
        write_bytes(path, head + b"\n" if head else b"")
        return f"{path}: dropped a half-written last line (an earlier run was stopped while saving it)"
    write_bytes(path, data + b"\n")
    return ""


def open_output(path: str | Path, examples: Dataset) -> SynthOutput:
    """Where synth saves: a new file, or what an earlier run of the same command left there, to go on from."""
    target = Path(path)
    if target.is_dir():
        raise BadInput(f"{target}: is a folder; give -o a file name, e.g. {target / 'synth.jsonl'}")
    if target.exists() and Path(examples.path).exists() and target.resolve() == Path(examples.path).resolve():
        raise BadInput(f"{target}: is the examples file; gpudoctor never rewrites its input, choose another -o path")
    if not target.exists():
        return SynthOutput(target, examples.format, [])
    note = _drop_half_line(target) if container_for(target) == "jsonl" else ""
    if not target.read_text(encoding="utf-8", errors="replace").strip():
        return SynthOutput(target, examples.format, [], note)
    try:
        existing = load_dataset(target)
    except BadInput as err:
        raise BadInput(f"{err} (synth saves to -o and goes on from what is there: fix it or choose another path)") from None
    if existing.format != examples.format:
        raise BadInput(f"{target}: holds {existing.format} records and the examples are {examples.format}; choose another -o path")
    return SynthOutput(target, examples.format, existing.records, note)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM stops the run as Ctrl-C does (KeyboardInterrupt), so atomic writes clean up
    after themselves; only from the main thread, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Seen:
    """The texts a new record must not repeat, exactly or nearly: the examples, the output's, the new ones."""

    def __init__(self, keys: list[str]) -> None:
        self.exact = {normalise(k) for k in keys}
        self.sketches = [sketch(k) for k in self.exact]

    def repeat(self, text: str) -> str | None:
        """Why `text` is rejected as a repeat, or None (then it is remembered)."""
        key = normalise(text)
        if key in self.exact:
            return "repeats an example or an earlier reply"
        mine = sketch(key)
        if any(similarity(mine, other) >= NEAR_THRESHOLD for other in self.sketches):
            return "nearly repeats an example or an earlier reply"
        self.exact.add(key)
        self.sketches.append(mine)
        return None


def _key_text(record: Record, inputs_only: bool) -> str:
    return _user_text(record) if inputs_only else record_key_text(record)


def _parse_reply(reply: str, fmt: str, inputs_only: bool, index: int, where: str) -> Record | str:
    """The record in a reply, or why there is none."""
    if inputs_only:
        return _inputs_only_record(reply, fmt, index) if reply else "empty reply"
    value = _first_json_object(reply)
    if value is None:
        return "no JSON object in the reply"
    try:
        record = record_from_dict(fmt, value, index, where)
    except GpudoctorError:
        return f"not a valid {fmt} record"
    return record if all(m.content.strip() for m in record.messages) else "empty field"


def synthesize(examples: Dataset, n: int, generate: Generate, *, prompt: str | None = None, inputs_only: bool = False,
               per_prompt: int = 3, seed: int = 0, progress: Callable[[int, int], None] | None = None,
               output: SynthOutput | None = None) -> SynthResult:
    """Up to `n` records in all imitating `examples`, counting those `output` already holds, each new one
    saved to `output` as it is made; replies that fail validation or repeat are counted, not kept."""
    template = prompt or (INPUTS_ONLY_PROMPT if inputs_only else DEFAULT_PROMPT)
    if "{examples}" not in template:
        raise BadInput("the prompt must contain {examples}, where the examples go")
    before = list(output.records) if output else []
    rng = random.Random(f"{seed}/{len(before)}" if before else seed)  # a resumed run asks with other examples
    convert = CONVERTERS[examples.format]
    shown = [_user_text(r) if inputs_only else json.dumps(convert(r), ensure_ascii=False) for r in examples.records]
    seen = _Seen([_key_text(r, inputs_only) for r in [*examples.records, *before]])
    made: list[Record] = []
    rejected: Counter[str] = Counter()
    for attempt in range(max(0, n - len(before)) * TRIES_PER_RECORD):
        if len(before) + len(made) >= n:
            break
        picked = rng.sample(shown, min(per_prompt, len(shown)))
        reply = generate(template.replace("{examples}", "\n".join(picked))).strip()
        record = _parse_reply(reply, examples.format, inputs_only, len(before) + len(made), f"reply {attempt + 1}")
        reason = record if isinstance(record, str) else seen.repeat(_key_text(record, inputs_only))
        if reason is not None:
            rejected[reason] += 1
            continue
        if output:
            output.add(record)
        made.append(record)
        if progress:
            progress(len(before) + len(made), n)
    return SynthResult(Dataset("", examples.format, examples.container, [*before, *made]), n, rejected, resumed=len(before))

"""`data synth`: new records that imitate a few examples, from an LLM (HTTP endpoint or local model).

Each request shows the model a few examples (chosen with a seeded shuffle) and asks for one new
record as a JSON object in the same format. Replies are parsed, validated like any loaded record,
and dropped when they repeat an example or an earlier reply (exactly or nearly). With
`inputs_only` the model writes only the user's side; a person writes the answers (semi-synthetic).
The endpoint path uses only the standard library; the local path imports transformers lazily.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gpudoctor.data.dedupe import NEAR_THRESHOLD, normalise, record_key_text, similarity, sketch
from gpudoctor.data.load import record_from_dict
from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record
from gpudoctor.data.write import CONVERTERS
from gpudoctor.errors import BadInput, GpudoctorError, ProblemFound

Generate = Callable[[str], str]

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


def endpoint_generator(url: str, model: str, *, api_key: str | None = None, temperature: float = 0.9,
                       max_tokens: int = 1024, timeout: float = 120.0) -> Generate:
    """POST to an OpenAI-compatible /v1/chat/completions (vLLM, Ollama, llama.cpp server, ...)."""
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
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:200].replace("\n", " ")
            raise ProblemFound(f"{target} answered HTTP {err.code}: {detail or err.reason}; check --model and the server's log") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ProblemFound(f"cannot reach {target} ({reason}); is the server running?") from None
        except (ValueError, UnicodeDecodeError):
            raise ProblemFound(f"{target} did not answer with JSON; is it an OpenAI-compatible server?") from None
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
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


def synthesize(examples: Dataset, n: int, generate: Generate, *, prompt: str | None = None, inputs_only: bool = False,
               per_prompt: int = 3, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> SynthResult:
    """Up to `n` new records imitating `examples`; replies that fail validation or repeat are counted, not kept."""
    template = prompt or (INPUTS_ONLY_PROMPT if inputs_only else DEFAULT_PROMPT)
    if "{examples}" not in template:
        raise BadInput("the prompt must contain {examples}, where the examples go")
    rng = random.Random(seed)
    convert = CONVERTERS[examples.format]
    shown = [_user_text(r) if inputs_only else json.dumps(convert(r), ensure_ascii=False) for r in examples.records]
    seen_exact = {normalise(_user_text(r) if inputs_only else record_key_text(r)) for r in examples.records}
    sketches = [sketch(s) for s in seen_exact]
    made: list[Record] = []
    rejected: Counter[str] = Counter()
    for attempt in range(n * TRIES_PER_RECORD):
        if len(made) >= n:
            break
        picked = rng.sample(shown, min(per_prompt, len(shown)))
        reply = generate(template.replace("{examples}", "\n".join(picked))).strip()
        try:
            if inputs_only:
                if not reply:
                    raise BadInput("empty reply")
                record = _inputs_only_record(reply, examples.format, len(made))
            else:
                value = _first_json_object(reply)
                if value is None:
                    rejected["no JSON object in the reply"] += 1
                    continue
                record = record_from_dict(examples.format, value, len(made), f"reply {attempt + 1}")
                if not all(m.content.strip() for m in record.messages):
                    rejected["empty field"] += 1
                    continue
        except GpudoctorError:
            rejected[f"not a valid {examples.format} record"] += 1
            continue
        key = normalise(_user_text(record) if inputs_only else record_key_text(record))
        if key in seen_exact:
            rejected["repeats an example or an earlier reply"] += 1
            continue
        mine = sketch(key)
        if any(similarity(mine, other) >= NEAR_THRESHOLD for other in sketches):
            rejected["nearly repeats an example or an earlier reply"] += 1
            continue
        seen_exact.add(key)
        sketches.append(mine)
        made.append(record)
        if progress:
            progress(len(made), n)
    return SynthResult(Dataset("", examples.format, examples.container, made), n, rejected)

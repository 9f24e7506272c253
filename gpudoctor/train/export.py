"""Export a trained run (or a merged model folder) as one GGUF file for llama.cpp, Ollama and LM Studio.

The conversion is llama.cpp's own convert_hf_to_gguf.py with the gguf-py vendored beside it (the
PyPI `gguf` package is different code under the same version number and fails with it), run as a
subprocess through gpudoctor/train/export_runner.py, which only names the BPE pre-tokenizer when
llama.cpp's hash list does not know the tokenizer but its real shape is one llama.cpp implements
(a GPT-2 ByteLevel BPE, as the demo's). gpudoctor never ships or patches a llama.cpp file: the
converter is found at --converter, $GPUDOCTOR_LLAMA_CPP, or the cache folder that
`gpudoctor export --fetch-converter` unpacks it into (from the llama-cpp-python sdist, MIT).

Order of work: the converter and the tokenizer are checked before anything loads; an adapter is
merged (gpudoctor/train/merge.py, faithful NF4 by default) into a temp folder beside OUT; a model
without a chat template gets gpudoctor's Alpaca template (so the GGUF carries
tokenizer.chat_template and servers prompt the model as it was trained); the converter writes a
temp file beside OUT; with llama-cpp-python installed, llama.cpp's tokenizer is checked against
the Hugging Face one on test texts; then the file is renamed into place. A failure leaves nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpudoctor.atomic import new_dir_mode, write_text
from gpudoctor.errors import BadInput, ProblemFound

QUANTS = ("q8_0", "f16")
BYTES_PER_PARAM = {"q8_0": 34 / 32, "f16": 2.0}  # Q8_0: 32 int8 weights + one f16 scale per block
ENV = "GPUDOCTOR_LLAMA_CPP"
LLAMA_CPP_PYTHON = "0.3.36"  # the llama-cpp-python sdist whose vendored converter gpudoctor is tested with
CONVERTER = "convert_hf_to_gguf.py"
# What --fetch-converter keeps of the sdist's vendor/llama.cpp (MIT; its LICENSE goes with it).
KEEP = (CONVERTER, "LICENSE", "conversion/", "gguf-py/")
RUNNER = Path(__file__).resolve().parent / "export_runner.py"
MARK = "gpudoctor-pre-tokenizer:"
NAMED = "named by gpudoctor from the tokenizer's shape: llama.cpp's list does not know it"
# Texts llama.cpp's tokenizer must split exactly as the Hugging Face one (beside the model's own prompts).
CHECK_TEXTS = (
    "Hello world",
    " leading space, then  two  spaces and a tab\there",
    "line one\nline two\n\n\nthree blank\r\n",
    "I've been told he's there, 'RE you sure? We'Ve a'lL",
    "3 33 333 3333 3.3 3..3 1,000,000 2026-01-02",
    "ÁÉÍÓÚ ñ ü ß æ ø å — “quotes” … naïve café",
    "нещо на Български, 我想在apple工作1314151天～, कान्हा",
    "emoji 🚀 😶‍🌫️ ✅ 🦙🦙 and symbols <>{}[]()#$%^&*_+=|\\/~`",
    "def f(x):\n    return x ** 2  # code\n",
    "------======= ......!!!!!!?????? \"\"\"\"```````",
)


@dataclass
class ExportRequest:
    output: Path
    adapter: Path | None = None
    model: Path | None = None  # an already merged folder
    quant: str = "q8_0"
    ollama: bool = False
    converter: Path | None = None
    force: bool = False
    into: str = "nf4"
    base: str | None = None
    trust_remote_code: bool = False


@dataclass
class Converter:
    root: Path  # holds convert_hf_to_gguf.py and gguf-py/
    found_by: str


@dataclass
class Result:
    output: Path
    pre_tokenizer: str | None
    tokens_checked: int | None  # texts compared with llama.cpp's tokenizer; None: llama-cpp-python missing
    modelfile: Path | None = None
    notes: list[str] = field(default_factory=list)


def check_request(request: ExportRequest) -> None:
    """--quant, the source (--adapter or --model) and OUT, before anything is read (BadInput, nothing written)."""
    if request.quant not in QUANTS:
        raise BadInput(f"--quant {request.quant}: use q8_0 (about half the size of f16) or f16")
    if (request.adapter is None) == (request.model is None):
        raise BadInput("export: give --adapter RUN_DIR (merged first) or --model MERGED_DIR (an already merged folder), one of them")
    out = request.output
    if out.is_dir():
        raise BadInput(f"-o {out}: is a folder; give the .gguf file to write")
    if out.exists() and not request.force:
        raise BadInput(f"-o {out}: exists; choose a new file name or pass --force to replace it")
    if request.ollama and modelfile_path(out).exists() and not request.force:
        raise BadInput(f"--ollama: {modelfile_path(out)} exists; choose a new -o name or pass --force to replace both")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise BadInput(f"-o {out}: no such folder {parent}; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ProblemFound(f"-o {out}: cannot write in {parent}; choose a folder you can write to")


# --- where llama.cpp's converter comes from ---------------------------------------------------------


def converter_cache(environ: Mapping[str, str] = os.environ) -> Path:
    from gpudoctor.resources import gpudoctor_cache_dir

    return gpudoctor_cache_dir(environ) / "llama.cpp-converter"


def converter_root(path: Path) -> Path | None:
    """The folder holding convert_hf_to_gguf.py and gguf-py/ for `path`: the script itself, a llama.cpp
    checkout, an unpacked llama-cpp-python sdist (vendor/llama.cpp) or an unpacked --fetch-converter."""
    path = path.expanduser()
    candidates = [path.parent] if path.name == CONVERTER else [path, path / "vendor" / "llama.cpp"]
    for root in candidates:
        if (root / CONVERTER).is_file() and (root / "gguf-py" / "gguf" / "__init__.py").is_file():
            return root.resolve()
    return None


def how_to_get_converter(environ: Mapping[str, str] = os.environ) -> str:
    return (
        f"run `gpudoctor export --fetch-converter` (pip downloads the llama-cpp-python {LLAMA_CPP_PYTHON} sdist and unpacks "
        f"its converter into {converter_cache(environ)}), or pass --converter PATH / set {ENV} to a llama.cpp checkout"
    )


def find_converter(option: Path | None = None, environ: Mapping[str, str] = os.environ) -> Converter:
    """--converter PATH, else $GPUDOCTOR_LLAMA_CPP, else the cache folder; one line when none holds it."""
    if option is not None:
        if option.name.endswith((".tar.gz", ".tgz")) and option.is_file():
            return Converter(unpack_converter(option, converter_cache(environ)), f"--converter {option} (unpacked into the cache)")
        root = converter_root(option)
        if root is None:
            raise BadInput(f"--converter {option}: no {CONVERTER} with gguf-py/ beside it there; give a llama.cpp checkout or the llama-cpp-python sdist")
        return Converter(root, f"--converter {option}")
    if environ.get(ENV):
        root = converter_root(Path(environ[ENV]))
        if root is None:
            raise BadInput(f"{ENV}={environ[ENV]}: no {CONVERTER} with gguf-py/ beside it there; point it at a llama.cpp checkout or unset it")
        return Converter(root, f"${ENV}")
    root = converter_root(converter_cache(environ))
    if root is None:
        raise ProblemFound(f"export: llama.cpp's converter ({CONVERTER}) was not found; {how_to_get_converter(environ)}")
    return Converter(root, "the gpudoctor cache")


def _kept(name: str) -> str | None:
    """The path under vendor/llama.cpp/ of an sdist member worth keeping (see KEEP), else None."""
    parts = name.split("/")
    if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"] or ".." in parts:
        return None
    inner = "/".join(parts[3:])
    return inner if any(inner == k or (k.endswith("/") and inner.startswith(k)) for k in KEEP) else None


def unpack_converter(sdist: Path, dest: Path) -> Path:
    """Unpack only the converter, conversion/, gguf-py/ and LICENSE of a llama-cpp-python sdist into
    `dest` (replaced whole, through a temp folder beside it); returns the converter's root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(sdist, "r:*") as archive:
            members = []
            for member in archive.getmembers():
                inner = _kept(member.name)
                if inner is not None and (member.isfile() or member.isdir()):
                    member.name = inner
                    members.append(member)
            archive.extractall(staging, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        staging.chmod(new_dir_mode())
        if converter_root(staging) is None:
            raise BadInput(f"{sdist}: holds no vendor/llama.cpp/{CONVERTER} with gguf-py/; use the llama-cpp-python sdist (.tar.gz)")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except (OSError, tarfile.TarError) as err:
        raise ProblemFound(f"{sdist}: cannot unpack the converter into {dest} ({getattr(err, 'strerror', None) or err})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _streamed(command: list[str], say: Callable[[str], Any]) -> subprocess.CompletedProcess:
    """Run `command`, passing each line it prints to `say` as it comes (pip's progress), and keep its output."""
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            lines.append(line)
            say(line.rstrip())
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")


def fetch_converter(environ: Mapping[str, str] = os.environ, *, say: Callable[[str], Any] = print, run: Callable[..., Any] | None = None) -> Path:
    """`pip download` the llama-cpp-python sdist (no build) into a temp folder and unpack its converter into the cache."""
    with tempfile.TemporaryDirectory(prefix="gpudoctor-sdist-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", folder]
        done = run(command) if run is not None else _streamed(command, say)
        if done.returncode != 0:
            raise ProblemFound(
                f"export --fetch-converter: pip download failed ({last_line(done.stdout + done.stderr)}); check the network, "
                "or download the sdist elsewhere and pass --converter FILE.tar.gz"
            )
        found = sorted(Path(folder).glob("llama_cpp_python-*.tar.gz"))
        if not found:
            raise ProblemFound(f"export --fetch-converter: pip downloaded no llama_cpp_python-*.tar.gz into {folder}")
        return unpack_converter(found[0], converter_cache(environ))


def last_line(output: str) -> str:
    """The last non-blank line of a process's output (tqdm's carriage returns split lines too), our marks skipped."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip() and not line.startswith(MARK)]
    return lines[-1] if lines else "no output"


# --- the tokenizer ----------------------------------------------------------------------------------


def _is_gpt2_byte_level(pre: Any) -> bool:
    """A ByteLevel pre-tokenizer with GPT-2's regex and no prefix space, alone or as a one-item Sequence."""
    if isinstance(pre, dict) and pre.get("type") == "Sequence" and len(pre.get("pretokenizers") or []) == 1:
        pre = pre["pretokenizers"][0]
    return isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)


def pre_tokenizer(model_dir: Path) -> str | None:
    """The llama.cpp pre-tokenizer to name if its hash list does not know this tokenizer, else None
    (SentencePiece, a non-BPE tokenizer or a shape gpudoctor cannot vouch for: the converter decides).
    A byte-fallback BPE tokenizer.json without tokenizer.model is refused: it converts into a broken vocabulary."""
    path = model_dir / "tokenizer.json"
    if (model_dir / "tokenizer.model").is_file() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInput(f"{path}: cannot read it ({err}); copy the tokenizer from the base model again") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        return None
    if model.get("byte_fallback"):
        raise BadInput(
            f"{path}: a byte-fallback BPE tokenizer without tokenizer.model, which llama.cpp's converter turns into a broken "
            f"vocabulary; copy the base model's tokenizer.model (SentencePiece) into {model_dir}"
        )
    plain = not data.get("normalizer") and not model.get("ignore_merges") and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
    decoder = data.get("decoder")
    if plain and _is_gpt2_byte_level(data.get("pre_tokenizer")) and (decoder is None or decoder.get("type") == "ByteLevel"):
        return "gpt-2"
    return None


def has_chat_template(model_dir: Path) -> bool:
    """Where the converter's gguf-py looks: tokenizer_config.json's chat_template, chat_template.jinja or .json."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def with_chat_template(model_dir: Path, scratch: Path, tokenizer: Any) -> Path:
    """`model_dir` itself when it carries a chat template, else a folder in `scratch` linking to its
    files plus chat_template.jinja: gpudoctor's Alpaca prompt, as training and `chat` format it."""
    if has_chat_template(model_dir):
        return model_dir
    from gpudoctor.train.merge import alpaca_chat_template

    view = scratch / "with-template"
    view.mkdir()
    for path in model_dir.iterdir():
        (view / path.name).symlink_to(path.resolve())
    (view / "chat_template.jinja").write_text(alpaca_chat_template(tokenizer), encoding="utf-8")
    return view


# --- converting -------------------------------------------------------------------------------------


def gguf_size(model_dir: Path, quant: str) -> int:
    """About how big the GGUF will be: the model's parameters (config.json, counted as the planner counts) × the type's bytes."""
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import model_from_config

    return int(total_params(model_from_config(model_dir / "config.json")) * BYTES_PER_PARAM[quant])


def check_disk(out: Path, need: int, *, free: int | None = None) -> None:
    """Free disk at OUT's folder ≥ what the export writes there (ProblemFound, one line)."""
    from gpudoctor.train.merge import _gib

    parent = out.absolute().parent
    free = shutil.disk_usage(parent).free if free is None else free
    if free < need:
        raise ProblemFound(f"-o {out}: {_gib(free)} free on {parent}, the export needs about {_gib(need)}; free {_gib(need - free)} or write elsewhere")


def convert(converter: Converter, model_dir: Path, outfile: Path, quant: str, fallback: str | None, *, run: Callable[..., Any] = subprocess.run) -> str | None:
    """Run llama.cpp's converter on `model_dir` into `outfile`; returns the pre-tokenizer it wrote (None for a
    non-BPE vocabulary). A failure is one ProblemFound line ending with the converter's last error line."""
    gguf_py = str(converter.root / "gguf-py")
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    env["PYTHONPATH"] = os.pathsep.join([gguf_py, *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, str(RUNNER), str(converter.root), fallback or "-", "--", str(model_dir), "--outfile", str(outfile), "--outtype", quant]
    done = run(command, capture_output=True, text=True, env=env)
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        line = last_line(output)
        if "pre-tokenizer was not recognized" in line:
            raise ProblemFound(
                f"{model_dir / 'tokenizer.json'}: llama.cpp's converter does not know this BPE pre-tokenizer and it is not one gpudoctor "
                "can name (a GPT-2 ByteLevel BPE); export a model whose tokenizer llama.cpp lists (converter: " + line + ")"
            )
        raise ProblemFound(f"export: llama.cpp's converter ({converter.root / CONVERTER}) failed on {model_dir}: {line}")
    if not outfile.is_file():
        raise ProblemFound(f"export: llama.cpp's converter finished but wrote no {outfile}: {last_line(output)}")
    marks = [line.split(MARK, 1)[1].strip() for line in output.splitlines() if line.startswith(MARK)]
    return marks[-1] if marks else None


@dataclass
class LlamaCheck:
    """What llama.cpp itself reads from the GGUF: texts compared, those it tokenizes differently, its chat template."""

    texts: int
    mismatched: list[str]
    chat_template: str | None


def llama_check(gguf: Path, tokenizer: Any, texts: list[str]) -> LlamaCheck | None:
    """Tokenize `texts` with llama.cpp (llama-cpp-python's vocabulary-only load) and with `tokenizer`, without
    and with BOS/EOS added as each adds them; None when llama-cpp-python is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    with contextlib.redirect_stderr(io.StringIO()):  # the bindings print llama.cpp's context warnings from Python
        vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        bad = []
        for text in texts:
            for special in (False, True):
                want = tokenizer(text, add_special_tokens=special)["input_ids"]
                got = vocab.tokenize(text.encode("utf-8"), add_bos=special, special=True)
                if list(want) != list(got):
                    bad.append(text)
                    break
        template = vocab.metadata.get("tokenizer.chat_template")
    finally:
        vocab.close()
    return LlamaCheck(len(texts), bad, template)


def check_texts(tokenizer: Any, extra: tuple[str, ...] = ()) -> list[str]:
    """The texts the tokenizers must agree on: CHECK_TEXTS, the merge's prompts and those prompts as the chat template renders them."""
    from gpudoctor.train.merge import PROMPTS

    texts = [*CHECK_TEXTS, *PROMPTS, *extra]
    if getattr(tokenizer, "chat_template", None):
        texts += [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in PROMPTS]
    return texts


# --- Ollama -----------------------------------------------------------------------------------------


def ollama_template(eos: str) -> str:
    """gpudoctor's Alpaca prompt (formatting.alpaca_segments, merge.alpaca_chat_template) as an Ollama Go template
    over .Messages: the first system message (else the Alpaca preamble) before the first turn, each user turn an
    Instruction block (other roles: Tool output), each reply followed by EOS, ending at '### Response:\\n'.
    No BOS: llama.cpp adds one itself when the GGUF says the tokenizer does."""
    from gpudoctor.train.formatting import ALPACA_PREAMBLE

    return (
        '{{ $system := "" }}{{ $seen := false }}'
        '{{ range .Messages }}{{ if and (eq .Role "system") (not $seen) }}{{ $system = .Content }}{{ $seen = true }}{{ end }}{{ end }}'
        '{{ $first := true }}'
        '{{ range .Messages }}'
        '{{ if eq .Role "assistant" }}{{ .Content }}' + eos + ''
        '{{ else if ne .Role "system" }}'
        '{{ if $first }}{{ if $system }}{{ $system }}{{ else }}' + ALPACA_PREAMBLE + '{{ end }}\n\n{{ $first = false }}{{ else }}\n\n{{ end }}'
        '### {{ if eq .Role "user" }}Instruction{{ else }}Tool output{{ end }}:\n{{ .Content }}\n\n### Response:\n'
        '{{ end }}'
        '{{ end }}'
    )  # fmt: skip


def ollama_name(out: Path) -> str:
    """An Ollama model name from OUT's file name: lower case, letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", out.stem.lower()).strip("-._") or "gpudoctor-model"


def modelfile_text(gguf: Path, *, template: str | None, stops: list[str], num_ctx: int | None) -> str:
    """An Ollama Modelfile: FROM the GGUF beside it, the TEMPLATE (None: Ollama takes the GGUF's own), stop tokens, num_ctx."""
    lines = [f"FROM ./{gguf.name}", ""]
    if template is not None:
        if '"""' in template:
            raise ProblemFound(f"export --ollama: the prompt template holds three double quotes, which a Modelfile cannot quote; write {gguf.stem}.Modelfile by hand")
        lines += [f'TEMPLATE """{template}"""', ""]
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def modelfile_path(gguf: Path) -> Path:
    return gguf.with_name(f"{gguf.stem}.Modelfile")


OLLAMA_DEFAULT_CTX = 4096  # Ollama's own default context (docs/faq.md, "How can I specify the context window size?")


def ollama_context(position_limit: int | None, trained_seq_len: int | None) -> int | None:
    """num_ctx: the trained length, at least Ollama's default, never past what the model was built for.
    The model's full window (32k for Mistral 7B) would make Ollama reserve a KV cache that size."""
    wanted = max(trained_seq_len or 0, OLLAMA_DEFAULT_CTX)
    return min(wanted, position_limit) if position_limit else wanted


def write_modelfile(gguf: Path, model_dir: Path, tokenizer: Any, trained_seq_len: int | None = None) -> tuple[Path, str]:
    """<OUT stem>.Modelfile beside the GGUF; (its path, the note on its template)."""
    from gpudoctor.train.merge import alpaca_chat_template
    from gpudoctor.train.model import position_limit

    ours = getattr(tokenizer, "chat_template", None) in (None, alpaca_chat_template(tokenizer))
    eos = tokenizer.eos_token or ""
    template = ollama_template(eos) if ours else None
    stops = [s for s in dict.fromkeys([eos, "### Instruction:"] if ours else [eos]) if s]
    path = modelfile_path(gguf)
    write_text(path, modelfile_text(gguf, template=template, stops=stops, num_ctx=ollama_context(position_limit(model_dir), trained_seq_len)))
    note = "TEMPLATE: gpudoctor's Alpaca prompt" if ours else "no TEMPLATE: the model's own chat template is not gpudoctor's, so Ollama reads the GGUF's"
    return path, note


# --- the whole export -------------------------------------------------------------------------------


def _source_dir(request: ExportRequest) -> Path:
    """The folder whose tokenizer the GGUF gets: --model, else the adapter's base (checked before merging)."""
    from gpudoctor.train.generate import base_model_dir, check_adapter_file
    from gpudoctor.train.model import check_tokenizer_files, check_weights, read_config

    if request.model is not None:
        if not request.model.is_dir():
            raise BadInput(f"--model {request.model}: {'not a folder' if request.model.exists() else 'no such folder'}; give a `gpudoctor merge` output folder")
        read_config(request.model)
        check_weights(request.model)
        check_tokenizer_files(request.model)
        return request.model
    check_adapter_file(request.adapter)
    return base_model_dir(request.adapter, request.base)


def _merge_into(request: ExportRequest, scratch: Path, say: Callable[[str], Any]) -> Path:
    from gpudoctor.train.merge import MergeRequest, merge

    out = scratch / "merged"
    request_merge = MergeRequest(adapter=request.adapter, output=out, into=request.into, base=request.base, trust_remote_code=request.trust_remote_code)
    merge(request_merge, say=lambda line: None if line.startswith("wrote ") else say(line))  # its folder is temporary
    return out


def _scratch(out: Path) -> Path:
    """A temp folder beside OUT (same disk, so the merged model counts against the space checked there)."""
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.absolute().parent))


def judge(check: LlamaCheck | None, tokenizer: Any, model_dir: Path, named: bool) -> int | None:
    """The texts llama.cpp tokenizes as the model's tokenizer does (None: not checked); a mismatch or a lost
    chat template is ProblemFound."""
    if check is None:
        return None
    if check.mismatched:
        how = "the pre-tokenizer gpudoctor named" if named else "llama.cpp's reading of this tokenizer"
        raise ProblemFound(
            f"{model_dir}: llama.cpp tokenizes {len(check.mismatched)} of {check.texts} test texts differently from the model's "
            f"tokenizer ({how}), first {check.mismatched[0]!r}; nothing was written"
        )
    if check.chat_template != tokenizer.chat_template:
        raise ProblemFound(f"{model_dir}: the GGUF llama.cpp's converter wrote does not carry the model's chat template; nothing was written")
    return check.texts


def export(request: ExportRequest, *, say: Callable[[str], Any] = print, free: int | None = None) -> Result:
    """Check, merge (unless --model), convert with llama.cpp's converter, check the tokenizer, rename into place.
    Every problem is one line (BadInput / ProblemFound) and leaves nothing behind."""
    from gpudoctor.train.model import load_tokenizer
    from gpudoctor.train.quiet import quiet_libraries

    check_request(request)
    converter = find_converter(request.converter)
    source = _source_dir(request)
    pre_tokenizer(source)  # a tokenizer llama.cpp would break is refused before a merge
    need = gguf_size(source, request.quant) + (0 if request.model else _merged_bytes(request, source))
    check_disk(request.output, need, free=free)
    quiet_libraries()
    scratch = _scratch(request.output)
    partial = request.output.absolute().parent / f".{request.output.name}.converting-{os.getpid()}.gguf"
    try:
        model_dir = request.model if request.model is not None else _merge_into(request, scratch, say)
        tokenizer = load_tokenizer(model_dir, trust_remote_code=request.trust_remote_code)
        plain = model_dir
        model_dir = with_chat_template(model_dir, scratch, tokenizer)
        if model_dir != plain:  # read again: the tokenizer as the converter sees it, with the template added
            tokenizer = load_tokenizer(model_dir, trust_remote_code=request.trust_remote_code)
        fallback = pre_tokenizer(model_dir)
        added = "" if model_dir == plain else " (with gpudoctor's Alpaca chat template added)"
        what = f"{request.model}{added}" if request.model else "the merged model"
        say(f"convert: {what} → {request.quant} GGUF with llama.cpp's {CONVERTER} ({converter.found_by}: {converter.root})")
        written = convert(converter, model_dir, partial, request.quant, fallback)
        named = bool(written and written.endswith("(named)"))
        count = judge(llama_check(partial, tokenizer, check_texts(tokenizer)), tokenizer, model_dir, named)
        os.replace(partial, request.output)
        result = Result(request.output, written, count)
        if request.ollama:
            _add_modelfile(result, model_dir, tokenizer, _trained_seq_len(request))
    except OSError as err:
        raise ProblemFound(f"-o {request.output}: writing the GGUF failed ({err.strerror or err}); nothing was written") from None
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    _say_result(result, say)
    return result


def _trained_seq_len(request: ExportRequest) -> int | None:
    """The seq_len the run trained at (its run.yaml), for an --adapter export; None for --model."""
    from gpudoctor.train.generate import run_settings

    return run_settings(request.adapter).seq_len if request.adapter is not None else None


def _add_modelfile(result: Result, model_dir: Path, tokenizer: Any, trained_seq_len: int | None) -> None:
    try:
        result.modelfile, note = write_modelfile(result.output, model_dir, tokenizer, trained_seq_len)
    except OSError as err:
        raise ProblemFound(f"{modelfile_path(result.output)}: writing it failed ({err.strerror or err}); {result.output} was written, export again with --force --ollama") from None
    result.notes.append(note)


def _merged_bytes(request: ExportRequest, base_dir: Path) -> int:
    from gpudoctor.train.generate import run_settings
    from gpudoctor.train.merge import merged_size

    return merged_size(base_dir, run_settings(request.adapter).compute_dtype)[0]


def _say_result(result: Result, say: Callable[[str], Any]) -> None:
    from gpudoctor.train.merge import _gib

    pre = ""
    if result.pre_tokenizer:
        name, _, how = result.pre_tokenizer.partition(" ")
        pre = f"; BPE pre-tokenizer {name} ({NAMED if how == '(named)' else 'recognised by llama.cpp'})"
    if result.tokens_checked is None:
        check = "; tokenizer not checked against llama.cpp (install llama-cpp-python to check it)"
    else:
        check = f"; llama.cpp tokenizes all {result.tokens_checked} test texts as the model's tokenizer does"
    say(f"wrote {result.output} ({_gib(result.output.stat().st_size)}{pre}; carries the chat template{check})")
    if result.modelfile is not None:
        say(f"wrote {result.modelfile} ({'; '.join(result.notes)}); load it with: ollama create {ollama_name(result.output)} -f {result.modelfile}")

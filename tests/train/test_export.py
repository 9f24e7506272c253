"""`gpudoctor export --gguf`: where llama.cpp's converter is found, the pre-tokenizer decision and the refusals,
the runner that names the pre-tokenizer (against a fake converter), the Ollama Modelfile (its Go TEMPLATE rendered
here and compared with the Alpaca prompt training uses), one-line errors that leave nothing behind, and an end to
end conversion with llama.cpp's real converter when one is found (the llama-cpp-python sdist is not in a clone:
then that test skips; bench/gguf_export.py does the full check with the compiled bindings)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from gpudoctor.errors import EXIT_PROBLEM, EXIT_USAGE, BadInput, ProblemFound
from gpudoctor.train import export as exporting
from gpudoctor.train.export import ExportRequest

DEMO_TOKENIZER = Path(exporting.__file__).resolve().parent.parent / "demo" / "tokenizer.json"


# --- a fake llama.cpp: the converter's layout and its pre-tokenizer hook, nothing else -----------------------------

FAKE_CONVERTER = '''
import sys, argparse
from pathlib import Path
import gguf
from conversion import TextModel

def main():
    p = argparse.ArgumentParser()
    p.add_argument("model"); p.add_argument("--outfile"); p.add_argument("--outtype")
    args = p.parse_args()
    Path(args.outfile).write_bytes(b"GGUF partial")  # a failure must not leave this behind
    pre = TextModel().get_vocab_base_pre(None)
    Path(args.outfile).write_text(f"GGUF {pre} {args.outtype} {gguf.WHERE}")
'''
FAKE_BASE = '''
import os
class TextModel:
    def get_vocab_base_pre(self, tokenizer):
        known = os.environ.get("FAKE_KNOWN")
        if known:
            return known
        raise NotImplementedError("BPE pre-tokenizer was not recognized - update get_vocab_base_pre()")
'''


def fake_llama_cpp(root: Path) -> Path:
    (root / "conversion").mkdir(parents=True)
    (root / "gguf-py" / "gguf").mkdir(parents=True)
    (root / exporting.CONVERTER).write_text(FAKE_CONVERTER, encoding="utf-8")
    (root / "conversion" / "__init__.py").write_text("from .base import TextModel\n", encoding="utf-8")
    (root / "conversion" / "base.py").write_text(FAKE_BASE, encoding="utf-8")
    (root / "gguf-py" / "gguf" / "__init__.py").write_text('WHERE = "vendored"\n', encoding="utf-8")
    return root


def sdist(path: Path, *, with_converter: bool = True) -> Path:
    """A llama-cpp-python-shaped sdist: the converter parts, and things --fetch-converter must not unpack."""
    files = {
        "llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/src/ggml.c": "int main;",
        "llama_cpp_python-0.3.36/llama_cpp/llama.py": "# bindings",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/LICENSE": "MIT License",
    }
    if with_converter:
        files |= {
            "llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py": "print('converter')",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/conversion/base.py": "class TextModel: pass",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py/gguf/__init__.py": "",
        }
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def env_with_cache(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


# --- converter discovery ------------------------------------------------------------------------------------------


def test_the_converter_is_found_as_a_script_a_checkout_or_an_unpacked_sdist(tmp_path):
    checkout = fake_llama_cpp(tmp_path / "llama.cpp")
    sdist_root = tmp_path / "llama_cpp_python-0.3.36"
    fake_llama_cpp(sdist_root / "vendor" / "llama.cpp")
    assert exporting.converter_root(checkout) == checkout.resolve()
    assert exporting.converter_root(checkout / exporting.CONVERTER) == checkout.resolve()
    assert exporting.converter_root(sdist_root) == (sdist_root / "vendor" / "llama.cpp").resolve()
    shutil.rmtree(checkout / "gguf-py")  # the converter without its own gguf-py is not usable
    assert exporting.converter_root(checkout) is None


def test_discovery_order_option_then_environment_then_cache(tmp_path):
    env = env_with_cache(tmp_path)
    cached = fake_llama_cpp(exporting.converter_cache(env))
    assert cached == tmp_path / "cache" / "gpudoctor" / "llama.cpp-converter"
    assert exporting.find_converter(None, env).root == cached.resolve()
    from_env = fake_llama_cpp(tmp_path / "env-llama")
    env[exporting.ENV] = str(from_env)
    assert exporting.find_converter(None, env).root == from_env.resolve()
    option = fake_llama_cpp(tmp_path / "option-llama")
    found = exporting.find_converter(option, env)
    assert found.root == option.resolve() and found.found_by == f"--converter {option}"


@pytest.mark.parametrize(
    "where, error, needle",
    [
        ("option", BadInput, "--converter"),
        ("environment", BadInput, "GPUDOCTOR_LLAMA_CPP="),
        ("nowhere", ProblemFound, "gpudoctor export --fetch-converter"),
    ],
)
def test_a_missing_converter_is_one_line_saying_how_to_get_it(tmp_path, where, error, needle):
    env = env_with_cache(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    if where == "environment":
        env[exporting.ENV] = str(empty)
    with pytest.raises(error) as err:
        exporting.find_converter(empty if where == "option" else None, env)
    message = str(err.value)
    assert needle in message and "\n" not in message
    if where == "nowhere":
        assert str(exporting.converter_cache(env)) in message and "llama-cpp-python 0.3.36" in message and "--converter PATH" in message


def test_the_sdist_unpacks_only_the_converter_its_gguf_py_and_licence(tmp_path):
    env = env_with_cache(tmp_path)
    mask = os.umask(0o027)
    try:
        found = exporting.find_converter(sdist(tmp_path / "llama_cpp_python-0.3.36.tar.gz"), env)
    finally:
        os.umask(mask)
    root = exporting.converter_cache(env)
    assert found.root == root.resolve()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["LICENSE", "conversion/base.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert root.stat().st_mode & 0o777 == 0o750
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no staging folder left


def test_an_archive_without_the_converter_is_refused_and_leaves_the_cache_alone(tmp_path):
    env = env_with_cache(tmp_path)
    with pytest.raises(BadInput, match="holds no vendor/llama.cpp/convert_hf_to_gguf.py"):
        exporting.find_converter(sdist(tmp_path / "other-0.1.tar.gz", with_converter=False), env)
    assert list(exporting.converter_cache(env).parent.iterdir()) == []


def test_fetch_converter_runs_pip_download_of_the_sdist_then_unpacks_it(tmp_path):
    env = env_with_cache(tmp_path)
    seen = []

    def pip(command, **kwargs):
        seen.append(command)
        sdist(Path(command[command.index("-d") + 1]) / "llama_cpp_python-0.3.36.tar.gz")
        return subprocess.CompletedProcess(command, 0, "", "")

    root = exporting.fetch_converter(env, run=pip)
    assert seen[0][1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "llama-cpp-python==0.3.36", "-d", seen[0][-1]]
    assert exporting.converter_root(root) == root.resolve()


def test_a_failed_pip_download_is_one_line_with_pips_last_line(tmp_path):
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "Looking in indexes\n", "ERROR: No matching distribution found for llama-cpp-python==0.3.36\n")

    with pytest.raises(ProblemFound) as err:
        exporting.fetch_converter(env_with_cache(tmp_path), run=offline)
    assert "No matching distribution found" in str(err.value) and "--converter FILE.tar.gz" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()


# --- the pre-tokenizer decision -----------------------------------------------------------------------------------


def tokenizer_folder(tmp_path: Path, change=None, *, spm: bool = False) -> Path:
    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    data = json.loads(DEMO_TOKENIZER.read_text(encoding="utf-8"))
    if change:
        change(data)
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    if spm:
        (folder / "tokenizer.model").write_bytes(b"\x0a\x00")
    return folder


def test_the_demos_byte_level_bpe_is_gpt2(tmp_path):
    assert exporting.pre_tokenizer(tokenizer_folder(tmp_path)) == "gpt-2"
    sequence = tokenizer_folder(tmp_path, lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [d["pre_tokenizer"]]}))
    assert exporting.pre_tokenizer(sequence) == "gpt-2"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["pre_tokenizer"].update(add_prefix_space=True), id="prefix-space"),
        pytest.param(
            lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\d{1,3}"}}, {**d["pre_tokenizer"], "use_regex": False}]}),
            id="llama3-like-split",
        ),
        pytest.param(lambda d: d.update(normalizer={"type": "NFC"}), id="normalizer"),
        pytest.param(lambda d: d["model"].update(ignore_merges=True), id="ignore-merges"),
        pytest.param(lambda d: d.update(decoder={"type": "Metaspace"}), id="other-decoder"),
        pytest.param(lambda d: d["model"].update(type="WordPiece"), id="not-bpe"),
    ],
)
def test_other_shapes_are_left_to_llama_cpps_own_list(tmp_path, change):
    assert exporting.pre_tokenizer(tokenizer_folder(tmp_path, change)) is None


def test_a_sentencepiece_model_goes_the_converters_sentencepiece_way(tmp_path):
    assert exporting.pre_tokenizer(tokenizer_folder(tmp_path, lambda d: d["model"].update(byte_fallback=True), spm=True)) is None


def test_a_byte_fallback_tokenizer_json_without_tokenizer_model_is_refused(tmp_path):
    folder = tokenizer_folder(tmp_path, lambda d: d["model"].update(byte_fallback=True))
    with pytest.raises(BadInput) as err:
        exporting.pre_tokenizer(folder)
    message = str(err.value)
    assert "byte-fallback" in message and "tokenizer.model" in message and str(folder) in message and "\n" not in message


def test_an_unreadable_tokenizer_json_is_one_line(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BadInput, match="tokenizer.json: cannot read it"):
        exporting.pre_tokenizer(folder)


# --- the runner and the conversion step (a fake converter) --------------------------------------------------------


def converter_at(tmp_path: Path) -> exporting.Converter:
    return exporting.Converter(fake_llama_cpp(tmp_path / "llama.cpp").resolve(), "test")


def test_an_unknown_hash_gets_the_named_pre_tokenizer_from_the_vendored_gguf(tmp_path, monkeypatch):
    shadow = tmp_path / "site" / "gguf"  # an installed PyPI gguf must not be the one imported
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('WHERE = "pypi"\n', encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("NO_LOCAL_GGUF", "1")
    out = tmp_path / "model.gguf"
    written = exporting.convert(converter_at(tmp_path), tmp_path, out, "q8_0", "gpt-2")
    assert written == "gpt-2 (named)"
    assert out.read_text() == "GGUF gpt-2 q8_0 vendored"


def test_a_known_hash_keeps_llama_cpps_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_KNOWN", "llama-bpe")
    out = tmp_path / "model.gguf"
    assert exporting.convert(converter_at(tmp_path), tmp_path, out, "f16", "gpt-2") == "llama-bpe (recognised)"
    assert out.read_text().startswith("GGUF llama-bpe f16")


def test_an_unknown_pre_tokenizer_gpudoctor_cannot_name_is_one_line(tmp_path):
    with pytest.raises(ProblemFound) as err:
        exporting.convert(converter_at(tmp_path), tmp_path, tmp_path / "model.gguf", "q8_0", None)
    message = str(err.value)
    assert "does not know this BPE pre-tokenizer" in message and "NotImplementedError: BPE pre-tokenizer was not recognized" in message
    assert "\n" not in message


def test_a_converter_failure_shows_its_last_error_line(tmp_path):
    converter = converter_at(tmp_path)
    (converter.root / exporting.CONVERTER).write_text(
        "import logging, sys\nlogging.basicConfig()\ndef main():\n"
        "    print('Writing: 10%|#   |\\rWriting: 20%', file=sys.stderr)\n"
        "    logging.getLogger('hf-to-gguf').error('Model FooForCausalLM is not supported')\n    sys.exit(1)\n",
        encoding="utf-8",
    )
    with pytest.raises(ProblemFound) as err:
        exporting.convert(converter, tmp_path, tmp_path / "model.gguf", "q8_0", "gpt-2")
    assert str(err.value).endswith("ERROR:hf-to-gguf:Model FooForCausalLM is not supported")


def test_last_line_skips_progress_and_marks():
    assert exporting.last_line("a\nWriting 10%\rWriting 100%\n\n") == "Writing 100%"
    assert exporting.last_line(f"boom\n{exporting.MARK} gpt-2 (named)\n") == "boom"
    assert exporting.last_line("") == "no output"


# --- the Ollama Modelfile: its Go template rendered and compared with training's Alpaca prompt ----------------------


def go_render(template: str, messages: list[dict[str, str]]) -> str:
    """Text/template for the subset ollama_template uses (checked against Go 1.19's text/template: see the report
    of bench/gguf_export.py): text, {{ range .Messages }}, if / else if / else / end, $v := x, $v = x, eq, ne, not,
    and, string and bool literals, .Role and .Content."""
    assert "{{-" not in template and "-}}" not in template
    parts = re.split(r"\{\{(.*?)\}\}", template, flags=re.S)
    tokens = [("text", p) if i % 2 == 0 else ("action", p.strip()) for i, p in enumerate(parts)]
    tree, rest = _parse(tokens, 0)
    assert rest == len(tokens)
    out: list[str] = []
    _run(tree, {"Messages": messages}, {}, out)
    return "".join(out)


def _parse(tokens, i, stop=("end",)):
    body = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            body.append(("text", value))
            i += 1
        elif value == "end" or value == "else" or value.startswith("else if "):
            return body, i
        elif value.startswith("range "):
            inner, i = _parse(tokens, i + 1)
            assert tokens[i][1] == "end"
            body.append(("range", value[6:], inner))
            i += 1
        elif value.startswith("if "):
            branches, otherwise, cond = [], [], value[3:]
            while True:
                inner, i = _parse(tokens, i + 1)
                branches.append((cond, inner))
                here = tokens[i][1]
                if here.startswith("else if "):
                    cond = here[8:]
                    continue
                if here == "else":
                    otherwise, i = _parse(tokens, i + 1)
                assert tokens[i][1] == "end"
                break
            body.append(("if", branches, otherwise))
            i += 1
        elif m := re.fullmatch(r"(\$\w+)\s*(:?=)\s*(.+)", value, flags=re.S):
            body.append(("set", m.group(1), m.group(3)))
            i += 1
        else:
            body.append(("expr", value))
            i += 1
    return body, i


def _words(expr: str) -> list[str]:
    return re.findall(r'"[^"]*"|\(|\)|[^\s()]+', expr)


def _eval(words: list[str], dot, names) -> object:
    values, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(words[j], 0)
                j += 1
            values.append(_eval(words[i + 1 : j - 1], dot, names))
            i = j
            continue
        values.append(word)
        i += 1
    head, args = values[0], [_operand(v, dot, names) for v in values[1:]]
    functions = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a, "and": lambda *a: all(a)}
    if isinstance(head, str) and head in functions:
        return functions[head](*args)
    assert not args, words
    return _operand(head, dot, names)


def _operand(word, dot, names):
    if not isinstance(word, str):
        return word
    if word.startswith('"'):
        return word[1:-1]
    if word in ("true", "false"):
        return word == "true"
    if word.startswith("$"):
        return names[word]
    assert word.startswith("."), word
    return dot[word[1:]]


def _run(tree, dot, names, out) -> None:
    for node in tree:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            out.append(str(_eval(_words(node[1]), dot, names)))
        elif node[0] == "set":
            names[node[1]] = _eval(_words(node[2]), dot, names)
        elif node[0] == "range":
            for item in _eval(_words(node[1]), dot, names):
                _run(node[2], {"Role": item["role"], "Content": item["content"]}, names, out)
        elif node[0] == "if":
            for cond, body in node[1]:
                if _eval(_words(cond), dot, names):
                    _run(body, dot, names, out)
                    break
            else:
                _run(node[2], dot, names, out)


CONVERSATIONS = [
    [("user", "How do I reset my password?")],
    [("system", "Be brief."), ("user", "Hi")],
    [("user", "Hi"), ("assistant", "Hello."), ("user", "And {{ braces }}\nnew lines?")],
    [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("tool", "42"), ("assistant", "It is 42."), ("user", "Thanks")],
    [("system", ""), ("user", "An empty system message means the Alpaca preamble")],
]


@pytest.mark.parametrize("turns", CONVERSATIONS, ids=["one-turn", "system", "multi-turn", "tool", "empty-system"])
def test_the_modelfile_template_renders_the_prompt_training_used(turns):
    from gpudoctor.data.records import Message, Record
    from gpudoctor.train.formatting import alpaca_segments

    trained = "".join(text for text, _ in alpaca_segments(Record(0, [Message(r, c) for r, c in turns]), "</s>"))
    rendered = go_render(exporting.ollama_template("</s>"), [{"role": r, "content": c} for r, c in turns])
    assert rendered == trained


@pytest.mark.parametrize(
    ("limit", "trained", "expected"),
    [
        (32768, None, 4096),  # Mistral 7B merged folder: Ollama's default, not a 32k KV cache
        (32768, 8192, 8192),  # trained longer than the default: the trained length
        (32768, 512, 4096),  # trained shorter: still the default a chat needs
        (1024, 512, 1024),  # a model built for less than the default: its own window
        (None, 2048, 4096),  # no window in config.json
    ],
)
def test_ollama_context_is_the_trained_length_within_the_models_window(limit, trained, expected):
    assert exporting.ollama_context(limit, trained) == expected


def test_the_modelfile_names_the_gguf_beside_it_the_stops_and_the_context(tmp_path):
    text = exporting.modelfile_text(tmp_path / "support-bot.gguf", template="T", stops=["</s>", "### Instruction:"], num_ctx=1024)
    assert text.splitlines() == ["FROM ./support-bot.gguf", "", 'TEMPLATE """T"""', "", 'PARAMETER stop "</s>"', 'PARAMETER stop "### Instruction:"', "PARAMETER num_ctx 1024"]
    without = exporting.modelfile_text(tmp_path / "m.gguf", template=None, stops=["<|im_end|>"], num_ctx=None)
    assert "TEMPLATE" not in without and "num_ctx" not in without and 'PARAMETER stop "<|im_end|>"' in without
    with pytest.raises(ProblemFound, match="three double quotes"):
        exporting.modelfile_text(tmp_path / "m.gguf", template='say """hi"""', stops=[], num_ctx=None)


def test_ollama_names_are_lower_case_and_plain():
    assert exporting.ollama_name(Path("out/Support Bot v2.gguf")) == "support-bot-v2"
    assert exporting.ollama_name(Path("demo-q8_0.gguf")) == "demo-q8_0"
    assert exporting.ollama_name(Path("!!!.gguf")) == "gpudoctor-model"


# --- export(): refusals, failures and the written file ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, error, needle",
    [
        (dict(quant="q4_k"), BadInput, "--quant q4_k"),
        (dict(adapter=None), BadInput, "one of them"),
        (dict(model=Path("m")), BadInput, "one of them"),
        (dict(output="exists"), BadInput, "exists; choose a new file name or pass --force"),
        (dict(output="folder"), BadInput, "is a folder"),
        (dict(output="no/such/dir/m.gguf"), BadInput, "create it first"),
        (dict(output="kept.gguf", ollama=True), BadInput, "kept.Modelfile exists; choose a new -o name or pass --force"),
    ],
)
def test_request_refusals_are_one_line_before_anything_is_read(tmp_path, change, error, needle):
    (tmp_path / "exists").write_text("mine", encoding="utf-8")
    (tmp_path / "kept.Modelfile").write_text("mine", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    fields = dict(output=tmp_path / "m.gguf", adapter=tmp_path / "run") | change
    if isinstance(fields["output"], str):
        fields["output"] = tmp_path / fields["output"]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error) as err:
        exporting.export(ExportRequest(**fields), say=lambda line: None)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "exists").read_text() == "mine"


@pytest.fixture
def no_llama_check(monkeypatch):
    """The fake converter writes no real GGUF, so llama.cpp's own check (run when llama-cpp-python is installed) is off."""
    monkeypatch.setattr(exporting, "llama_check", lambda *args: None)


def test_a_failed_conversion_leaves_nothing_and_shows_the_converters_last_line(tiny_model, tmp_path, no_llama_check):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    data = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"]["add_prefix_space"] = True  # not a shape gpudoctor names, and the fake converter knows no hash
    (model / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    request = ExportRequest(output=out_dir / "m.gguf", model=model, converter=fake_llama_cpp(tmp_path / "llama.cpp"))
    with pytest.raises(ProblemFound) as err:
        exporting.export(request, say=lambda line: None)
    assert "NotImplementedError: BPE pre-tokenizer was not recognized" in str(err.value) and "\n" not in str(err.value)
    assert list(out_dir.iterdir()) == []  # no OUT, no partial GGUF, no scratch folder


def test_the_gguf_is_renamed_into_place_with_the_users_umask_and_the_template_added(tiny_model, tmp_path, no_llama_check, monkeypatch):
    seen = {}

    def convert(converter, model_dir, outfile, quant, fallback, **kwargs):
        seen.update(model_dir=model_dir, files=sorted(p.name for p in model_dir.iterdir()), fallback=fallback, quant=quant)
        outfile.write_bytes(b"GGUF")
        return "gpt-2 (named)"

    monkeypatch.setattr(exporting, "convert", convert)
    out = tmp_path / "out" / "Demo Bot.gguf"
    out.parent.mkdir()
    lines: list[str] = []
    mask = os.umask(0o027)
    try:
        result = exporting.export(ExportRequest(output=out, model=tiny_model, quant="f16", ollama=True, converter=fake_llama_cpp(tmp_path / "llama.cpp")), say=lines.append)
    finally:
        os.umask(mask)
    assert out.read_bytes() == b"GGUF" and out.stat().st_mode & 0o777 == 0o640
    assert seen["fallback"] == "gpt-2" and seen["quant"] == "f16" and "chat_template.jinja" in seen["files"]
    assert not (tiny_model / "chat_template.jinja").exists()  # the user's folder is left as it was
    assert sorted(p.name for p in out.parent.iterdir()) == ["Demo Bot.Modelfile", "Demo Bot.gguf"]
    modelfile = (out.parent / "Demo Bot.Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM ./Demo Bot.gguf\n")
    assert f"PARAMETER num_ctx {min(4096, json.loads((tiny_model / 'config.json').read_text())['max_position_embeddings'])}" in modelfile
    assert 'PARAMETER stop "</s>"' in modelfile and exporting.ollama_template("</s>") in modelfile
    assert result.tokens_checked is None and any("install llama-cpp-python to check it" in line for line in lines)
    assert any(line.endswith(f"ollama create demo-bot -f {out.parent / 'Demo Bot.Modelfile'}") for line in lines)


def test_too_little_disk_is_one_line_before_anything_loads(tiny_model, tmp_path):
    request = ExportRequest(output=tmp_path / "m.gguf", model=tiny_model, converter=fake_llama_cpp(tmp_path / "llama.cpp"))
    with pytest.raises(ProblemFound, match=r"1000 bytes free on .* the export needs about") as err:
        exporting.export(request, say=lambda line: None, free=1000)
    assert err.value.exit_code == EXIT_PROBLEM and not (tmp_path / "m.gguf").exists()



def test_the_gguf_size_is_the_parameters_times_the_types_bytes(tiny_model):
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import model_from_config

    params = total_params(model_from_config(tiny_model / "config.json"))
    assert exporting.gguf_size(tiny_model, "f16") == 2 * params
    assert exporting.gguf_size(tiny_model, "q8_0") == int(params * 34 / 32)


def test_a_tokenizer_llama_cpp_splits_differently_is_refused(tmp_path):
    class Tok:
        chat_template = "t"

    check = exporting.LlamaCheck(texts=5, mismatched=["héllo"], chat_template="t")
    with pytest.raises(ProblemFound, match=r"tokenizes 1 of 5 test texts differently .* first 'héllo'; nothing was written"):
        exporting.judge(check, Tok(), tmp_path, True)
    with pytest.raises(ProblemFound, match="does not carry the model's chat template"):
        exporting.judge(exporting.LlamaCheck(5, [], None), Tok(), tmp_path, True)
    assert exporting.judge(exporting.LlamaCheck(5, [], "t"), Tok(), tmp_path, True) == 5
    assert exporting.judge(None, Tok(), tmp_path, True) is None


# --- the CLI ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "--adapter", "run", "-o", "m.gguf"], "add --gguf"),
        (["export", "--adapter", "run", "--gguf"], "add -o OUT.gguf"),
        (["export", "--adapter", "run", "--gguf", "-o", "m.gguf", "--quant", "q2"], "--quant q2"),
        (["export", "--adapter", "run", "--gguf", "-o", "m.gguf", "--converter", "nowhere"], "--converter nowhere"),
    ],
)
def test_cli_errors_are_one_line_exit_2(cli, tmp_path, monkeypatch, args, needle):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli(*args)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gpudoctor: error: ") and needle in result.stderr
    assert list(work.iterdir()) == []


def test_cli_without_a_converter_says_how_to_get_it_exit_1(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(exporting.ENV, raising=False)
    result = cli("export", "--adapter", "run", "--gguf", "-o", "m.gguf")
    assert result.exit_code == EXIT_PROBLEM and result.stderr.count("\n") == 1
    assert "gpudoctor export --fetch-converter" in result.stderr and "Traceback" not in result.stderr


# --- end to end with llama.cpp's real converter (skips when none is found) ----------------------------------------


def real_converter(tmp_path_factory) -> Path:
    """$GPUDOCTOR_LLAMA_CPP, else the llama-cpp-python sdist at $GPUDOCTOR_LLAMA_CPP_SDIST (unpacked here), else the cache."""
    if os.environ.get(exporting.ENV):
        root = exporting.converter_root(Path(os.environ[exporting.ENV]))
    elif os.environ.get("GPUDOCTOR_LLAMA_CPP_SDIST") and Path(os.environ["GPUDOCTOR_LLAMA_CPP_SDIST"]).is_file():
        root = exporting.unpack_converter(Path(os.environ["GPUDOCTOR_LLAMA_CPP_SDIST"]), tmp_path_factory.mktemp("converter") / "llama.cpp")
    else:
        root = exporting.converter_root(exporting.converter_cache())
    if root is None:
        pytest.skip(f"no llama.cpp converter: set {exporting.ENV} or GPUDOCTOR_LLAMA_CPP_SDIST (the llama-cpp-python 0.3.36 sdist), or run `gpudoctor export --fetch-converter`")
    pytest.importorskip("sentencepiece", reason="llama.cpp's converter imports sentencepiece (pip install 'gpudoctor[gguf]')")
    return root


def gguf_fields(converter: Path, path: Path) -> dict:
    """The GGUF's metadata as llama.cpp's own gguf-py reads it (in a subprocess: never the PyPI gguf)."""
    code = textwrap.dedent(
        """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        from gguf import GGUFReader
        reader = GGUFReader(sys.argv[2])
        out = {k: f.contents() for k, f in reader.fields.items() if k.startswith(("tokenizer.ggml.pre", "tokenizer.chat_template", "general.file_type", "llama.context_length", "tokenizer.ggml.add_bos"))}
        out["tensors"] = len(reader.tensors)
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(converter / "gguf-py"), str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.slow
def test_end_to_end_a_merged_run_becomes_a_gguf_llama_cpp_reads_as_trained(tiny_model, tiny_config, support_records, tmp_path_factory):
    from rich.console import Console
    from transformers import AutoTokenizer

    from gpudoctor.train.merge import alpaca_chat_template
    from gpudoctor.train.run import train

    converter = real_converter(tmp_path_factory)
    folder = tmp_path_factory.mktemp("export-run")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records[:16]), encoding="utf-8")
    config = tiny_config(tiny_model, data, folder / "run", max_steps=2, save_steps=10)
    train(config, console=Console(file=io.StringIO(), width=100))
    out = folder / "out" / "tiny.gguf"
    out.parent.mkdir()
    lines: list[str] = []
    result = exporting.export(ExportRequest(output=out, adapter=Path(config.output), ollama=True, converter=converter), say=lines.append)
    fields = gguf_fields(converter, out)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    tokenizer.chat_template = alpaca_chat_template(tokenizer)
    assert fields["tokenizer.ggml.pre"] == "gpt-2" and fields["general.file_type"] == 7  # MOSTLY_Q8_0
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert fields["llama.context_length"] == 1024 and fields["tokenizer.ggml.add_bos_token"] is False and fields["tensors"] > 10
    assert result.pre_tokenizer == "gpt-2 (named)"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.Modelfile", "tiny.gguf"]  # the temp merge is gone
    if result.tokens_checked is not None:  # llama-cpp-python installed: llama.cpp tokenized every test text as HF does
        assert result.tokens_checked == len(exporting.check_texts(tokenizer))


def test_pips_output_reaches_the_user_as_it_comes_and_is_kept():
    said: list[str] = []
    done = exporting._streamed([sys.executable, "-c", "print('Collecting llama-cpp-python'); import sys; sys.exit(3)"], said.append)
    assert said == ["Collecting llama-cpp-python"] and done.returncode == 3 and done.stdout == "Collecting llama-cpp-python\n"

"""Benchmark: the demo run exported to GGUF (f16 and q8_0) and run by llama.cpp, against the merged Hugging Face model.

    python bench/gguf_export.py [--run DEMO_RUN] [--converter PATH] [--workdir DIR] [--prompts N]

Needs llama-cpp-python compiled (`pip install llama-cpp-python==0.3.36`; ~10 min of compiling on 2 cores) and
llama.cpp's converter (--converter, $GPUDOCTOR_LLAMA_CPP, or `gpudoctor export --fetch-converter`). Without
--run it trains the demo first (`gpudoctor train --demo`, minutes on a CPU). Then: `gpudoctor merge` (faithful
NF4, fp32), `gpudoctor export --model MERGED --gguf --quant f16|q8_0`, and for each GGUF: how llama.cpp
tokenizes every text of the demo data against the HF tokenizer, the next-token logits at every position of the
demo prompts (the chat template's rendering; max |difference| and top-1 agreement, all positions and the last
one, where the reply starts), the greedy replies (token for token), and the replies of llama-cpp-python's chat API,
which prompts with the chat template the GGUF carries (as text). Prints the figures; exit 1 when a GGUF disagrees
on a tokenization, a greedy reply or a chat reply.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.train import export as exporting  # noqa: E402
from gpudoctor.train.demo import DATA  # noqa: E402

REPLY_TOKENS = 48


def demo_run(args: argparse.Namespace, work: Path) -> Path:
    if args.run:
        return Path(args.run)
    from gpudoctor.cli.main import run

    folder = work / "demo-run"
    started = time.perf_counter()
    if run(["train", "--demo", "--gpu", "cpu", "--output", str(folder)]) != 0:
        sys.exit("bench: training the demo failed")
    print(f"trained the demo in {time.perf_counter() - started:.0f} s")
    return folder


def prompts(count: int) -> list[str]:
    from gpudoctor.cli.demo import DEMO_PROMPT
    from gpudoctor.train.merge import PROMPTS

    records = json.loads(DATA.read_text(encoding="utf-8"))
    return [DEMO_PROMPT, *PROMPTS, *[r["instruction"] for r in records[-count:]]]


def data_texts() -> list[str]:
    records = json.loads(DATA.read_text(encoding="utf-8"))
    texts = [r[key] for r in records for key in ("instruction", "input", "output") if r.get(key)]
    return list(dict.fromkeys(texts)) + list(exporting.CHECK_TEXTS)


def hf_side(merged: Path, ids: list[list[int]], eos: int, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    logits, replies = [], []
    with torch.no_grad():
        for row in ids:
            logits.append(model(input_ids=torch.tensor([row])).logits[0].float().numpy())
            out = model.generate(torch.tensor([row]), max_new_tokens=REPLY_TOKENS, do_sample=False, eos_token_id=eos, pad_token_id=eos)
            replies.append(out[0, len(row) :].tolist())
    return logits, replies, [tokenizer.decode(r, skip_special_tokens=True) for r in replies]


def llama_side(gguf: Path, ids: list[list[int]], eos: int, asked: list[str]):
    """Logits at every prompt position, a greedy reply (argmax of llama.cpp's own logits, token by token), and the
    reply of llama-cpp-python's chat API, which prompts with the GGUF's own chat template (temperature 0)."""
    import contextlib
    import io

    import numpy as np
    from llama_cpp import Llama

    with contextlib.redirect_stderr(io.StringIO()):
        llm = Llama(model_path=str(gguf), n_ctx=1024, logits_all=True, verbose=False, seed=0, n_threads=2)
    logits, replies = [], []
    for row in ids:
        llm.reset()
        llm.eval(row)
        logits.append(np.array(llm.scores[: len(row)], dtype=np.float32))
        reply: list[int] = []
        while len(reply) < REPLY_TOKENS:
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            reply.append(token)
            if token == eos:
                break
            llm.eval([token])
        replies.append(reply)
    chats = []
    for prompt in asked:
        answer = llm.create_chat_completion([{"role": "user", "content": prompt}], temperature=0.0, top_k=1, max_tokens=REPLY_TOKENS, seed=0)
        chats.append(answer["choices"][0]["message"]["content"])
    llm.close()
    return logits, replies, chats


def tokenization(gguf: Path, tokenizer, texts: list[str]) -> tuple[int, int]:
    check = exporting.llama_check(gguf, tokenizer, texts)
    return check.texts - len(check.mismatched), check.texts


def compare(name: str, hf, llama) -> dict:
    import numpy as np

    (hf_logits, hf_replies, hf_texts), (ll_logits, ll_replies, ll_chats) = hf, llama
    diff = max(float(np.abs(a - b).max()) for a, b in zip(hf_logits, ll_logits))
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(hf_logits, ll_logits))
    positions = sum(len(a) for a in hf_logits)
    last = sum(int(a[-1].argmax() == b[-1].argmax()) for a, b in zip(hf_logits, ll_logits))
    replies = sum(int(a == b) for a, b in zip(hf_replies, ll_replies))
    chats = sum(int(a.strip() == b.strip()) for a, b in zip(hf_texts, ll_chats))
    return dict(
        name=name, max_abs_logit_diff=diff, top1=same / positions, positions=positions, next_token=last / len(hf_logits),
        replies_same=replies, chat_same=chats, prompts=len(hf_logits), example=(hf_texts[0], ll_chats[0]),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished demo run folder (default: train one)")
    parser.add_argument("--converter", help="llama.cpp's converter (default: $GPUDOCTOR_LLAMA_CPP or the cache)")
    parser.add_argument("--workdir", help="where the merged model and the GGUFs go (default: a temp folder)")
    parser.add_argument("--prompts", type=int, default=16, help="validation prompts from the demo data, besides the demo's own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gguf-bench-") as temp:
        return bench(args, Path(args.workdir) if args.workdir else Path(temp))


def bench(args: argparse.Namespace, work: Path) -> int:
    """Long because it is the benchmark's script: train or take the run, merge, export twice, measure, print."""
    from transformers import AutoTokenizer

    from gpudoctor.train.merge import MergeRequest, merge

    work.mkdir(parents=True, exist_ok=True)
    converter = Path(args.converter) if args.converter else None
    run_dir = demo_run(args, work)
    merged = work / "merged"
    started = time.perf_counter()
    merge(MergeRequest(adapter=run_dir, output=merged, dtype="fp32", force=True), say=lambda line: print(f"  {line}"))
    print(f"merged in {time.perf_counter() - started:.0f} s")
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    asked = prompts(args.prompts)
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"] for p in asked]
    hf = hf_side(merged, ids, tokenizer.eos_token_id, tokenizer)
    texts, failed, rows = data_texts(), False, []
    for quant in exporting.QUANTS[::-1]:  # f16, then q8_0
        out = work / f"demo-{quant}.gguf"
        started = time.perf_counter()
        exporting.export(exporting.ExportRequest(output=out, model=merged, quant=quant, ollama=True, converter=converter, force=True), say=lambda line: print(f"  {line}"))
        seconds = time.perf_counter() - started
        agree, total = tokenization(out, tokenizer, texts)
        row = compare(quant, hf, llama_side(out, ids, tokenizer.eos_token_id, asked)) | dict(tokenized_same=agree, texts=total, export_s=seconds, size=out.stat().st_size)
        rows.append(row)
        failed |= agree != total or row["replies_same"] != row["prompts"] or row["chat_same"] != row["prompts"]
    print()
    print(f"{'GGUF':6} {'size':>9} {'export':>7} {'tokenization':>14} {'max|Δlogit|':>12} {'top-1 (all pos.)':>17} {'next token':>11} {'greedy replies':>15} {'chat API':>9}")
    for r in rows:
        print(
            f"{r['name']:6} {r['size'] / 2**20:7.2f}Mi {r['export_s']:6.0f}s {r['tokenized_same']:>6}/{r['texts']:<7} {r['max_abs_logit_diff']:12.4f} "
            f"{r['top1']:10.2%} of {r['positions']:<4} {r['next_token']:10.0%} {r['replies_same']:>7}/{r['prompts']} same {r['chat_same']:>4}/{r['prompts']}"
        )
    print(f"reply to {asked[0]!r}: HF {rows[-1]['example'][0]!r}; llama.cpp chat API (q8_0) {rows[-1]['example'][1]!r}")
    print(f"against: the merged HF model (fp32, plain transformers) on {len(asked)} demo prompts rendered by the chat template; greedy replies up to {REPLY_TOKENS} tokens")
    print(f"Modelfile: {work / 'demo-q8_0.Modelfile'}" if args.workdir else "")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

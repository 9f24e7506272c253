"""`gpudoctor data …`: check, clean, dedupe, split, convert and synthesise training data.

Only typer is imported at module level; the data layer loads when a command runs, and nothing
here imports the training stack (except `data synth --model`, inside the generator).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

    from gpudoctor.data.check import CheckReport
    from gpudoctor.data.records import Dataset
    from gpudoctor.data.synth import SynthOutput

MARK = {"error": "✗", "warning": "!"}
MAX_LISTED = 8


def register(app: typer.Typer) -> None:
    data = typer.Typer(
        name="data",
        help="Check, clean, dedupe, split, convert and synthesise training data.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    data.command("check", help="Report records, empty fields, duplicates, token lengths, languages and personal data.")(check)
    data.command("clean", help="Replace personal data with placeholders, drop empty and duplicate records.")(clean)
    data.command("dedupe", help="Drop exact (and with --near, near) duplicate records.")(dedupe)
    data.command("split", help="Split into train / val (/ test) files, shuffled with a seed.")(split)
    data.command("convert", help="Convert between Alpaca, ShareGPT and chat messages; JSON, JSONL and CSV.")(convert)
    data.command("synth", help="Generate new records imitating a few examples, with an LLM endpoint or a local model.")(synth)
    data.command("import-mail", help="Turn your sent replies in an mbox, Maildir or .eml folder into training pairs.")(import_mail)
    app.add_typer(data, name="data")


def _records(numbers: list[int]) -> str:
    shown = ", ".join(f"#{n}" for n in numbers[:MAX_LISTED])
    return shown + (f" … (+{len(numbers) - MAX_LISTED})" if len(numbers) > MAX_LISTED else "")


def check(
    file: Path = typer.Argument(..., help="Alpaca, ShareGPT or messages data: .json, .jsonl or .csv"),
    model: str | None = typer.Option(None, "--model", help="Count tokens with this model's tokenizer (folder, profile or hub id, if on this machine)."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Count records longer than this many tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    nlp: bool = typer.Option(False, "--nlp", help="Also run the nlp extra's name recognisers (jieba: slower, as 'data clean' does)."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Do not scan for personal data."),
) -> int:
    from gpudoctor.data.check import check_dataset
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.stats import find_tokenizer
    from gpudoctor.errors import EXIT_OK, EXIT_PROBLEM

    dataset = load_dataset(file)
    tokenizer = find_tokenizer(model) if model else None
    report = check_dataset(dataset, tokenizer_path=tokenizer, seq_len=seq_len, use_nlp=nlp, pii=not no_pii)
    if model and tokenizer is None:
        report.tokens.tokenizer += f" (no tokenizer.json of '{model}' on this machine)"
    if as_json:
        from gpudoctor.cli.output import print_json

        document = dataclasses.asdict(report)
        document["trainable"] = report.trainable
        print_json(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _render_check(report)
    return EXIT_OK if report.trainable else EXIT_PROBLEM


def _render_check(report: CheckReport) -> None:
    from gpudoctor.cli.output import console

    out = console()
    t = report.tokens
    rows = [
        ("file", report.path),
        ("format", f"{report.format}, {report.container}, {report.records:,} records"),
        ("tokens", f"min {t.min:,} · median {t.median:,} · p95 {t.p95:,} · max {t.max:,} · total {t.total:,}"),
        ("", t.tokenizer),
    ]
    if t.seq_len:
        rows.append((f"> {t.seq_len}", f"{len(t.over_seq_len)} records {_records(t.over_seq_len)}".rstrip()))
    rows.append(("languages", " · ".join(f"{k} {v}" for k, v in report.languages.items()) + "  (script-based guess)"))
    empty = " · ".join(f"{k} {len(v)} ({_records(v)})" for k, v in report.empty.items()) or "none"
    rows.append(("empty", empty))
    near = ", ".join(f"#{a}≈#{b}" for a, b, _ in report.near_duplicates[:MAX_LISTED])
    rows.append(("duplicates", f"exact {len(report.exact_duplicates)} · near {len(report.near_duplicates)}" + (f" ({near})" if near else "")))
    personal = " · ".join(
        f"{k} {report.personal_data_counts[k]} in {len(v)} records ({_records(v)})" for k, v in report.personal_data.items()
    )
    rows.append(("personal", personal or "none found"))
    for line in report.scanned:
        if "NOT scanned" in line or "not scanned" in line:
            rows.append(("", line.replace("NOT scanned: ", "not scanned: ")))
    rows.append(("templates", ", ".join(f"{k} in {len(v)}" for k, v in report.template_placeholders.items()) or "none"))
    if report.consistent:  # details the replies share (data/consistent.py); the row is shown only when there are some
        rows.append(("repeated", " · ".join(f"'{d.text}' in {len(d.records)} replies ({d.share:.0%}, {d.why})" for d in report.consistent[:MAX_LISTED])))
    for label, value in rows:
        out.print(f"{label:<11} {value}", markup=False, soft_wrap=True)
    out.print()
    for finding in report.findings:
        records = f" ({_records(finding.records)})" if finding.records else ""
        out.print(f"[{MARK[finding.level]}] {finding.title}{records}", markup=False, soft_wrap=True)
        out.print(f"    fix: {finding.fix}", markup=False, soft_wrap=True)
    errors = sum(f.level == "error" for f in report.findings)
    warnings = len(report.findings) - errors
    verdict = "ready to train" if report.trainable else "not ready to train"
    out.print(f"{verdict}: {errors} errors, {warnings} warnings", markup=False, soft_wrap=True)


def clean(
    file: Path = typer.Argument(..., help="The data to clean (never modified)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the cleaned data (.json, .jsonl, .csv)."),
    report_path: Path | None = typer.Option(None, "--report", help="Where to write what changed (default: OUTPUT.report.json)."),
    numbered: bool = typer.Option(False, "--numbered", help="Number placeholders within a record: <NAME_1>, <NAME_2>."),
    keep_duplicates: bool = typer.Option(False, "--keep-duplicates", help="Keep exact duplicate records."),
    near: bool = typer.Option(False, "--near", help="Also drop near duplicates (MinHash similarity ≥ 0.8)."),
    keep_empty: bool = typer.Option(False, "--keep-empty", help="Keep records with an empty prompt or reply."),
    no_nlp: bool = typer.Option(False, "--no-nlp", help="Skip the optional NLP name recognisers (jieba)."),
    names: str | None = typer.Option(None, "--names", help="Your own names to replace always, comma-separated (staff, the agent's own name): case-insensitive, whole words."),
    names_file: Path | None = typer.Option(None, "--names-file", help="Like --names, one name per line (# starts a comment)."),
    replace: str | None = typer.Option(None, "--replace", help="Other text to replace always, comma-separated (a ticket signature, a company line): <PHONE>, <EMAIL> or <DETAIL> by its shape."),
) -> None:
    from gpudoctor.atomic import write_json
    from gpudoctor.cli.output import console
    from gpudoctor.data.clean import clean_dataset
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.write import write_dataset

    from gpudoctor.data.clean import read_names

    own = read_names(names, names_file)
    dataset = load_dataset(file)
    result = clean_dataset(
        dataset, use_nlp=not no_nlp, numbered=numbered, drop_duplicates=not keep_duplicates, near=near, drop_empty=not keep_empty,
        names=own, replace=read_names(replace),
    )
    report_file = report_path or output.with_name(output.name + ".report.json")
    write_dataset(result.dataset, output)
    write_json(report_file, result.report(str(file), str(output)))
    out = console()
    kinds = " · ".join(f"{k} {v}" for k, v in result.counts().items()) or "none"
    out.print(f"wrote {output}: {len(result.dataset.records):,} of {len(dataset.records):,} records", markup=False, soft_wrap=True)
    out.print(f"replaced   {kinds} in {len({r.record for r in result.replacements})} records", markup=False, soft_wrap=True)
    if own:
        mine = sum(r.detail == "your --names list" for r in result.replacements)
        out.print(f"names      {mine} occurrences of your {len(own)} names replaced ({', '.join(own[:MAX_LISTED])})", markup=False, soft_wrap=True)
    if replace:
        theirs = sum(r.detail == "your --replace list" for r in result.replacements)
        out.print(f"replace    {theirs} occurrences of your --replace list replaced", markup=False, soft_wrap=True)
    dropped = " · ".join(f"{reason} {n}" for reason, n in result.dropped_counts().items()) or "none"
    out.print(f"dropped    {dropped}", markup=False, soft_wrap=True)
    out.print(f"report     {report_file} (holds the original values: keep it private)", markup=False, soft_wrap=True)
    for line in result.scanned:
        if line.startswith("NOT") or "NOT scanned" in line:
            out.print(f"note       {line}", markup=False, soft_wrap=True)


def dedupe(
    file: Path = typer.Argument(..., help="The data to deduplicate (never modified)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the records that are kept."),
    near: bool = typer.Option(False, "--near", help="Also drop near duplicates."),
    threshold: float = typer.Option(0.8, "--threshold", min=0.1, max=1.0, help="Near-duplicate similarity (estimated Jaccard of word 3-grams)."),
) -> None:
    from gpudoctor.cli.output import console
    from gpudoctor.data.dedupe import find_duplicates
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.write import subset, write_dataset

    dataset = load_dataset(file)
    found = find_duplicates(dataset, near=near, threshold=threshold)
    drop = {d.index for d in found.exact} | ({d.index for d in found.near} if near else set())
    kept = subset(dataset, [r for r in dataset.records if r.index not in drop], str(file))
    write_dataset(kept, output)
    out = console()
    out.print(f"wrote {output}: {len(kept.records):,} of {len(dataset.records):,} records", markup=False, soft_wrap=True)
    out.print(f"dropped exact {len(found.exact)} · near {len(found.near) if near else 0}", markup=False, soft_wrap=True)
    if not near and found.near:
        out.print(f"kept {len(found.near)} near duplicates; --near drops them", markup=False, soft_wrap=True)


def split(
    file: Path = typer.Argument(..., help="The data to split (never modified)."),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for train/val/test files."),
    val: float = typer.Option(0.1, "--val", min=0.0, help="Validation share (<1) or count (≥1)."),
    test: float = typer.Option(0.0, "--test", min=0.0, help="Test share (<1) or count (≥1)."),
    seed: int = typer.Option(42, "--seed", help="Shuffle seed."),
) -> None:
    from gpudoctor.cli.output import console
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.split import split_dataset
    from gpudoctor.data.write import write_dataset

    dataset = load_dataset(file)
    parts = split_dataset(dataset, val=val, test=test, seed=seed)
    suffix = file.suffix.lower() if file.suffix.lower() in (".json", ".jsonl", ".csv") else ".json"
    out = console()
    for name, part in parts.items():
        target = output_dir / f"{name}{suffix}"
        write_dataset(part, target)
        out.print(f"{name:<6} {len(part.records):>7,} records  {target}", markup=False, soft_wrap=True)


def convert(
    file: Path = typer.Argument(..., help="The data to convert (never modified)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file; .jsonl, .csv or .json decides the container."),
    to: str | None = typer.Option(None, "--to", help="alpaca, sharegpt or messages (default: the input's format)."),
) -> None:
    from gpudoctor.cli.output import console
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.write import FORMATS, container_for, write_dataset
    from gpudoctor.errors import BadInput

    if to is not None and to not in FORMATS:
        raise BadInput(f"--to {to}: choose one of {', '.join(FORMATS)}")
    dataset = load_dataset(file)
    write_dataset(dataset, output, to)
    console().print(
        f"wrote {output}: {len(dataset.records):,} records, {dataset.format} {dataset.container} → "
        f"{to or dataset.format} {container_for(output)}",
        markup=False,
        soft_wrap=True,
    )


def synth(
    examples: Path = typer.Option(..., "--examples", help="A few records to imitate (any format the loader reads)."),
    n: int = typer.Option(..., "-n", min=1, help="How many records the output should hold (an existing output counts)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to save them as they come (same format as the examples; .jsonl is appended to, .json/.csv rewritten). If it exists, synth goes on from what is there."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp)."),
    model: str | None = typer.Option(None, "--model", help="Model name for --endpoint; without --endpoint, a local model folder."),
    prompt_file: Path | None = typer.Option(None, "--prompt-file", help="Your own prompt; {examples} marks where the examples go."),
    inputs_only: bool = typer.Option(False, "--inputs-only", help="Generate only the user's side (plain text), for a person to answer."),
    per_prompt: int = typer.Option(3, "--examples-per-prompt", min=1, help="Examples shown in each request."),
    temperature: float = typer.Option(0.9, "--temperature", min=0.0, help="Sampling temperature."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="Longest reply, in tokens."),
    seed: int = typer.Option(0, "--seed", help="Seed for choosing examples."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the endpoint's API key, if any."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.001, help="Seconds to wait for the endpoint's answer before trying again."),
    retries: int = typer.Option(4, "--retries", min=0, help="Tries again after a timeout, a dropped connection, HTTP 429 or 5xx (waits double from 1 s, with jitter)."),
    backoff: float = typer.Option(1.0, "--backoff", min=0.0, hidden=True, help="First wait between tries, in seconds."),
) -> int:
    import os
    from collections import Counter

    from gpudoctor.cli.output import progress
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.synth import RetryPolicy, endpoint_generator, local_generator, open_output
    from gpudoctor.errors import BadInput

    if endpoint is None and model is None:
        raise BadInput("data synth needs --endpoint URL (with --model NAME) or --model with a local model folder")
    prompt = None
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BadInput(f"{prompt_file}: cannot read the prompt ({type(err).__name__})") from None
    dataset = load_dataset(examples)
    saved = open_output(output, dataset)
    say = progress()
    if saved.note:
        say(saved.note)
    retried: Counter[str] = Counter()

    def on_retry(reason: str, failed: int, allowed: int, wait: float) -> None:
        retried[reason] += 1
        say(f"{reason}: try {failed + 1} of {allowed} in {wait:.1f} s")

    if endpoint is not None:
        policy = RetryPolicy(tries=retries + 1, base=backoff, cap=max(backoff, 30.0))
        generate = endpoint_generator(endpoint, model or "default", api_key=os.environ.get(api_key_env), temperature=temperature,
                                      max_tokens=max_tokens, timeout=timeout, retry=policy, on_retry=on_retry)
    else:
        generate = local_generator(str(model), temperature=temperature, max_new_tokens=max_tokens)
    return _synth_saving(dataset, n, generate, saved, retried, prompt=prompt, inputs_only=inputs_only, per_prompt=per_prompt, seed=seed)


def _synth_saving(dataset: Dataset, n: int, generate: Callable[[str], str], saved: SynthOutput, retried: Counter[str], **options: Any) -> int:
    """Run synth into `saved`; an interruption or a failure says what the output keeps and how to go on."""
    from gpudoctor.cli.output import console, progress
    from gpudoctor.data.synth import TRIES_PER_RECORD, sigterm_as_interrupt, synthesize
    from gpudoctor.errors import EXIT_INTERRUPTED, GpudoctorError, ProblemFound

    say = progress()
    kept = f"{saved.path} keeps {{}} of {n} records; run the same command again to make the rest"
    if saved.resumed >= n:
        console().print(f"{saved.path} already holds {saved.resumed} records (-n {n}); nothing to make", markup=False, soft_wrap=True)
        return 0
    if saved.resumed:
        say(f"{saved.path}: {saved.resumed} records from an earlier run; making {n - saved.resumed} more")
    try:
        with sigterm_as_interrupt():
            result = synthesize(dataset, n, generate, output=saved, **options,
                                progress=lambda done, total: say(f"generated {done}/{total}"))
    except KeyboardInterrupt:
        say("gpudoctor: interrupted: " + kept.format(len(saved.records)))
        return EXIT_INTERRUPTED
    except GpudoctorError as err:
        if len(saved.records) > saved.resumed:
            raise type(err)(f"{err}; " + kept.format(len(saved.records)), exit_code=err.exit_code) from None
        raise
    rejected = " · ".join(f"{reason} {count}" for reason, count in result.rejected.items()) or "none"
    if not result.new:
        tries = (n - saved.resumed) * TRIES_PER_RECORD
        raise ProblemFound(f"the model produced no usable record in {tries} tries (rejected: {rejected}); try another prompt or model")
    out = console()
    earlier = f" ({result.resumed} from an earlier run)" if result.resumed else ""
    out.print(f"wrote {saved.path}: {len(result.dataset.records)} of {n} records requested{earlier}", markup=False, soft_wrap=True)
    out.print(f"rejected   {rejected}", markup=False, soft_wrap=True)
    if retried:
        out.print("retried    " + " · ".join(f"{reason} {count}" for reason, count in retried.items()), markup=False, soft_wrap=True)
    if options.get("inputs_only"):
        out.print("the replies are empty: write them, then run 'gpudoctor data check' on the file", markup=False, soft_wrap=True)
    return 0


def import_mail(
    sources: list[Path] = typer.Argument(..., help="mbox files, Maildirs or folders of .eml files (e.g. Sent and Inbox)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the records (.json, .jsonl; .csv for alpaca)."),
    me: list[str] | None = typer.Option(None, "--me", help="Your address (repeatable; default: the most frequent sender)."),
    fmt: str = typer.Option("alpaca", "--format", help="alpaca (one pair per reply), or chat / sharegpt (whole threads as turns)."),
    instruction: str | None = typer.Option(None, "--instruction", help="Alpaca instruction (default 'Reply to this e-mail.'); with chat, a system message."),
) -> None:
    from gpudoctor.cli.output import console
    from gpudoctor.data.mail import import_mail as run_import
    from gpudoctor.data.mail.build import REASONS
    from gpudoctor.data.write import write_dataset
    from gpudoctor.errors import BadInput, ProblemFound

    if any(output.exists() and output.resolve() == source.resolve() for source in sources):
        raise BadInput(f"{output}: is one of the mail sources; choose another -o path")
    result = run_import(sources, me=me, fmt=fmt, instruction=instruction)
    skipped = " · ".join(f"{reason} {result.skipped[reason]}" for reason in REASONS if result.skipped[reason]) or "none"
    guessed = " (the most frequent sender; --me to choose)" if result.me_guessed else ""
    if not result.dataset.records:
        raise ProblemFound(f"no reply from {', '.join(result.me)} with its original found in {result.read} messages (skipped: {skipped}); check --me")
    write_dataset(result.dataset, output)
    out = console()
    lines = [
        ("read", f"{result.read:,} messages ({', '.join(result.kinds)})"),
        ("me", ", ".join(result.me) + guessed),
        ("wrote", f"{output}: {len(result.dataset.records):,} records ({result.dataset.format}; {result.originals_used:,} messages replied to)"),
        ("skipped", skipped),
    ]
    if result.cut:
        lines.append(("cut", f"{result.cut} message(s) over the cap cut to 20,000 characters of their own text"))
    if result.charset_repaired:
        lines.append(("charset", f"{result.charset_repaired} message(s) with a missing or wrong charset read as cp1252/latin-1"))
    for label, value in lines:
        out.print(f"{label:<10} {value}", markup=False, soft_wrap=True)

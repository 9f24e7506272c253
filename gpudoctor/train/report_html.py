"""report.html: one self-contained page of a run, to look at rather than read JSON.

It shows the loss curves (loss.png's figure, report.loss_figure, as inline SVG), planned vs measured
memory (the memory model's components for the settings that ran, and each measured peak against the
figure it predicted, plan.corrections.measured_figures), the settings, the data, and the base vs
tuned answers of compare.json. Everything comes from the run folder (report.json, run.yaml,
run-data.json, compare.json); the page loads nothing from anywhere (no script, no external URL:
styles inline, plots inline SVG) and every text from the run is HTML-escaped. `train` writes it
when a run ends and `compare` rewrites it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from html import escape as html_escape
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_text
from gpudoctor.types import GIB

REPORT_HTML = "report.html"
LOSS_IDS = {"train": "train-loss", "eval": "eval-loss"}  # the SVG groups of the two curves (tests find them)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2330;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;border-bottom:1px solid #d8dce4;padding-bottom:.2rem;margin-top:2rem}
.sub{color:#5b6475;margin-top:0}table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .7rem;text-align:left;vertical-align:top;border-bottom:1px solid #eceef2}
th{background:#f5f6f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:.8rem;background:#4c78a8;border-radius:2px;vertical-align:middle}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.3rem 1.5rem}.facts div span{color:#5b6475}
.answer{border:1px solid #d8dce4;border-radius:6px;margin:1rem 0;padding:.6rem .9rem}.answer h3{font-size:1rem;margin:.1rem 0 .5rem}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.pair h4{margin:.2rem 0;font-size:.85rem;color:#5b6475;text-transform:uppercase}
pre{white-space:pre-wrap;word-wrap:break-word;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;background:#f7f8fa;padding:.5rem;border-radius:4px;margin:0}
.side{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}.same{color:#a15c00}.note{color:#5b6475}svg{max-width:100%;height:auto}
"""


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # no HTML shows them (the parser drops or replaces each)


def printable(text: str) -> str:
    """`text` as a person is shown it (the page, the terminal): CR LF as LF, every other control character but tab
    (a model's stray byte, an escape sequence) as U+FFFD."""
    return CONTROL.sub("\ufffd", text.replace("\r\n", "\n"))


def escape(value: Any) -> str:
    """Text from the run, safe as HTML text or attribute."""
    return html_escape(printable(str(value)), quote=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file of the run folder, None when it is missing, unreadable or not an object (a list, a
    number: a file edited by hand or by another tool); the page shows what there is."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def size(value: float | None) -> str:
    """Bytes as GiB, or MiB below 1 GiB (a tiny model's components would all read 0.00 GiB)."""
    if value is None:
        return "–"
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / 2**20:.1f} MiB"


def table(rows: list[tuple[Any, ...]], head: tuple[str, ...] = (), numeric: tuple[int, ...] = ()) -> str:
    """An HTML table of escaped cells (cells in `numeric` columns right-aligned)."""
    header = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table>{header}{body}</table>"


# The loss curves.


def train_report(report: dict[str, Any]) -> Any:
    """report.json as the TrainReport that loss.png was drawn from (unknown keys dropped)."""
    from gpudoctor.train.report import TrainReport

    names = {f.name for f in dataclasses.fields(TrainReport)}
    return TrainReport(**{k: v for k, v in report.items() if k in names})


def loss_svg(report: dict[str, Any]) -> str | None:
    """loss.png's figure as inline SVG (text as text, every point kept, no XML prologue or namespace
    URLs); the curves are the groups LOSS_IDS names. None when no loss was recorded."""
    import matplotlib

    from gpudoctor.train.report import loss_figure

    with matplotlib.rc_context({"svg.fonttype": "none", "path.simplify": False, "svg.hashsalt": "gpudoctor"}):
        figure = loss_figure(train_report(report))
        if figure is None:
            return None
        lines = figure.axes[0].lines
        lines[0].set_gid(LOSS_IDS["train"])
        if report.get("eval_losses"):
            lines[1].set_gid(LOSS_IDS["eval"])
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)  # HTML gives inline <svg> its namespaces


# Memory.


def planned_estimate(report: dict[str, Any]) -> Any:
    """The memory model's estimate for the settings that ran on the device that ran them; None where unknown."""
    from gpudoctor.errors import GpudoctorError
    from gpudoctor.plan.memory import estimate
    from gpudoctor.plan.types import Hardware
    from gpudoctor.profiles import load_model
    from gpudoctor.settings import Settings

    try:
        spec = load_model(str(report["model"]))
        settings = Settings(**report["settings"])
        return estimate(spec, settings, Hardware(device=str(report.get("device") or "cpu"), name="", budget_bytes=0))
    except (GpudoctorError, KeyError, TypeError, ValueError):
        return None


def component_name(name: str, device: str) -> str:
    """A breakdown key as the page names it (on the CPU the memory model's context figure is the process's own)."""
    if name == "cuda_context" and device == "cpu":
        return "process (Python, torch)"
    return name.replace("_", " ")


def memory_section(report: dict[str, Any]) -> str:
    """Planned bytes per component (with a bar each) and each measured peak against what was predicted for it."""
    from gpudoctor.plan.corrections import LABELS, measured_figures

    planned = planned_estimate(report)
    readings = {"allocated": report.get("measured_peak_allocated_bytes"), "reserved": report.get("measured_peak_reserved_bytes"), "rss": report.get("measured_peak_rss_bytes")}
    parts = ["<h2>Memory: planned vs measured</h2>"]
    if planned is None:
        parts.append("<p class=note>The memory model does not know this model, so there is no plan to compare with.</p>")
    else:
        biggest = max(planned.breakdown_bytes.values(), default=0) or 1
        rows = "".join(
            f"<tr><td>{escape(component_name(name, str(report.get('device'))))}</td><td class=num>{escape(size(value))}</td>"
            f"<td><span class=bar style=\"width:{max(0.0, 14 * value / biggest):.2f}rem\"></span></td></tr>"
            for name, value in planned.breakdown_bytes.items()
        )
        rows += f"<tr><th>total</th><th class=num>{escape(size(sum(planned.breakdown_bytes.values())))}</th><th></th></tr>"
        parts.append(f"<p>Planned, per component (peak of a training step, {escape(str(report.get('device')))}):</p>")
        parts.append(f"<table><tr><th>component</th><th>planned</th><th></th></tr>{rows}</table>")
        figures = measured_figures({k: v for k, v in readings.items() if v}, planned, str(report.get("device") or "cpu"))
        measured = [(LABELS[n], size(p), size(m), f"×{m / p:.2f}" if p else "–") for n, (m, p) in figures.items()]
        if measured:
            parts.append("<p>Measured peaks of the whole run against the figure the plan predicts for each:</p>")
            parts.append(table(measured, ("figure", "planned", "measured", "measured / planned"), numeric=(1, 2, 3)))
    if report.get("planned_peak_bytes"):
        parts.append(
            f"<p class=note>report.json's planned peak (torch reserved, without the process or CUDA context; the plan the run "
            f"started from): {escape(size(report['planned_peak_bytes']))}.</p>"
        )
    return "".join(parts)


# The other sections.


def header_section(folder: Path, report: dict[str, Any]) -> str:
    """The title and the run's headline facts."""
    losses = report.get("losses") or []
    loss = f"{losses[0][1]:.3f} → {losses[-1][1]:.3f}" if losses else "–"
    eval_loss = report.get("final_eval_loss")
    facts = [
        ("status", report.get("status", "no report.json yet")), ("model", report.get("model", "–")), ("data", report.get("data", "–")),
        ("device", f"{report.get('device', '–')} × {report.get('world_size', 1)} ({report.get('strategy', 'single')})"),
        ("steps", report.get("steps", "–")), ("training loss", loss), ("final eval loss", f"{eval_loss:.3f}" if eval_loss is not None else "–"),
        ("duration", f"{report['duration_s']:.0f} s" if report.get("duration_s") is not None else "–"),
        ("tokens/s", f"{report['tokens_per_s']:,.0f}" if report.get("tokens_per_s") else "–"),
    ]  # fmt: skip
    items = "".join(f"<div><span>{escape(k)}:</span> {escape(str(v))}</div>" for k, v in facts)
    return f"<h1>gpudoctor run: {escape(folder.name)}</h1><p class=sub>{escape(str(folder))}</p><div class=facts>{items}</div>"


def loss_section(report: dict[str, Any]) -> str:
    svg = loss_svg(report) if report.get("losses") else None
    if svg is None:
        return "<h2>Loss</h2><p class=note>No loss was recorded (the run has not finished a step).</p>"
    counts = f"{len(report['losses'])} training steps, {len(report.get('eval_losses') or [])} evaluations"
    return f"<h2>Loss</h2><p class=note>{escape(counts)}; loss over response tokens only.</p>{svg}"


def settings_section(report: dict[str, Any], folder: Path) -> str:
    """The settings that ran (report.json; run.yaml before the run reports) and the training options."""
    settings, training = report.get("settings"), report.get("training")
    if settings is None and (folder / "run.yaml").is_file():
        from gpudoctor.errors import BadInput
        from gpudoctor.plan.runconfig import read_run_config

        try:
            config = read_run_config(folder / "run.yaml")
            settings, training = dataclasses.asdict(config.settings), dataclasses.asdict(config.training)
        except BadInput:
            pass
    if not settings and not training:
        return "<h2>Settings</h2><p class=note>No settings recorded.</p>"

    def rows(values: dict[str, Any] | None) -> list[tuple[Any, ...]]:
        return [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in (values or {}).items()]

    return f"<h2>Settings</h2><div class=side>{table(rows(settings), ('setting', 'value'))}{table(rows(training), ('training option', 'value'))}</div>"


def data_section(report: dict[str, Any], folder: Path) -> str:
    """What the data was and how it became rows, and the notes train left."""
    record = read_json(folder / "run-data.json") or {}
    rows = [
        ("file", report.get("data") or record.get("data", "–")), ("size", f"{record['bytes']:,} bytes" if record.get("bytes") else "–"),
        ("sha256", record.get("sha256", "–")), ("records", report.get("records", "–")), ("training rows", report.get("train_rows", "–")),
        ("validation rows", report.get("eval_rows", "–")), ("packed", report.get("packed", "–")), ("truncated records", report.get("truncated", "–")),
        ("tokens trained on (whole run)", f"{report['tokens']:,}" if report.get("tokens") else "–"),
    ]  # fmt: skip
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in report.get("notes") or [])
    return "<h2>Data</h2>" + table(rows) + (f"<p>Notes from training:</p><ul>{notes}</ul>" if notes else "")


def stale(folder: Path) -> bool:
    """True when the adapter was saved after compare.json was written (a later run or --resume)."""
    try:
        return (folder / "adapter_model.safetensors").stat().st_mtime > (folder / "compare.json").stat().st_mtime
    except OSError:
        return False


def answers_section(comparison: dict[str, Any] | None, folder: Path) -> str:
    """compare.json's answers, base beside tuned, each under its prompt (the data's own reply folded below)."""
    if not comparison:
        return '<h2>Base vs tuned</h2><p class=note>No comparison yet: run <code>gpudoctor compare --adapter</code> on this folder.</p>'
    answers = comparison.get("answers") or []
    said = (
        f"{len(answers)} prompts from {comparison.get('prompts_from', '?')}; {comparison.get('decoding', '')}, seed {comparison.get('seed')}, "
        f"at most {comparison.get('max_new_tokens')} new tokens; {comparison.get('differ', 0)} of {len(answers)} answers differ"
    )
    cards = []
    for n, answer in enumerate(answers, start=1):
        same = "<p class=same>same answer with and without the adapter</p>" if answer.get("base") == answer.get("tuned") else ""
        reference = answer.get("reference")
        folded = f"<details><summary>the data's reply</summary><pre>{escape(reference)}</pre></details>" if reference else ""
        cards.append(
            f"<div class=answer><h3>{n}. {escape(str(answer.get('where', '')))}</h3><pre>{escape(str(answer.get('prompt', '')))}</pre>"
            f"<div class=pair><div><h4>base</h4><pre class=base>{escape(str(answer.get('base', '')))}</pre></div>"
            f"<div><h4>tuned (base + adapter)</h4><pre class=tuned>{escape(str(answer.get('tuned', '')))}</pre></div></div>{same}{folded}</div>"
        )
    notes = [*(comparison.get("notes") or []), *(["these answers are from an earlier adapter: run `gpudoctor compare` again"] if stale(folder) else [])]
    listed = "".join(f"<li>{escape(str(n))}</li>" for n in notes)
    return f"<h2 id=answers>Base vs tuned</h2><p class=note>{escape(said)}</p>" + (f"<ul>{listed}</ul>" if listed else "") + "".join(cards)


def render(folder: Path) -> str:
    """The page for the run folder `folder`, from what it holds now."""
    report = read_json(folder / "report.json") or {}
    comparison = read_json(folder / "compare.json")
    versions = ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())
    body = "".join([
        header_section(folder, report), loss_section(report), memory_section(report) if report else "",
        settings_section(report, folder), data_section(report, folder), answers_section(comparison, folder),
        f"<p class=note>{escape(versions)}</p>" if versions else "",
    ])  # fmt: skip
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">"
        f"<title>gpudoctor run: {escape(folder.name)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_report_html(folder: str | Path) -> Path:
    """Write <folder>/report.html (atomically) from the run folder's files; returns its path."""
    folder = Path(folder)
    return write_text(folder / REPORT_HTML, render(folder))

"""report.html: one self-contained page of a run folder.

Most tests build a run folder by hand (report.json, run-data.json, compare.json with hostile text) and
parse the page with html.parser: the loss SVG holds one point per recorded step, every text from the
run is escaped, nothing is loaded from elsewhere. The slow ones use the run that `train` and then
`compare` wrote (conftest.compared_run), and render it in headless Chromium when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gpudoctor.train.report_html import LOSS_IDS, REPORT_HTML, printable, size, write_report_html

HOSTILE = '<script>alert("x")</script> & <NAME> "quoted" </pre>'
RESOURCE_ATTRIBUTES = {"src", "href", "xlink:href", "action", "data", "poster", "srcset", "formaction", "background"}


class Page(HTMLParser):
    """The parts of a page the tests look at: every tag with its attributes, the text, the SVG groups' path data."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.paths: dict[str, list[str]] = {}
        self.uses: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        group = next((g for g in reversed(self.stack) if g in LOSS_IDS.values()), None)
        if group and tag == "path":
            self.paths.setdefault(group, []).append(attributes.get("d") or "")
        if group and tag == "use":
            self.uses[group] = self.uses.get(group, 0) + 1
        if tag == "g":
            self.stack.append(attributes.get("id") or "")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "g":
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag == "g" and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def points(path_data: str) -> int:
    """The vertices of an SVG path of straight segments (M x y L x y ...)."""
    return len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", path_data))


def external_references(page: Page, text: str) -> list[str]:
    """Anything the page would load from elsewhere: resource attributes not pointing inside it, CSS url(), @import, script."""
    found = []
    for tag, attributes in page.tags:
        if tag in ("script", "link", "iframe", "img", "object", "embed"):
            found.append(f"<{tag}>")
        for name, value in attributes.items():
            if name in RESOURCE_ATTRIBUTES and value and not value.startswith("#"):
                found.append(f"{tag} {name}={value}")
    found += re.findall(r"url\(\s*['\"]?(?!#)[^)]*\)", text) + re.findall(r"@import", text)
    return found


def synthetic_run(folder: Path, *, losses: int = 7, evals: int = 3) -> Path:
    """A run folder as train and compare leave it, without training: the numbers are made up, the shapes are real."""
    folder.mkdir(parents=True)
    settings = dict(
        method="qlora", quant="nf4", double_quant=True, compute_dtype="bf16", lora_r=16, lora_alpha=32, lora_dropout=0.0,
        lora_targets=["all-linear"], seq_len=512, micro_batch=2, grad_accum=8, grad_ckpt=True, optimizer="paged_adamw_8bit",
        attn="sdpa", packing=True, gpus=1, strategy="single", recipe="gpudoctor",
    )  # fmt: skip
    report = {
        "output": str(folder), "model": "mistral-7b", "data": f"/data/{HOSTILE}.json", "settings": settings,
        "training": {"epochs": 2, "lr": 2e-4, "val_size": 4, "seed": 7}, "device": "cuda", "status": "finished", "steps": losses,
        "start_step": 0, "records": 40, "train_rows": 18, "eval_rows": 2, "packed": True, "truncated": 0, "duration_s": 12.5,
        "tokens": 9000, "tokens_per_s": 720.0, "planned_peak_bytes": 7 * 2**30, "measured_peak_allocated_bytes": 5 * 2**30,
        "measured_peak_reserved_bytes": 6 * 2**30, "measured_peak_rss_bytes": None,
        "losses": [[s, 3.0 - 0.2 * s] for s in range(1, losses + 1)], "eval_losses": [[2 * s, 2.9 - 0.2 * s] for s in range(1, evals + 1)],
        "final_eval_loss": 2.3, "notes": [f"a note about {HOSTILE}"], "versions": {"torch": "2.13"},
    }  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    (folder / "run-data.json").write_text(json.dumps({"data": report["data"], "bytes": 1234, "sha256": "ab" * 32}), encoding="utf-8")
    answers = [
        {"where": "record 3", "prompt": f"why {HOSTILE}?", "reference": "the data's reply", "base": f"base says {HOSTILE}\x00\x7f\r", "tuned": "tuned says hi"},
        {"where": "record 9", "prompt": "same?", "reference": None, "base": "same", "tuned": "same"},
    ]
    comparison = {"adapter": str(folder), "prompts_from": "the run's validation split", "decoding": "greedy", "seed": 0, "max_new_tokens": 32, "differ": 1, "prompts": 2, "answers": answers, "notes": []}
    (folder / "compare.json").write_text(json.dumps(comparison), encoding="utf-8")
    return folder


def test_the_page_holds_every_loss_point_and_the_escaped_answers(tmp_path):
    folder = synthetic_run(tmp_path / "run", losses=7, evals=3)
    text = write_report_html(folder).read_text(encoding="utf-8")
    page = parse(text)
    assert [points(d) for d in page.paths[LOSS_IDS["train"]]] == [7]
    assert page.uses[LOSS_IDS["eval"]] == 3  # a marker per evaluation
    assert "<script" not in text and HOSTILE not in text  # escaped, never markup
    shown = "".join(page.text)
    assert f"base says {HOSTILE}\ufffd\ufffd\ufffd" in shown  # a stray control byte shows as U+FFFD
    assert "tuned says hi" in shown and f"why {HOSTILE}?" in shown
    assert f"a note about {HOSTILE}" in shown and HOSTILE in shown  # the data path and the notes, as text
    assert "same answer with and without the adapter" in shown  # only the second prompt's answers are equal
    assert shown.count("same answer with and without the adapter") == 1
    assert external_references(page, text) == []
    assert "http" not in text  # not even the SVG's namespace URLs


def test_memory_shows_each_planned_component_and_each_measured_figure_against_its_prediction(tmp_path):
    from gpudoctor.plan.corrections import predicted_figures
    from gpudoctor.plan.memory import estimate
    from gpudoctor.plan.types import Hardware
    from gpudoctor.profiles import load_model
    from gpudoctor.settings import Settings

    folder = synthetic_run(tmp_path / "run")
    report = json.loads((folder / "report.json").read_text())
    planned = estimate(load_model("mistral-7b"), Settings(**report["settings"]), Hardware(device="cuda", name="", budget_bytes=0))
    predicted = predicted_figures(planned, "cuda")
    shown = "".join(parse(write_report_html(folder).read_text(encoding="utf-8")).text)
    for component, value in planned.breakdown_bytes.items():
        assert f"{component.replace('_', ' ')}{size(value)}" in shown
    assert f"torch reserved{predicted['reserved'] / 2**30:.2f} GiB6.00 GiB" in shown
    assert f"torch allocated{predicted['allocated'] / 2**30:.2f} GiB5.00 GiB" in shown
    assert size(5 * 2**30) == "5.00 GiB" and size(300 * 2**20) == "300.0 MiB"
    assert "process RSS" not in shown  # not measured on this run


def test_a_run_with_no_report_yet_gets_a_page_that_says_so(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    shown = "".join(parse(write_report_html(folder).read_text(encoding="utf-8")).text)
    assert "no report.json yet" in shown and "No loss was recorded" in shown and "No comparison yet" in shown


@pytest.mark.parametrize("text", ["[1, 2, 3]", "42", '"a string"', "null", "{not json"])
def test_run_files_that_are_not_json_objects_read_as_missing(tmp_path, text):
    """A report.json, run-data.json or compare.json edited into a list or a number is shown as not there yet."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("report.json", "run-data.json", "compare.json"):
        (folder / name).write_text(text, encoding="utf-8")
    shown = "".join(parse(write_report_html(folder).read_text(encoding="utf-8")).text)
    assert "no report.json yet" in shown and "No comparison yet" in shown


def test_answers_older_than_the_adapter_are_marked(tmp_path):
    import os

    folder = synthetic_run(tmp_path / "run")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    os.utime(folder / "compare.json", (1_000_000, 1_000_000))
    shown = "".join(parse(write_report_html(folder).read_text(encoding="utf-8")).text)
    assert "from an earlier adapter" in shown


# The real run: train, then compare (conftest.compared_run).


@pytest.mark.slow
def test_train_writes_the_page_and_compare_rewrites_it_with_the_answers(compared_run):
    folder, result, trained_page = compared_run
    report = json.loads((folder / "report.json").read_text())
    before = parse(trained_page)
    assert [points(d) for d in before.paths[LOSS_IDS["train"]]] == [len(report["losses"])]
    assert "No comparison yet" in "".join(before.text)
    text = (folder / REPORT_HTML).read_text(encoding="utf-8")
    page = parse(text)
    shown = "".join(page.text)
    for answer in result["answers"]:
        assert printable(answer["base"]) in shown and printable(answer["tuned"]) in shown
    assert external_references(page, text) == []


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
)  # fmt: skip


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM Chromium builds from `page` (file://), after it has run."""
    browser = chromium()
    assert browser
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_chromium_renders_the_loss_plot_and_the_answers(compared_run, tmp_path):
    folder, result, _ = compared_run
    report = json.loads((folder / "report.json").read_text())
    dom = parse(rendered_dom(folder / REPORT_HTML, tmp_path / "profile"))
    assert [points(d) for d in dom.paths[LOSS_IDS["train"]]] == [len(report["losses"])]
    assert any(tag == "svg" for tag, _ in dom.tags)
    shown = "".join(dom.text)
    tuned = [(printable(a["base"]), printable(a["tuned"])) for a in result["answers"]]
    assert all(base in shown and answer in shown for base, answer in tuned)
    assert any(base != answer for base, answer in tuned)
    classes = [attributes.get("class") for tag, attributes in dom.tags if tag == "pre"]
    assert classes.count("base") == classes.count("tuned") == len(result["answers"])

"""report.html in a real browser: `gpudoctor demo` into a temporary folder, then headless Chromium renders the page.

Runs the whole demo as a user would (check → plan → train the tiny demo model → compare → chat, in its
own process), renders <run>/report.html with Debian's chromium (--dump-dom for the DOM it builds,
--screenshot for a PNG of the page), and prints what it measured and found: the demo's wall time,
the loss points drawn against report.json's, the answer pairs shown and how many differ, whether the
page asked for anything outside itself. Usage:
    .venv/bin/python bench/report_browser.py [--max-steps N] [--png report.png] [--keep | --output DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
)  # fmt: skip


class Dom(HTMLParser):
    """The loss curve's path, the answer blocks and every resource attribute of the rendered DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.groups: list[str] = []
        self.train_path = ""
        self.eval_markers = 0
        self.pre: dict[str, list[str]] = {"base": [], "tuned": []}
        self.current: str | None = None
        self.outside: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.svgs += tag == "svg"
        if tag == "g":
            self.groups.append(a.get("id") or "")
        if tag == "path" and "train-loss" in self.groups:
            self.train_path = a.get("d") or ""
        if tag == "use" and "eval-loss" in self.groups:
            self.eval_markers += 1
        if tag == "pre" and a.get("class") in self.pre:
            self.current = a["class"]
            self.pre[self.current].append("")
        for name in ("src", "href", "xlink:href"):
            if a.get(name) and not a[name].startswith("#"):
                self.outside.append(f"{tag} {name}={a[name]}")

    def handle_endtag(self, tag):
        if tag == "g" and self.groups:
            self.groups.pop()
        if tag == "pre":
            self.current = None

    def handle_data(self, data):
        if self.current:
            self.pre[self.current][-1] += data


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        sys.exit("Chromium is not installed: apt-get install chromium")
    return found


def browse(page: Path, *extra: str) -> tuple[str, float]:
    """Chromium's stdout for `page` with `extra` flags, and its wall seconds (a fresh profile each time)."""
    with tempfile.TemporaryDirectory(prefix="gpudoctor-chromium-") as profile:
        started = time.perf_counter()
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            sys.exit(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout, time.perf_counter() - started


def run_demo(folder: Path, max_steps: int | None) -> float:
    """`gpudoctor demo --output folder` in its own process; its wall seconds."""
    command = [sys.executable, "-m", "gpudoctor", "demo", "--output", str(folder), *(["--max-steps", str(max_steps)] if max_steps else [])]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"gpudoctor demo failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=None, help="Stop the demo's training after N steps (default: the whole demo).")
    parser.add_argument("--png", type=Path, default=Path("report.png"), help="Where to save the screenshot.")
    parser.add_argument("--keep", action="store_true", help="Keep the demo's run folder (its path is printed).")
    parser.add_argument("--output", type=Path, default=None, help="The demo's run folder (kept; a finished demo run there is reused, as `gpudoctor demo` does).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpudoctor-report-"))
    folder = args.output or work / "demo"
    try:
        demo_seconds = run_demo(folder, args.max_steps)
        page = folder / "report.html"
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        comparison = json.loads((folder / "compare.json").read_text(encoding="utf-8"))
        dom_text, dom_seconds = browse(page, "--dump-dom")
        dom = Dom()
        dom.feed(dom_text)
        _, shot_seconds = browse(page, f"--screenshot={args.png.resolve()}", "--window-size=1280,4200")
        report_answers(folder, report, comparison, dom, page)
        print(f"demo (check, plan, {report['steps']} training steps unless reused, compare, chat): {demo_seconds:.1f} s wall")
        print(f"chromium: DOM in {dom_seconds:.1f} s, screenshot in {shot_seconds:.1f} s: {args.png.resolve()} ({args.png.stat().st_size:,} bytes)")
    finally:
        if args.keep:
            print(f"run folder kept: {folder}")
        if not (args.keep and args.output is None):
            shutil.rmtree(work, ignore_errors=True)


def report_answers(folder: Path, report: dict, comparison: dict, dom: Dom, page: Path) -> None:
    """Print what the rendered page shows against what the run folder holds (its text as the page shows text)."""
    from gpudoctor.train.report_html import printable

    drawn = len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", dom.train_path))
    answers = comparison["answers"]
    shown = list(zip(dom.pre["base"], dom.pre["tuned"]))
    expected = [(printable(a["base"]), printable(a["tuned"])) for a in answers]
    print(f"report.html: {page.stat().st_size:,} bytes, {dom.svgs} inline SVG, resources from outside the page: {len(dom.outside)}")
    print(f"loss plot: {drawn} training points drawn of {len(report['losses'])} steps in report.json; {dom.eval_markers} eval markers of {len(report['eval_losses'])}")
    print(f"answers: {len(shown)} base/tuned pairs rendered, {len(expected)} in compare.json, rendered text equal: {shown == expected}")
    print(f"base and tuned differ on {sum(b != t for b, t in shown)} of {len(shown)} prompts")
    for (base, tuned), answer in list(zip(shown, answers))[:2]:
        print(f"  {answer['where']}: {answer['prompt'][:70]!r}\n    base : {base[:90]!r}\n    tuned: {tuned[:90]!r}")


if __name__ == "__main__":
    main()

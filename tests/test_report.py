"""The ``choose`` report: self-contained HTML checked in headless Chromium, and Markdown."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmpick.report import render_html, render_markdown

LLMPICK = str(Path(sys.executable).with_name("llmpick"))
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = (
    "verdict", "constraints", "shortlist", "quality", "samples", "failures", "speed", "memory",
    "cost",
)  # fmt: skip
#: where the browser test leaves its screenshot (a person looks at it)
SCREENSHOT_DIR = Path(os.environ.get("LLMPICK_SCREENSHOT_DIR", "/tmp/llmpick-screenshots"))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A limited default run (6 prompts, the bundled models) sharing the session's store."""
    work = tmp_path_factory.mktemp("report")
    db = tmp_path_factory.getbasetemp() / "choose-shared.db"
    result = subprocess.run(
        [LLMPICK, "choose", "--limit", "6", "--db", str(db), "--out", "out"],
        capture_output=True, text=True, cwd=work, timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return work / "out"


@pytest.mark.slow
def test_html_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in html
    # nothing is loaded from elsewhere: no src/href to a network location
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", html)
    assert html.count("Plotly.newPlot") >= 4
    assert "measured" in html and "estimated" in html


@pytest.mark.slow
def test_markdown_and_json_have_every_section(report_dir: Path) -> None:
    doc = json.loads((report_dir / "result.json").read_text(encoding="utf-8"))
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    for title in ("## Verdict", "## Constraints", "## Shortlist", "## Quality", "## Side-by-side",
                  "## Failures", "## Speed and memory", "## Cost"):  # fmt: skip
        assert title in md
    assert render_markdown(doc) == md  # the report re-renders from result.json alone
    assert render_html(doc).count('id="verdict"') == 1


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_in_headless_chromium_makes_no_request(report_dir: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    page_url = (report_dir / "report.html").resolve().as_uri()
    requests: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_url, wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4"
            )
            for section in SECTIONS:
                assert page.locator(f"section#{section}").count() == 1, section
                assert page.locator(f"section#{section} h2").inner_text().strip()
            verdict = page.locator("section#verdict").inner_text()
            assert "smollm2-135m-instruct" in verdict
            assert page.locator(".js-plotly-plot").count() >= 4
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOT_DIR / "choose-report.png"
            page.screenshot(path=str(shot), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 1400})
            page.screenshot(path=str(SCREENSHOT_DIR / "choose-report-top.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
    assert errors == []
    assert requests and all(url.startswith("file://") for url in requests), requests
    shutil.copy(report_dir / "report.html", SCREENSHOT_DIR / "choose-report.html")


def test_report_when_no_candidate_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate fails to load: the run still ends with a full report saying so."""
    from llmpick.choose import ChooseOptions, choose
    from llmpick.context import Context
    from llmpick.report import write_report

    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(2048))
    result = choose(
        Context(),
        ChooseOptions(models=[f"llamacpp:{corrupt}"], limit=2, db_path=tmp_path / "n.db"),
    )
    assert result.winner is None and result.verdict.status == "none"
    (failed,) = [c for c in result.candidates if c.status == "failed"]
    assert failed.error and "corrupt.gguf" in failed.name
    paths = write_report(result, tmp_path / "out")
    html = paths["html"].read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert "corrupt.gguf" in paths["markdown"].read_text(encoding="utf-8")
    assert json.loads(paths["json"].read_text())["winner"] is None

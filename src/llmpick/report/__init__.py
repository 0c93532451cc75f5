"""Reports of a ``choose`` run: self-contained HTML, Markdown and JSON.

    from llmpick.report import write_report
    paths = write_report(result, Path("llmpick-report"))
    paths["html"], paths["markdown"], paths["json"]

``report.html`` embeds its styles, its data and plotly.js, so it opens offline
and makes no network request; every figure is labelled measured or estimated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from llmpick.errors import ConfigError
from llmpick.report.html import render_html
from llmpick.report.markdown import render_markdown

if TYPE_CHECKING:
    from llmpick.choose import ChooseResult

__all__ = ["render_html", "render_markdown", "write_report"]


def write_report(result: ChooseResult, out_dir: Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``result.json`` into ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the report directory {out_dir}: {exc.strerror}",
            "choose another with --out DIR",
        ) from exc
    document = result.to_json()
    paths = {
        "html": out_dir / "report.html",
        "markdown": out_dir / "report.md",
        "json": out_dir / "result.json",
    }
    paths["json"].write_text(
        json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(render_markdown(document), encoding="utf-8")
    paths["html"].write_text(render_html(document), encoding="utf-8")
    return paths

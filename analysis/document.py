"""A report as a list of blocks (headings, text, tables, figures), written as markdown and HTML.

Both files come from the same blocks, so they never disagree; figures are saved once as PNG
next to them, which the markdown links and the HTML inlines (base64 data URIs: report.html is
one self-contained file to mail or archive). Files are written to a temporary name and renamed, so a report is never
half-written.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from softhard.data.files import write_atomically

FORMATS = ("md", "html", "both")
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")


@dataclass
class Document:
    title: str
    out_dir: Path
    blocks: list = field(default_factory=list)  # ("heading", level, text) | ("text", str) | ("table", df) | ("image", name, caption)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, table: pd.DataFrame) -> None:
        """A table; numbers are shown with 3 significant digits (gaps and temperatures span decades)."""
        self.blocks.append(("table", table))

    def figure(self, figure, name: str, caption: str = "") -> None:
        """Save a matplotlib figure as <out_dir>/<name>.png (closing it) and add it."""
        import matplotlib.pyplot as plt

        file = self.out_dir / f"{_slug(name)}.png"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(file, dpi=100)  # the figures lay themselves out (constrained layout)
        plt.close(figure)
        self.blocks.append(("image", file.name, caption))

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif kind == "text":
                lines += [block[1], ""]
            elif kind == "table":
                lines += [block[1].to_markdown(index=False, floatfmt=".3g") if not block[1].empty else "(no rows)", ""]
            else:
                lines += [f"![{block[2]}]({block[1]})", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "text":
                parts.append(f"<p>{_inline_html(block[1])}</p>")
            elif kind == "table":
                parts.append(block[1].to_html(index=False, border=0, float_format="{:.3g}".format) if not block[1].empty else "<p>(no rows)</p>")
            else:
                data = base64.b64encode((self.out_dir / block[1]).read_bytes()).decode("ascii")
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block[1])}'>"
                             f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, fmt: str = "both") -> list[Path]:
        """report.md and/or report.html in out_dir; returns the files written."""
        if fmt not in FORMATS:
            raise ValueError(f"report format: unknown value {fmt!r}; expected one of {FORMATS}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, render in (("md", self.markdown), ("html", self.html)):
            if fmt in (suffix, "both"):
                text = render()
                written.append(write_atomically(self.out_dir / f"report.{suffix}", lambda file: file.write_text(text)))
        return written


def _inline_html(text: str) -> str:
    """Markdown's `code` and line breaks in a text block, everything else escaped."""
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped).replace("\n", "<br>")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


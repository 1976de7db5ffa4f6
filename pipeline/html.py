"""Self-contained HTML pages: inline CSS, images embedded as data URIs, no network.

Each page carries a small check script: when the page has loaded it records on ``<body>``
whether every image decoded (``data-images="ok"``) and counts script errors
(``data-errors``), so a headless browser test can read both from the DOM.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; } .warn { color: #a40; }
.hits { display: flex; flex-wrap: wrap; gap: 1em; } .hit { width: 200px; font-size: 0.85em; }
.hit img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; }
img.plot { max-width: 100%; }
"""

CHECK_SCRIPT = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; document.body.dataset.errors = window.__errors; }, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.images = ok ? 'ok' : 'broken';
  document.body.dataset.imageCount = images.length;
  document.body.dataset.errors = window.__errors;
});
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def array_png(rgb: np.ndarray) -> bytes:
    """An RGB uint8 array as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def image(png: bytes, alt: str, css: str = "plot") -> str:
    return f'<img class="{css}" alt="{escape(alt)}" src="{png_data_uri(png)}">'


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table; floats are shown with one decimal."""

    def cell(v: object) -> str:
        return escape(f"{v:.1f}" if isinstance(v, float) else v)

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: Iterable[str]) -> str:
    """A whole HTML document."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style><script>{CHECK_SCRIPT}</script></head>"
        f"<body><h1>{escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )

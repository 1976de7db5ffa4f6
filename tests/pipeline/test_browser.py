"""The report and the search page open in headless Chromium: every image loads, no script error."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from teachcache.pipeline.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _require_chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make browser` installs Debian's package")
        pytest.skip("chromium is not installed (make browser)")


def body_state(path) -> dict:
    """The page's <body> data attributes after load, as headless Chromium renders it."""
    _require_chromium()
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", path.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = re.search(r"<body([^>]*)>", out)
    assert body, out[:500]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.sources.append(attrs[key])


def _sources(path) -> list[str]:
    parser = _Sources()
    parser.feed(path.read_text())
    return parser.sources


def test_the_check_catches_a_broken_image_and_a_script_error(tmp_path):
    from teachcache.pipeline.html import page

    broken = tmp_path / "broken.html"
    broken.write_text(page("x", ['<img src="data:image/png;base64,AAAA" alt="bad">', "<script>notDefined()</script>"]))
    state = body_state(broken)
    assert state["images"] == "broken" and int(state["errors"]) >= 1


def test_report_and_search_pages_load_whole_in_chromium(trained_run, cli_config, tmp_path):
    run_dir = trained_run
    runner = CliRunner()
    ablation = runner.invoke(main, ["ablate", "--quiet", "--config", str(cli_config), "--set", "ablate.seeds=[0]"])
    assert ablation.exit_code == 0, ablation.output
    report = runner.invoke(main, ["report", str(run_dir)])
    assert report.exit_code == 0 and "report.html" in report.output, report.output
    search_page = tmp_path / "search.html"
    search = runner.invoke(main, ["search", "--run", str(run_dir), "a small red square", "-k", "4", "--html", str(search_page)])
    assert search.exit_code == 0, search.output
    report_page = run_dir / "report.html"
    text = report_page.read_text()
    for heading in ("Retrieval", "Training", "Teachers (t2v)", "Ablation", "Store"):
        assert f"<h2>{heading}" in text, heading
    assert "t2v" in text and "v2t" in text and "relevance/dual" in text
    for page_path, images in ((report_page, 2), (search_page, 4)):  # report: curves + ablation chart; search: 4 keyframes
        assert all(s.startswith("data:image/png;base64,") for s in _sources(page_path))  # self-contained
        state = body_state(page_path)
        assert state == {"images": "ok", "image-count": str(images), "errors": "0"}, page_path

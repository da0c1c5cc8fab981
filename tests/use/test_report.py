"""The HTML report: self-contained, every figure embedded and decodable."""

import base64
import re

import pytest
from helpers import browser_check

from pyrovae.cli import main
from pyrovae.use import plots
from pyrovae.use.report import render, write_report


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_report_is_self_contained(run_dir):
    assert main(["evaluate", str(run_dir), "--num-samples", "5"]) == 0
    page = write_report(run_dir).read_text()
    images = _images(page)
    assert len(images) == page.count("<img") == 8  # with the log p(x) histogram, the units
    assert all(img[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    for text in ("test_nll", "training curves", "latent space", "z_dim"):
        assert text in page


def test_render_escapes_text():
    page = render("<run>", {"train": {"note": "<b>x</b>"}}, {"a & b": 1.0}, {})
    assert "<run>" not in page and "&lt;run&gt;" in page and "&lt;b&gt;" in page


@pytest.mark.skipif(browser_check.chromium() is None, reason="Chromium is not installed")
def test_report_opens_in_headless_chromium_with_every_image(run_dir, tmp_path):
    page = write_report(run_dir)
    images, shown = browser_check.check(page)
    assert images == shown == 6
    # and the check can fail: a broken image is seen as not shown
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    assert browser_check.check(broken) == (6, 5)


def test_figures_for_the_report(run_dir):
    import json

    history = json.loads((run_dir / "history.json").read_text())
    fig = plots.training_curves(history)
    assert len(fig.axes) == 3
    assert plots.log_px_histogram([-100.0, -90.0, -95.0]).axes

"""Open a report.html in headless Chromium and check that every image loaded.

    python tests/browser_check.py runs/demo/report.html

A copy of the report gets a script that, once the page has loaded, counts the images
whose ``naturalWidth`` is not 0; Chromium prints the resulting page (``--dump-dom``)
and this script reads the count back. Exit status 0 when every image showed. Needs
Chromium (Debian: ``apt-get install chromium``); ``tests/test_report.py`` runs it when
Chromium is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const shown = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  const out = document.createElement("pre");
  out.id = "pyrovae-image-check";
  out.textContent = `images=${images.length} shown=${shown}`;
  document.body.appendChild(out);
});
</script>"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--dump-dom",
]


def chromium() -> str | None:
    """The Chromium executable, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def check(report: Path) -> tuple[int, int]:
    """(images, images shown) of ``report`` as headless Chromium renders it."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
        profile = Path(tmp) / "profile"
        proc = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    found = re.search(r"images=(\d+) shown=(\d+)", proc.stdout)
    if not found:
        raise RuntimeError(f"Chromium printed no result: {proc.stderr[-500:]}")
    return int(found.group(1)), int(found.group(2))


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    images, shown = check(Path(sys.argv[1]))
    print(f"{sys.argv[1]}: {shown} of {images} images shown in headless Chromium")
    return 0 if images and shown == images else 1


if __name__ == "__main__":
    sys.exit(main())

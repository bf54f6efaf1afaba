"""A data set's index.html in headless Chromium: every image on it loads, from the data set alone.

Chromium (Debian's chromium package; tests/install_chromium.sh installs it and `make test`
calls that) opens a copy of index.html with a small script added that, once the page has
loaded, writes each image's state and every URL the page fetched into the DOM; --dump-dom
prints the DOM and the test reads it back. Host names resolve nowhere, so an external asset
could not load even if one slipped in. In CI (the CI variable set) a missing browser fails the
test instead of skipping it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_export import record_synthetic_model, write_png

from db.session import open_database
from gen.export import export_dataset

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const result = document.createElement("pre");
  result.id = "page-check";
  result.textContent = JSON.stringify({
    images: Array.from(document.images, (image) => ({
      src: image.getAttribute("src"), complete: image.complete, width: image.naturalWidth,
    })),
    resources: performance.getEntriesByType("resource").map((entry) => entry.name),
  });
  document.body.appendChild(result);
});
</script>
"""


def find_chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    reason = "Chromium is not installed (run tests/install_chromium.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def test_index_html_shows_every_image(tmp_path: Path) -> None:
    chromium = find_chromium()
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    # A class name that needs escaping in a URL and in HTML.
    classes = ["cyt_mast", "cyt nep & fib's", "cyt_kist_mast", "cyt_nep_mast"]
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 40, classes)
    report = tmp_path / "report"
    report.mkdir()
    # The report measured the checkpoint the images come from (record_synthetic_model's).
    (report / "report.json").write_text('{"checkpoint": "/runs/demo/checkpoint-0000200.pt"}')
    for name in ("fid per class", "histograms"):
        write_png(report / f"{name}.png", np.random.default_rng(3), 48)
    out = export_dataset(engine, gan_id, tmp_path / "data set", report_dir=report).out
    engine.dispose()

    page = (out / "index.html").read_text(encoding="utf-8")
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert references, "the page references its images"
    for reference in references:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", reference, re.IGNORECASE), f"external: {reference}"
    assert "url(" not in page and "@import" not in page

    check = out / "_page_check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # tests run as root in containers
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        check.as_uri(),
    ]
    loaded = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="page-check">(.*?)</pre>', loaded.stdout, re.DOTALL)
    assert found, f"the page did not finish loading: {loaded.stderr[-2000:]}"
    state = json.loads(html.unescape(found.group(1)))

    images = state["images"]
    assert len(images) == len(classes) + 2  # a grid per class and the two plots
    broken = [image["src"] for image in images if not image["complete"] or image["width"] == 0]
    assert broken == [], f"images that did not load: {broken}"
    assert {image["width"] for image in images[: len(classes)]} == {8 * 66 + 2}
    assert all(url.startswith(out.as_uri() + "/") for url in state["resources"]), state["resources"]

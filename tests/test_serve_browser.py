"""gen serve end to end in a real headless browser (Debian's chromium, driven by Playwright for
Python through its executable path; never `playwright install`).

Register a data set, queue a tiny training job from the page, let `gen worker --once` run it,
see its grid and curve appear, queue sampling and run it, browse the images filtered by class,
open one image's panel, then delete the model after the confirmation. Each page is
photographed on the way: into $GEN_SERVE_SCREENSHOTS when set (`GEN_SERVE_SCREENSHOTS=docs`
refreshes the README's screenshots), else into the test's temporary folder.

As in test_export_browser, a missing chromium skips the test, except in CI where it fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from serve_server import GEN, child_env, gen_serve
from test_export_browser import find_chromium

from gen.phantoms import PHANTOM_CLASSES, write_phantoms

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORKER_S = 600  # a limit that only a broken queue reaches


def run_worker_once(url: str, folder: Path) -> None:
    done = subprocess.run(
        [*GEN, "worker", "--once", "--db", url, "--log-dir", "logs", "--device", "cpu"],
        cwd=folder,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=WORKER_S,
        check=False,
    )
    assert done.returncode == 0 and "worker ran 1 job" in done.stdout, done.stdout + done.stderr


def test_a_model_from_data_set_to_deletion_in_the_browser(tmp_path: Path) -> None:
    chromium = find_chromium()
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("GEN_SERVE_SCREENSHOTS") or tmp_path / "screenshots").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    work = tmp_path / "work"
    write_phantoms(work / "phantoms", per_class=4)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    external: list[str] = []

    with gen_serve(url, work) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1200, "height": 900},
        )
        page = browser.new_page()
        page.on("request", lambda r: None if r.url.startswith(address) else external.append(r.url))

        def shoot(name: str) -> None:
            page.screenshot(path=str(shots / f"serve-{name}.png"), full_page=True)

        # Register the data set.
        page.goto(address + "/datasets")
        page.fill("input[name=name]", "phantoms")
        page.fill("input[name=folder]", "phantoms")
        page.get_by_role("button", name="Register").click()
        expect(page.locator("h1")).to_have_text("Data set phantoms")
        thumbnails = page.locator(".thumbnails img")
        expect(thumbnails).to_have_count(4 * len(PHANTOM_CLASSES))
        page.wait_for_load_state("networkidle")
        assert all(t.evaluate("i => i.complete && i.naturalWidth > 0") for t in thumbnails.all())
        shoot("dataset")
        page.goto(address + "/datasets")
        shoot("datasets")

        # Queue a tiny training run, let a worker run it.
        page.goto(address + "/generators")
        page.fill("input[name=run_name]", "browser")
        page.fill("input[name=iterations]", "2")
        page.fill("input[name=checkpoint_every]", "1")
        page.fill("input[name=batch_size]", "4")
        page.get_by_role("button", name="Queue training").click()
        expect(page.locator("#job-status")).to_have_text("queued")
        job_url = page.url
        page.goto(address + "/jobs")  # not the job's page: its script reloads itself when the job ends
        run_worker_once(url, work)
        page.goto(job_url)
        expect(page.locator("#job-status")).to_have_text("done")
        shoot("job")
        page.click("#job-model")

        # Its grid and curve.
        expect(page.locator("#grid-image")).to_be_visible()
        assert page.locator("#grid-image").evaluate("i => i.complete && i.naturalWidth > 0")
        expect(page.locator("#curves svg polyline").first).to_be_attached()
        slider = page.locator("#grid-slider")
        slider.fill("0")
        expect(page.locator("#grid-iteration")).to_have_text("1")
        shoot("generator")
        model_url = page.url

        # Sample it (a job), then browse its images by class and open one.
        page.fill("#sample-form input[name=count]", "3")
        page.get_by_role("button", name="Queue sampling").click()
        expect(page.locator("#job-status")).to_have_text("queued")
        page.goto(address + "/jobs")
        run_worker_once(url, work)
        page.goto(model_url)
        page.click("#browse-images")
        chosen = PHANTOM_CLASSES[1]
        page.select_option("select[name=class_name]", chosen)
        page.get_by_role("button", name="Filter").click()
        images = page.locator("a.image-link img")
        expect(images).to_have_count(3)
        assert {image.get_attribute("data-class") for image in images.all()} == {chosen}
        page.locator("a.image-link").first.click()
        panel = page.locator("#panel #image-panel")
        expect(panel).to_be_visible()
        expect(panel).to_contain_text(chosen)
        expect(panel).to_contain_text("MD5")
        shoot("images")
        page.click("#panel [data-close]")

        for name, path in [
            ("home", "/"),
            ("generators", "/generators"),
            ("classifiers", "/classifiers"),
            ("searches", "/searches"),
            ("jobs", "/jobs"),
            ("compare", "/compare"),
        ]:
            page.goto(address + path)
            shoot(name)

        # Delete the model after the confirmation.
        page.goto(model_url)
        page.click("#delete-model")
        expect(page.locator("ul.affected")).to_contain_text("images")
        shoot("delete")
        page.click("#confirm-delete")
        expect(page.locator("h1")).to_have_text("Generators")
        expect(page.locator("text=No model yet.")).to_be_visible()
        browser.close()

    assert external == [], f"the pages fetched from elsewhere: {external}"
    assert sorted((work / "samples").rglob("*.png")), "deleting a model keeps its image files"

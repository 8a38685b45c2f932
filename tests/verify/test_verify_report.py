"""The HTML report works offline: no external references, and plots render in Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from verify_world import World

from stratocast.verify import VerifyConfig, verify
from stratocast.verify.run import VerifyResult

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)


@pytest.fixture(scope="module")
def report(world: World, tmp_path_factory: pytest.TempPathFactory) -> VerifyResult:
    return verify(
        {"model": world.forecast},
        world.obs,
        world.stations["station_id"].tolist(),
        world.clim_obs,
        VerifyConfig(),
        tmp_path_factory.mktemp("report"),
    )


def test_report_has_no_external_references(report: VerifyResult) -> None:
    html = report.report_path.read_text()
    assert not re.search(r"https?://", html), "the report must work offline"
    assert not re.search(r"<(script|link)\b", html)
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    # the report states the station set, the time set and the mask rule used for all systems
    assert "Station set:" in html and "Time set:" in html and "Mask rule" in html
    assert "lead times 0, 6, 12, 18, 24 h" in html


def test_report_renders_in_headless_chromium(report: VerifyResult, tmp_path: Path) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from PIL import Image

    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            # No network: any request other than the file itself or inline data fails it.
            page.route(
                re.compile(r"^(?!file:|data:).*"), lambda route: route.abort("blockedbyclient")
            )
            page.goto(report.report_path.resolve().as_uri())
            widths = page.eval_on_selector_all(
                "img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"
            )
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(widths) == len(report.plot_paths) and all(w > 0 for w in widths)
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 900  # the full page is longer than one screen
    assert pixels.std() > 10.0  # not blank: text, tables and plots give contrast
    # the plots are coloured lines/points: the screenshot has many non-grey pixels
    with Image.open(shot) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    colourful = (np.ptp(rgb, axis=2) > 60).sum()
    assert colourful > 2000

"""The sampling page (web/) in a real browser: Debian's Chromium, driven by Selenium.

The page runs the shipped Frey Face decoder (saved_models/frey_face-latent2) with
LiteRT.js; every number it computes is checked against ai_edge_litert on the same
file and noise. Where Chromium, ChromeDriver, selenium or web/node_modules are
missing the browser tests skip, except under CI (CI set), where .ci/run installs
them and a skip would hide a failure. The screenshot goes to $TFVAE_WEB_SCREENSHOT
(default build/web_page.png) for a person to look at.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from scipy import stats

from tfvae import web_page

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "saved_models" / "frey_face-latent2" / "export"
MODEL = "decoder_float32.tflite"
SCREENSHOT = Path(os.environ.get("TFVAE_WEB_SCREENSHOT", REPO / "build" / "web_page.png"))


def _missing() -> str | None:
    if web_page.chromium_paths() is None:
        return "no chromium/chromedriver (apt-get install chromium chromium-driver)"
    if not (web_page.PAGE_SOURCE / "node_modules" / "@litertjs" / "core").is_dir():
        return "no web/node_modules (cd web && npm ci)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (pip install -e '.[test]')"
    return None


def _need_browser():
    reason = _missing()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A copy of the shipped export with the page written beside it."""
    folder = tmp_path_factory.mktemp("export")
    for name in (MODEL, "export.json"):
        shutil.copy2(SHIPPED / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def browser(export_dir):
    """The page, loaded and drawn, in headless Chromium."""
    _need_browser()
    web_page.write_page(export_dir)
    with web_page.serve(export_dir) as url, web_page.chromium() as driver:
        web_page.open_page(driver, f"{url}/web/index.html")
        yield driver


def _litert(signature: str):
    return Interpreter(model_path=str(SHIPPED / MODEL)).get_signature_runner(signature)


def _grey(images: np.ndarray) -> np.ndarray:
    """What the page draws for E[x|z] in [0, 1]: round(255 x)."""
    return np.round(255 * np.clip(images, 0, 1))


@pytest.mark.slow
def test_sample_from_noise_in_the_browser_matches_litert(browser):
    rng = np.random.default_rng(7)
    eps = rng.standard_normal((6, 2), dtype=np.float32)
    pixels = rng.standard_normal((6, 28, 20), dtype=np.float32)
    inputs = {"eps": eps.ravel().tolist(), "normal_noise": pixels.ravel().tolist()}
    got = web_page.call(browser, "page.run('sample_from_noise', args[0], 6)", inputs)
    want = _litert("sample_from_noise")(eps=eps, normal_noise=pixels)
    for name in ("mean", "x"):
        diff = np.abs(np.reshape(got[name], (6, 28, 20)) - want[name])
        assert diff.max() < 1e-5, name
    # The decoded means are faces, not a constant: pixels vary within and across images.
    assert np.std(want["mean"]) > 0.05


@pytest.mark.slow
def test_the_grid_shows_the_means_of_its_seeded_noise(browser):
    noise = web_page.call(browser, "page.noise(64, 0)")
    want = _litert("sample_from_noise")(
        eps=np.reshape(noise["eps"], (64, 2)).astype(np.float32),
        normal_noise=np.reshape(noise["normal_noise"], (64, 28, 20)).astype(np.float32),
    )["mean"]
    grey = np.reshape(web_page.call(browser, "page.canvasGrey('samples')"), (8 * 29 + 1, -1))
    tiles = [
        grey[1 + r * 29 : 29 * (r + 1), 1 + c * 21 : 21 * (c + 1)]
        for r in range(8)
        for c in range(8)
    ]
    # Off by one grey level at most: a mean within 1e-6 of a rounding boundary.
    assert np.abs(np.stack(tiles) - _grey(want)).max() <= 1


@pytest.mark.slow
def test_dragging_over_the_latent_plane_decodes_the_point(browser):
    from selenium.webdriver.common.action_chains import ActionChains

    plane = browser.find_element("id", "plane")
    # From the centre, 30% of the width right and 20% of the height up.
    ActionChains(browser).move_to_element(plane).click_and_hold().move_by_offset(
        int(0.3 * plane.size["width"]), -int(0.2 * plane.size["height"])
    ).release().perform()
    u = np.array(web_page.call(browser, "page.plane.point()"))
    np.testing.assert_allclose(u, [0.8, 0.7], atol=0.01)
    z = stats.norm.ppf(u).astype(np.float32)  # Figure 4's map, computed by scipy.
    want = _litert("decode")(z=z[None])["mean"][0]
    face = np.reshape(web_page.call(browser, "page.canvasGrey('face')"), (28, 20))
    assert np.abs(face - _grey(want)).max() <= 1
    shown = browser.find_element("id", "z").text
    assert shown == f"z = ({z[0]:.2f}, {z[1]:.2f})"
    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.slow
def test_the_pages_normal_quantile_is_scipys(browser):
    ps = np.concatenate([np.linspace(1e-4, 1 - 1e-4, 201), [1e-9, 0.02, 0.03, 0.97, 0.98]])
    got = np.array(web_page.call(browser, "page.normalQuantile(args[0])", ps.tolist()))
    np.testing.assert_allclose(got, stats.norm.ppf(ps), rtol=2e-9, atol=1e-12)


@pytest.mark.slow
def test_a_missing_model_is_said_on_the_page(browser, export_dir):
    url = browser.current_url.split("/web/")[0]
    with pytest.raises(RuntimeError, match="(?s)no_such.tflite: 404.*tfvae-export"):
        web_page.open_page(browser, f"{url}/web/index.html?model=../no_such.tflite", timeout=30)
    # The module fixture's page is reloaded for any test after this one.
    web_page.open_page(browser, f"{url}/web/index.html")


def test_write_page_points_the_page_at_the_decoder_beside_it(export_dir):
    page = web_page.write_page(export_dir)
    html = (page["path"] / "index.html").read_text()
    assert f'<meta name="tfvae-model" content="../{MODEL}">' in html
    for name in web_page.PAGE_FILES:
        assert (page["path"] / name).is_file()
    if page["runtime"] == "local":
        for name in web_page.RUNTIME_FILES:
            assert (page["path"] / "node_modules" / name).is_file()


def test_without_node_modules_the_page_loads_litertjs_from_the_cdn(tmp_path, export_dir):
    source = tmp_path / "web"
    source.mkdir()
    for name in (*web_page.PAGE_FILES, "package-lock.json"):
        shutil.copy2(web_page.PAGE_SOURCE / name, source / name)
    page = web_page.write_page(export_dir, source=source)
    assert page["runtime"] == "cdn" and not (page["path"] / "node_modules").exists()
    html = (page["path"] / "index.html").read_text()
    version = json.loads((source / "package-lock.json").read_text())["packages"][
        "node_modules/@litertjs/core"
    ]["version"]
    assert f"https://cdn.jsdelivr.net/npm/@litertjs/core@{version}/dist/index.js" in html
    assert f"https://cdn.jsdelivr.net/npm/@litertjs/core@{version}/wasm/" in html
    assert "./node_modules" not in html


def test_write_page_refuses_a_folder_without_an_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="write the export first"):
        web_page.write_page(tmp_path)
    assert not (tmp_path / web_page.WEB_DIR).exists()

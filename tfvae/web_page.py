"""The sampling page beside an export: `tfvae-export RUN_DIR --web`, or `write_page`.

`write_page(export_dir)` writes

    <export_dir>/web/
        index.html, page.js, sampler.js, style.css   the page of the repository's web/
        node_modules/@litertjs/...                   LiteRT.js (JavaScript + WebAssembly)

with the page pointed at `../decoder_float32.tflite` (and the export.json beside
it), so that `python -m http.server --directory <export_dir>` serves a page that
samples the model in any browser. LiteRT.js comes from the repository's
`web/node_modules` (`npm ci` in web/); without it the page loads the same pinned
version from the jsDelivr CDN instead, and needs a network.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # selenium is in the `test` extra only.
    from selenium.webdriver.remote.webdriver import WebDriver

from tfvae.export import atomic_directory

WEB_DIR = "web"
PAGE_FILES = ("index.html", "page.js", "sampler.js", "style.css")
# The repository's page (tfvae is installed from a checkout: pip install -e .).
PAGE_SOURCE = Path(__file__).resolve().parents[1] / WEB_DIR
# What the page loads of LiteRT.js: the ES module, its one dependency, and the
# WebAssembly builds for browsers with relaxed SIMD (`internal`) and without (`compat`).
RUNTIME_FILES = (
    "@litertjs/core/package.json",
    "@litertjs/core/dist/index.js",
    "@litertjs/core/wasm/litert_wasm_internal.js",
    "@litertjs/core/wasm/litert_wasm_internal.wasm",
    "@litertjs/core/wasm/litert_wasm_compat_internal.js",
    "@litertjs/core/wasm/litert_wasm_compat_internal.wasm",
    "@litertjs/wasm-utils/package.json",
    "@litertjs/wasm-utils/dist/index.js",
)
CDN = "https://cdn.jsdelivr.net/npm/"


def litertjs_versions(source: Path | None = None) -> dict[str, str]:
    """`{package: version}` of the LiteRT.js packages that web/package-lock.json pins
    (`source`: the page's folder, None: the repository's web/)."""
    lock = json.loads(((source or PAGE_SOURCE) / "package-lock.json").read_text())
    return {
        name.removeprefix("node_modules/@litertjs/"): info["version"]
        for name, info in lock["packages"].items()
        if name.startswith("node_modules/@litertjs/")
    }


def write_page(export_dir: Path, *, model: str | None = None, source: Path | None = None) -> dict:
    """Writes `<export_dir>/web/`, replacing it whole (a failed write leaves none).

    Args:
        export_dir: A folder written by `tfvae.export` (holds `model` and export.json).
        model: The decoder the page loads by default (None: decoder_float32.tflite,
            else the first in export.json); `?model=` in the address picks another.
        source: The page's folder (None: the repository's web/).

    Returns:
        `{"path": the web folder, "runtime": "local" or "cdn", "bytes": its size}`.

    Raises:
        FileNotFoundError: No such decoder or export.json, or no page to copy.
    """
    export_dir, source = Path(export_dir), Path(source or PAGE_SOURCE)
    model = model or _default_model(export_dir)
    for name in (model, "export.json"):
        if not (export_dir / name).is_file():
            raise FileNotFoundError(
                f"{export_dir / name} not found: write the export first (tfvae-export RUN_DIR)."
            )
    if not all((source / name).is_file() for name in PAGE_FILES):
        raise FileNotFoundError(
            f"the page's files are not in {source}: they come with a checkout of tfvae "
            "(git clone, then pip install -e .)."
        )
    modules = source / "node_modules"
    local = all((modules / name).is_file() for name in RUNTIME_FILES)
    target = export_dir / WEB_DIR
    with atomic_directory(target) as folder:
        for name in PAGE_FILES:
            shutil.copy2(source / name, folder / name)
        if local:
            for name in RUNTIME_FILES:
                (folder / "node_modules" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(modules / name, folder / "node_modules" / name)
        index = folder / "index.html"
        index.write_text(
            point_page(
                index.read_text(), f"../{model}", None if local else litertjs_versions(source)
            )
        )
    size = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    return {"path": target, "runtime": "local" if local else "cdn", "bytes": size}


def _default_model(export_dir: Path) -> str:
    description = export_dir / "export.json"
    files = json.loads(description.read_text())["tflite"] if description.is_file() else {}
    return (
        "decoder_float32.tflite"
        if "decoder_float32.tflite" in files or not files
        else next(iter(files))
    )


def point_page(html: str, model_url: str, cdn_versions: dict[str, str] | None = None) -> str:
    """index.html with its default model, and LiteRT.js from the CDN if versions are given.

    Args:
        html: The page's index.html.
        model_url: The decoder to load when the address has no `?model=`.
        cdn_versions: `{"core": version, "wasm-utils": version}`; None keeps the
            page's local node_modules.
    """
    html = _set_meta(html, "tfvae-model", model_url)
    for package, version in (cdn_versions or {}).items():
        html = html.replace(
            f"./node_modules/@litertjs/{package}/", f"{CDN}@litertjs/{package}@{version}/"
        )
    return html


def _set_meta(html: str, name: str, content: str) -> str:
    pattern = re.compile(rf'(<meta name="{name}" content=")[^"]*(")')
    if not pattern.search(html):
        raise ValueError(f'index.html has no <meta name="{name}">.')
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), html, count=1)


# Serving and driving the page (tests/test_web.py, benchmarks/web_sampling_speed.py).


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # One line a request would bury pytest's output.
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serves `directory` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) of Debian's packages, or None where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 1100) -> Iterator[WebDriver]:
    """A headless Chromium under Selenium, from the system binary (no downloads).

    Args:
        width, height: The window, in CSS pixels (what a screenshot holds).

    Raises:
        FileNotFoundError: No chromium or chromedriver on PATH.
        ImportError: selenium is not installed (it is in the `test` extra).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise FileNotFoundError(
            "chromium and chromedriver not found: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: WebDriver, url: str, timeout: float = 60.0) -> None:
    """Opens the page and waits until it has drawn everything.

    Raises:
        RuntimeError: The page failed (with the message it shows its reader).
    """
    driver.set_script_timeout(timeout)
    driver.get(url)
    error = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "tfvaePage.ready.then(() => done(null), (e) => done(String(e)));"
    )
    if error is not None:
        raise RuntimeError(f"{url}: {driver.find_element('id', 'status').text}")


def call(driver: WebDriver, expression: str, *args: Any) -> Any:
    """The value of the JavaScript `expression`, awaited, on the page's API object.

    `expression` sees `page` (what `tfvaePage.ready` resolves to) and `args`;
    its value crosses as JSON.

    Raises:
        RuntimeError: The expression threw (with its message).
    """
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; const args = arguments[0];"
        "tfvaePage.ready.then(async (page) => ({value: await (" + expression + ")}))"
        ".then(done, (e) => done({error: String(e)}));",
        list(args),
    )
    if "error" in result:
        raise RuntimeError(f"{expression}: {result['error']}")
    return result["value"]

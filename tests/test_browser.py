"""What a course depends on, in a real browser: the widget notebooks run in JupyterLab with
no error, their sliders change the picture, and the rendered site loads without console
errors and shows every viewer as a picture.

JupyterLab runs on 127.0.0.1 (a free port, a token, a temporary root with copies of the
notebooks whose parameters are made smaller still); headless Chromium is Debian's
(``apt-get install chromium``), driven by Playwright's Python API with ``executable_path``
(no browser download). Skips, with the reason, where Chromium, Playwright or JupyterLab is
missing. The site test needs ``make site`` first (CI runs it after building the site).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cryodiff.notebook_runner import discover_notebooks

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
# The smallest parameters the notebooks with a slider viewer still teach with.
SMALL_PARAMETERS = {
    "01_simulate_projections": {"n_particles": 200},
    "02_train_diffusion": {"steps": 20, "sweep_steps": [1, 2]},
    "04_reconstruct_and_fsc": {"n_particles": 200},
}
# Every NN_name notebook that shows a viewer from cryodiff.widgets (a new one is picked up).
WIDGET_NOTEBOOKS = {p.stem: SMALL_PARAMETERS.get(p.stem, {}) for p in discover_notebooks()
                    if "cryodiff.widgets" in p.read_text(encoding="utf-8")}
RUN_ALL_TIMEOUT_S = 900


def chromium_path() -> str | None:
    """Debian's Chromium (or ``$CRYODIFF_CHROMIUM``), if installed."""
    for candidate in (os.environ.get("CRYODIFF_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e .[browser])")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _shrunk_copy(notebook: Path, target: Path, overrides: dict) -> None:
    """Copy a notebook, appending smaller values to its parameters cell."""
    import nbformat

    copy = nbformat.read(notebook, as_version=4)
    cell = next(c for c in copy.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n" + "\n".join(f"{k} = {v!r}  # browser test" for k, v in overrides.items())
    nbformat.write(copy, target)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e .[lab])")
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for notebook in discover_notebooks():
        if notebook.stem in WIDGET_NOTEBOOKS:
            _shrunk_copy(notebook, root / "notebooks" / notebook.name,
                         WIDGET_NOTEBOOKS[notebook.stem])
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (no windowing), so every output is in the page to be checked.
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root", "--LabApp.expose_app_in_browser=True",
         "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--LabApp.user_settings_dir={root / '.settings'}",
         f"--LabApp.workspaces_dir={root / '.workspaces'}"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=(root / "lab.log").open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer in 120 s: {(root / 'lab.log').read_text()[-2000:]}")
        yield {"base": base, "token": token, "root": root}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: it stops its kernels slowly
            server.kill()
            server.wait()


OUTPUT_PROBLEMS_JS = """() => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const problems = [];
  for (const cell of notebook.model.cells) {
    if (cell.type !== 'code') continue;
    for (let i = 0; i < cell.outputs.length; i++) {
      const output = cell.outputs.get(i).toJSON();
      if (output.output_type === 'error') problems.push(output.ename + ': ' + output.evalue);
      if (output.output_type === 'stream' && output.name === 'stderr')
        problems.push('stderr: ' + [].concat(output.text).join('').slice(0, 300));
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("stem", list(WIDGET_NOTEBOOKS))
def test_notebook_runs_in_jupyterlab_and_its_slider_moves_the_picture(browser, lab, stem):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # ?reset: a fresh workspace, so the notebooks of earlier tests are not reopened
        page.goto(f"{lab['base']}/lab/tree/notebooks/{stem}.ipynb?reset&token={lab['token']}")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            ".connectionStatus === 'connected'", timeout=120_000)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
        finished = page.evaluate(
            "async () => await window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'idle'", timeout=RUN_ALL_TIMEOUT_S * 1000)
        assert page.evaluate(OUTPUT_PROBLEMS_JS) == []
        assert finished is True, "a cell failed"
        assert "Error displaying widget" not in page.inner_text("body")

        panel = f'[id="{page.evaluate("() => window.jupyterapp.shell.currentWidget.id")}"]'
        image = page.locator(f"{panel} .jp-OutputArea-output img.widget-image").first
        image.wait_for(timeout=60_000)
        before = image.get_attribute("src")
        track = page.locator(f"{panel} .jp-OutputArea-output .widget-slider .noUi-target").first
        track.scroll_into_view_if_needed()
        box = track.bounding_box()
        # a click a tenth of the way along moves every viewer's slider (they start at the
        # first, the central or the last value)
        page.mouse.click(box["x"] + 0.1 * box["width"], box["y"] + box["height"] / 2)
        page.wait_for_function(
            "([panel, before]) => document.querySelector(panel + ' .jp-OutputArea-output"
            " img.widget-image').getAttribute('src') !== before", arg=[panel, before],
            timeout=60_000)
        assert "Error displaying widget" not in page.inner_text("body")
    finally:
        page.close()


@pytest.fixture(scope="module")
def site_server():
    pages = sorted(SITE.glob("notebooks/[0-9][0-9]_*.html"))
    if not (SITE / "index.html").is_file() or not pages:
        pytest.skip(f"no built site at {SITE}: run `make site` first (CI does, then runs this)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()


def test_site_pages_load_without_console_errors(browser, site_server):
    base, notebook_pages = site_server
    pages = ["index.html", "docs/course.md".replace(".md", ".html"),
             "docs/benchmarks.html"] + [f"notebooks/{p.name}" for p in notebook_pages]
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    try:
        for path in pages:
            response = page.goto(f"{base}/{path}")
            assert response is not None and response.ok, f"{path}: {response and response.status}"
            page.wait_for_load_state("load")
            text = page.inner_text("body")
            assert "VBox(children" not in text and "IntSlider(" not in text, path
            if path.startswith("notebooks/"):
                assert page.locator("img").count() > 0, f"{path} shows no figure"
        assert errors == []
    finally:
        page.close()


def test_the_widget_notebooks_are_found():
    # runs without a browser: the discovery above must keep finding the three viewers
    assert {"01_simulate_projections", "02_train_diffusion",
            "04_reconstruct_and_fsc"} <= set(WIDGET_NOTEBOOKS)

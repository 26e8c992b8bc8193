"""JupyterLab in a real browser: each notebook's explorer works for a reader.

nbval checks that a notebook runs; it cannot see what a reader sees. This test starts
JupyterLab on a scratch copy of ``notebooks/`` (smoke mode, like the rest of ``make test``),
opens every notebook that displays a ``kdlab.widgets`` explorer in headless Chromium, runs
all its cells, and checks that

1. the widgets render live, not as a text repr such as ``VBox(children=...)``;
2. moving each slider or dropdown of an explorer redraws its figure (once, not twice);
3. tqdm progress bars render as widgets;
4. no cell shows a traceback.

Needs Playwright (in the dev extra) and a Chromium binary: Debian's ``chromium`` package,
or the one named by ``$KDLAB_CHROMIUM``. Playwright's own browser download is not used.
Without either the test skips, except where ``CI=true``, where it fails. Run it alone with::

    .venv/bin/pytest tests/test_browser.py -p no:cacheprovider

On failure a screenshot of the notebook is saved in the test's ``tmp_path`` (the path is
printed with the failure).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser fixture skips (or fails on CI) with the reason
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# Generous limits (milliseconds, Playwright's unit): two shared CPU cores run the server, the
# kernel and the browser. Each is a ceiling on a wait for a condition, never a measurement.
LOAD_MS = 180_000  # JupyterLab loaded, the notebook open and its kernel idle
RUN_MS = 900_000  # Run All Cells finished, in smoke mode (about 30 s for notebook 02)
RENDER_MS = 60_000  # a widget rendered, or a figure redrawn after a control moved
SERVER_S = 180  # JupyterLab answers HTTP (seconds)

# A widget that failed to render leaves its text repr, or ipywidgets' error, in the output.
TEXT_REPR = re.compile(r"\b(?:\w*(?:Box|Slider|Dropdown|Progress|Buttons?)|interactive)\((?:children|value|options)=|"
                       r"Error displaying widget")


def _explorer_notebooks() -> list[str]:
    """Notebooks whose code uses ``kdlab.widgets`` and displays an explorer's ``.widget(...)``."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                         if c["cell_type"] == "code")
        if "kdlab.widgets" in code and re.search(r"\.widget\(", code):
            found.append(path.name)
    return found


EXPLORER_NOTEBOOKS = _explorer_notebooks()


def _require(what: str, how: str) -> None:
    """Skip for want of ``what``, or fail on CI, where a skipped browser test would pass unseen."""
    message = f"the browser test needs {what}: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true, so this fails instead of skipping)")
    pytest.skip(message)


def _chromium() -> str:
    path = os.environ.get("KDLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _require("Chromium", "install it (Debian/Ubuntu: apt-get install chromium) or set KDLAB_CHROMIUM "
                             "to a Chromium or Chrome binary")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    checkpoints: Path
    log: Path

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings for the test: every cell in the DOM, no news or update checks."""
    settings = {
        # The default windowing may leave cells outside the viewport out of the DOM.
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a scratch copy of the project, in smoke mode; nothing it writes lands in the repo."""
    scratch = tmp_path_factory.mktemp("jupyterlab")
    # Notebooks run from their own folder, and kdlab.data.default_root() finds the project by data/README.md:
    # the copy has both, so the kernels never look at (or write into) the real tree.
    project = scratch / "project"
    shutil.copytree(NOTEBOOKS, project / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (project / "data").mkdir()
    shutil.copy(ROOT / "data" / "README.md", project / "data" / "README.md")
    _write_settings(scratch / "lab-settings")

    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # conftest's Agg; a reader's kernel uses the inline backend
    env.update({
        "KDLAB_SMOKE": "1",
        "KDLAB_NOTEBOOKS": str(project / "notebooks"),
        "KDLAB_RUNS": str(scratch / "runs"),
        "KDLAB_CHECKPOINTS": str(scratch / "checkpoints"),
        # The kernels import kdlab from the repo (an editable install): no __pycache__ there.
        "PYTHONDONTWRITEBYTECODE": "1",
        # Jupyter's config, runtime files, notebook-trust database, settings and workspaces, and
        # IPython's history, all in the scratch folder: the user's own neither leak in nor change.
        "JUPYTER_CONFIG_DIR": str(scratch / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(scratch / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "lab-workspaces"),
        "IPYTHONDIR": str(scratch / "ipython"),
    })
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={project / 'notebooks'}",
               "--ServerApp.allow_root=True",  # CI containers run as root
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run commands, read cell models
    log = scratch / "jupyterlab.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, cwd=project, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    lab = Lab(url=f"http://127.0.0.1:{port}", token=token, checkpoints=scratch / "checkpoints", log=log)
    try:
        deadline = time.monotonic() + SERVER_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {server.returncode}:\n{_tail(log)}")
            try:
                lab.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on port {port} within {SERVER_S} s:\n{_tail(log)}")
                time.sleep(0.5)
        yield lab
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        _require("Playwright", "pip install -e '.[dev]' (never `playwright install`: the test uses the system "
                               "Chromium)")
    executable = _chromium()
    with sync_playwright() as playwright:
        # Playwright adds --no-sandbox by default, which Chromium needs when it runs as root.
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--disable-dev-shm-usage"])  # containers' /dev/shm is small
        yield chromium
        chromium.close()


def test_an_explorer_notebook_is_found():
    assert "02_soft_targets.ipynb" in EXPLORER_NOTEBOOKS, (
        f"no explorer found in notebooks/02_soft_targets.ipynb (found: {EXPLORER_NOTEBOOKS}); the detection looks "
        "for code using kdlab.widgets and calling .widget(")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("name", EXPLORER_NOTEBOOKS, ids=lambda n: n.removesuffix(".ipynb"))
def test_explorer_in_jupyterlab(name, browser, lab, tmp_path):  # browser first: skip before starting JupyterLab
    # Every notebook trains its own smoke teacher, as if run first: whether its progress bars show
    # must not depend on which notebook ran before it.
    shutil.rmtree(lab.checkpoints, ignore_errors=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(RENDER_MS)
    page = context.new_page()
    screenshot = tmp_path / f"{name.removesuffix('.ipynb')}.png"
    try:
        problems = _run_and_check(page, lab, name)
    except Exception:
        _save_screenshot(page, screenshot)
        raise
    else:
        if problems:
            _save_screenshot(page, screenshot)
            pytest.fail(f"{name} in JupyterLab:\n- " + "\n- ".join(problems))
    finally:
        context.close()
        _stop_kernels(lab)


def _stop_kernels(lab: Lab) -> None:
    """Shut the notebook's kernel down, so the next notebook gets the CPUs."""
    try:
        for session in lab.api("/api/sessions") or []:
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    except (urllib.error.URLError, ConnectionError) as err:  # reported, not raised: the test's own failure matters more
        print(f"could not stop the kernels ({err}); JupyterLab's log:\n{_tail(lab.log)}")


def _save_screenshot(page, path: Path) -> None:
    try:
        page.screenshot(path=str(path))
        print(f"screenshot: {path}")
    except Exception as err:  # the page itself may be what broke; the original failure matters more
        print(f"no screenshot ({err})")


# The notebook panel for a path, once its context is loaded and its kernel idle; kept in window.__kdlab.
_FIND_PANEL = """(name) => {
    const app = window.jupyterapp;
    if (!app) return false;
    const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === name);
    const kernel = panel && panel.context.isReady && panel.sessionContext.session &&
                   panel.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return false;
    window.__kdlab = {panel, run: 'not started'};
    return true;
}"""

# Run All Cells through JupyterLab's command; its promise settles when every cell has finished.
_RUN_ALL = """() => {
    window.__kdlab.run = 'running';
    window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => { window.__kdlab.run = ok ? 'ok' : 'a cell failed'; },
        err => { window.__kdlab.run = 'command failed: ' + err; });
}"""

_IDLE = """() => { const s = window.__kdlab.panel.sessionContext.session;
                   return !!(s && s.kernel && s.kernel.status === 'idle'); }"""

# Each code cell's outputs, summarised; images as their base64 text, to find one shown twice.
_CELLS = """() => window.__kdlab.panel.content.widgets.map((cell, index) => {
    if (cell.model.type !== 'code') return null;
    return {
        index,
        source: cell.model.sharedModel.getSource(),
        count: cell.model.executionCount,
        outputs: cell.model.outputs.toJSON().map(o => ({
            type: o.output_type,
            name: o.name || null,
            text: o.output_type === 'stream' ? [].concat(o.text).join('') : null,
            error: o.output_type === 'error' ? o.ename + ': ' + o.evalue : null,
            widget: (o.data && o.data['application/vnd.jupyter.widget-view+json'] || {}).model_id || null,
            png: o.data && o.data['image/png'] ? [].concat(o.data['image/png']).join('') : null,
        })),
    };
}).filter(c => c !== null)"""

# A redraw has happened when the figures in the explorer's output differ from ``before`` (the old
# ones may first be cleared: wait for at least as many as before).
_REDRAWN = """([explorer, before]) => {
    const srcs = Array.from(explorer.querySelectorAll('.widget-output img')).map(img => img.src);
    return srcs.length >= before.length && srcs.join('|') !== before.join('|');
}"""

_EXPLORERS = (".jp-Notebook .jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output > .jupyter-widgets"
              ":has(.widget-output)")


def _run_and_check(page, lab: Lab, name: str) -> list[str]:
    """Open ``name``, run all its cells and return what a reader would see go wrong."""
    problems: list[str] = []
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}", timeout=LOAD_MS)
    page.wait_for_function(_FIND_PANEL, arg=name, timeout=LOAD_MS, polling=500)
    page.evaluate(_RUN_ALL)
    page.wait_for_function(f"() => window.__kdlab.run !== 'running' && ({_IDLE})()", timeout=RUN_MS, polling=500)
    run = page.evaluate("() => window.__kdlab.run")
    if run != "ok":
        problems.append(f"Run All Cells ended with: {run}")

    # 1. Widgets render live (the text reprs are looked for at the end, when every view has had its time).
    try:
        page.locator(".jp-Notebook .jupyter-widgets").first.wait_for(state="attached", timeout=RENDER_MS)
    except PlaywrightTimeout:
        problems.append("no ipywidgets element (.jupyter-widgets) rendered: are the widget extensions installed?")

    # 2. Moving a control redraws the explorer's figure.
    explorers = page.locator(_EXPLORERS)
    try:
        explorers.first.wait_for(state="attached", timeout=RENDER_MS)
    except PlaywrightTimeout:
        problems.append("no explorer rendered (a widget holding an Output with the figure)")
    for i in range(explorers.count()):
        problems += _check_explorer(page, explorers.nth(i), f"explorer {i + 1}")

    # 3. tqdm bars render as progress widgets.
    if page.locator(".jp-Notebook .widget-hprogress").count() == 0:
        problems.append(f"no tqdm progress bar rendered in {name}: its training calls in smoke mode (KDLAB_SMOKE=1) "
                        "must keep progress=True so that the bars render (tqdm.auto widgets)")

    # 1 (continued). No widget shown as text.
    page.wait_for_function(_IDLE, timeout=RENDER_MS, polling=500)
    for text in page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts():
        match = TEXT_REPR.search(text)
        if match:
            problems.append(f"an output shows a widget as text instead of rendering it: {match.group(0)!r} in "
                            f"{text[:200]!r}")

    # 4. No traceback, nor a widget or a figure shown twice, in any cell (after the interactions above).
    problems += _check_outputs(page.evaluate(_CELLS))
    for text in page.locator('.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts():
        if "Traceback" in text:  # also inside widget outputs, which the cells' models do not hold
            problems.append(f"an output shows a traceback: {text[-600:]!r}")
    return list(dict.fromkeys(problems))  # a widget displayed twice repeats its views' problems


def _check_explorer(page, explorer, label: str) -> list[str]:
    """Move each dropdown and slider of one explorer; each move must redraw its figure, once."""
    problems = []
    images = explorer.locator(".widget-output img")
    try:
        images.first.wait_for(state="attached", timeout=RENDER_MS)
    except PlaywrightTimeout:
        return [f"{label} shows no figure in its output"]
    controls = ([("dropdown", c) for c in explorer.locator(".widget-dropdown select").all()] +
                [("slider", c) for c in explorer.locator(".widget-slider .noUi-handle").all()])
    moved = 0
    for kind, control in controls:
        before = [img.get_attribute("src") for img in images.all()]
        if kind == "dropdown":
            options, selected = control.evaluate("s => [s.options.length, s.selectedIndex]")
            if options < 2:
                continue
            control.select_option(index=(selected + 1) % options)
        else:
            at_max = control.get_attribute("aria-valuenow") == control.get_attribute("aria-valuemax")
            control.press("ArrowLeft" if at_max else "ArrowRight")  # one step
        moved += 1
        try:
            page.wait_for_function(_REDRAWN, arg=[explorer.element_handle(), before], timeout=RENDER_MS, polling=200)
        except PlaywrightTimeout:
            problems.append(f"moving the {kind} of {label} did not redraw its figure")
            continue
        page.wait_for_function(_IDLE, timeout=RENDER_MS, polling=200)
        after = [img.get_attribute("src") for img in images.all()]
        if len(after) != len(before) or len(set(after)) != len(after):
            problems.append(f"after moving the {kind} of {label} its output shows {len(after)} figures "
                            f"({len(set(after))} distinct), before {len(before)}: a figure drawn twice or not cleared")
    if moved == 0:
        problems.append(f"{label} has no dropdown or slider to move")
    return problems


def _check_outputs(cells: list[dict]) -> list[str]:
    """Tracebacks, cells that did not run, and anything displayed twice in one cell."""
    problems = []
    not_run = [c["index"] + 1 for c in cells if c["source"].strip() and c["count"] is None]
    if not_run:
        problems.append(f"code cells {not_run} (counting all cells from 1) did not run")
    for cell in cells:
        first_line = (cell["source"].strip().splitlines() or [""])[0]
        where = f"cell {cell['index'] + 1} ({first_line[:60]!r})"
        widgets, images = [], []
        for out in cell["outputs"]:
            if out["error"]:
                problems.append(f"{where} raised {out['error']}")
            if out["type"] == "stream" and out["name"] == "stderr" and "Traceback" in out["text"]:
                problems.append(f"{where} printed a traceback: {out['text'][-600:]!r}")
            widgets += [out["widget"]] if out["widget"] else []
            images += [out["png"]] if out["png"] else []
        if len(set(widgets)) != len(widgets):
            problems.append(f"{where} displays the same widget twice")
        if len(set(images)) != len(images):
            problems.append(f"{where} shows the same figure twice")
    return problems

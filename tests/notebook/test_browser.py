"""A real browser: JupyterLab (as Binder runs it) opens the live notebook in headless
Chromium, and the live widget's table shows a row written by another client.

Chromium is ``/usr/bin/chromium`` or ``INSTANTDB_CHROMIUM``, driven by Playwright; the
test never downloads one (``make chromium`` finds or installs it: see docs/notebooks.md).
JupyterLab comes from the Binder venv (``make binder-venv``). The screenshot is kept as a
CI artifact in ``$CI_ARTIFACTS_DIR`` (else ``build/ci-artifacts/``) and its path is named
in pytest's terminal summary ("CI artifacts"). Every wait is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from instantdb import Instant, id
from tests.notebook.jupyterlab import ROOT, running_lab
from tests.notebook.test_binder import binder_venv, credentials_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

NOTEBOOK = ROOT / "notebooks" / "03_live_and_streams.ipynb"
PERMS = ROOT / "notebooks" / "instant.perms.ts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SERVER_START_SECONDS = 60
PAGE_LOAD_MS = 60_000
KERNEL_READY_MS = 60_000
CELLS_RUN_MS = 60_000
WIDGET_UPDATE_MS = 30_000

# True once the notebook is open and its kernel is idle.
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.status === "idle" && panel.content.widgets.length > 0);
}"""

# Starts running cells 0..last in order, each after the previous one finished; returns at
# once (the test's own bounded waits follow the result).
RUN_CELLS = """(last) => {
    const app = window.jupyterapp;
    const notebook = app.shell.currentWidget.content;
    notebook.activeCellIndex = 0;
    (async () => {
        for (let i = 0; i <= last; i++) {
            await app.commands.execute("notebook:run-cell-and-select-next");
        }
    })();
}"""


def chromium() -> str:
    path = os.environ.get("INSTANTDB_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"No Chromium at {path}: run `make chromium` (it uses a system Chromium, installs "
            "Debian's as root, else downloads Playwright's), or set INSTANTDB_CHROMIUM."
        )
    return path


def live_table_cell() -> int:
    """The index of the cell that displays the live table (tagged ``live-table``)."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    tagged = [n for n, cell in enumerate(cells) if "live-table" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "03_live_and_streams.ipynb must tag one cell 'live-table'"
    return tagged[0]


def test_the_live_table_follows_another_client_in_jupyterlab(
    tmp_path: Path, ci_artifact: Callable[[str], Path]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable, venv, last = chromium(), binder_venv(), live_table_cell()
    subjects = [f"Browser check {id()[:8]}", f"Second browser check {id()[:8]}"]
    with (
        running_lab(venv, [NOTEBOOK, PERMS], tmp_path, SERVER_START_SECONDS) as lab,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(lab.page(NOTEBOOK.name), timeout=PAGE_LOAD_MS)
            page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_MS)
            page.evaluate(RUN_CELLS, last)

            output = page.locator(".jp-Cell").nth(last).locator(".jp-OutputArea")
            table = output.locator(".widget-html").nth(1)
            expect(output.locator(".widget-html").first).to_contain_text(
                "connected", timeout=CELLS_RUN_MS
            )
            before = table.inner_text()
            with Instant(**client_arguments(lab.data_dir)) as outside:
                for subject in subjects:
                    outside.transact(
                        outside.tx.tickets[id()].update(
                            {"subject": subject, "priority": "high", "status": "open"}
                        )
                    )
                    # The table in the page shows the row another client wrote.
                    expect(table).to_contain_text(subject, timeout=WIDGET_UPDATE_MS)
            assert all(subject not in before for subject in subjects)
            expect(output.locator(".widget-html").first).to_contain_text("connected")

            output.scroll_into_view_if_needed()
            page.screenshot(path=str(ci_artifact("browser-live-table.png")))
        finally:
            browser.close()


def client_arguments(data_dir: Path) -> dict[str, str]:
    """The hook's server's app, as ``instantdb-local env --data`` would export it."""
    credentials = credentials_in(data_dir)
    return {
        "app_id": credentials["INSTANT_APP_ID"],
        "admin_token": credentials["INSTANT_APP_ADMIN_TOKEN"],
        "api_uri": credentials["INSTANT_API_URI"],
    }

"""Run notebooks the way a student does: JupyterLab in a real (headless) Chromium.

Starts ``jupyter lab`` on 127.0.0.1 with a token and throw-away config, runtime, settings and
workspace folders (autosave off, checkpoints outside the repo, so the notebooks on disk are never
rewritten), opens each notebook, clears its outputs and runs all cells from the menus, waits for
the kernel to go idle, reads every cell's outputs from the notebook model and saves a full-page
screenshot. Every phase has a deadline and a watchdog kills everything if the whole run hangs.

    python tools/lab_driver.py notebooks/00_setup.ipynb --out results/browser

Needs the ``playwright`` Python package (``pip install -e ".[browser]"``) and Debian's Chromium
(``apt-get install chromium``); ``playwright install`` is never used. ``COURSE_CHROMIUM`` points
at another Chromium binary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's real binary; /usr/bin/chromium is a wrapper
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
SETTINGS = {  # JupyterLab user settings for every run
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},  # every cell in the DOM
}
# Seconds per phase of one notebook; the whole run may take their sum, then the watchdog fires.
TIMEOUTS = {"open": 60.0, "kernel": 60.0, "clear": 20.0, "run": 240.0, "read": 20.0,
            "screenshot": 30.0}
VIEWPORT = {"width": 1400, "height": 900}
MAX_SCREENSHOT_HEIGHT = 16000  # Chromium's texture limit is about 16k pixels

# JavaScript: the notebook panel showing `path` (expose_app_in_browser gives window.jupyterapp).
FIND_PANEL = """(path) => Array.from(window.jupyterapp.shell.widgets('main'))
    .find(w => w.context && w.context.path === path && w.content && w.content.widgets)"""
KERNEL_STATE = f"""(path) => {{
    const panel = ({FIND_PANEL})(path);
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return kernel ? [kernel.status, kernel.connectionStatus] : ['none', 'none'];
}}"""
PROMPTS = f"""(path) => Array.from(({FIND_PANEL})(path).node
    .querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')).map(p => p.textContent.trim())"""
CELL_REPORT = f"""(path) => ({FIND_PANEL})(path).content.widgets.map((cell, index) => {{
    const model = cell.model;
    if (model.type !== 'code') return {{index, type: model.type}};
    const outputs = [];
    for (let j = 0; j < model.outputs.length; j++) outputs.push(model.outputs.get(j).toJSON());
    const errors = outputs.filter(o => o.output_type === 'error')
        .map(o => ({{ename: o.ename, evalue: o.evalue}}));
    const text = outputs.filter(o => o.output_type === 'stream')
        .map(o => Array.isArray(o.text) ? o.text.join('') : o.text).join('');
    return {{index, type: 'code', executionCount: model.executionCount, errors, text}};
}})"""
# The notebook's metadata as JupyterLab holds it (the kernel fills in some when it connects).
MODEL_METADATA = f"""(path) => JSON.stringify(({FIND_PANEL})(path).context.model.toJSON().metadata)"""
DIRTY = f"""(path) => ({FIND_PANEL})(path).context.model.dirty"""
# Runs `code` in the notebook's kernel (not in a cell: the document is untouched), returns stdout;
# gives up after `ms` (page.evaluate itself has no timeout).
KERNEL_EXEC = f"""async ([path, code, ms]) => {{
    const kernel = ({FIND_PANEL})(path).sessionContext.session.kernel;
    let text = '';
    const future = kernel.requestExecute({{code, silent: false, store_history: false}});
    future.onIOPub = msg => {{ if (msg.header.msg_type === 'stream') text += msg.content.text; }};
    const late = new Promise((_, reject) => setTimeout(
        () => reject(new Error(`TimeoutError: no answer from the kernel in ${{ms}} ms`)), ms));
    await Promise.race([future.done, late]);
    return text;
}}"""
PROBE = ("import json, os, sys; print(json.dumps({'prefix': sys.prefix, 'executable': sys.executable,"
         " 'profile': os.environ.get('COURSE_PROFILE'), 'cwd': os.getcwd()}))")


class LabHang(RuntimeError):
    """A phase did not finish before its deadline (the message names the phase)."""


@dataclass
class CellError:
    index: int  # position of the cell in the notebook, 0-based, markdown cells counted
    ename: str
    evalue: str

    def __str__(self) -> str:
        return f"cell {self.index}: {self.ename}: {self.evalue}"


@dataclass
class RunResult:
    notebook: str
    errors: list[CellError] = field(default_factory=list)
    not_run: list[int] = field(default_factory=list)  # code cells without an execution count
    code_cells: int = 0
    last_code_cell: int | None = None  # index of the notebook's last code cell
    stdout: dict[int, str] = field(default_factory=dict)  # printed text per code cell index
    dirty_on_open: bool | None = None  # the unsaved-changes mark, once the kernel is ready
    metadata_changes: list[str] = field(default_factory=list)  # metadata keys JupyterLab changed on open
    kernel: dict = field(default_factory=dict)  # PROBE's answer: prefix, executable, profile, cwd
    screenshot: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def ran_to_the_end(self) -> bool:
        """Every code cell ran, the last one included, and none raised."""
        return self.code_cells > 0 and not self.errors and not self.not_run


def chromium_path() -> Path:
    """The Chromium binary: ``$COURSE_CHROMIUM``, else Debian's ``/usr/lib/chromium/chromium``."""
    return Path(os.environ.get("COURSE_CHROMIUM", CHROMIUM))


def missing_requirements() -> str | None:
    """Why the browser run cannot happen here (every missing piece, with its fix), or None when it can."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append('the playwright package is missing: pip install -e ".[browser]"')
    chromium = chromium_path()
    if not os.access(chromium, os.X_OK):
        missing.append(f"no Chromium at {chromium}: apt-get install chromium "
                       "(or set COURSE_CHROMIUM to a Chromium binary)")
    return "; ".join(missing) or None


class Phases:
    """Names the phase in progress and gives its deadline, capped by the overall one."""

    def __init__(self, timeouts: dict[str, float] | None = None, overall: float | None = None):
        self.timeouts = {**TIMEOUTS, **(timeouts or {})}
        self.overall = overall or sum(self.timeouts.values())
        self.end = time.monotonic() + self.overall
        self.name = "start"
        self.deadline = self.end
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        limit = self.timeouts[name]
        self.name, start = name, time.monotonic()
        self.deadline = min(start + limit, self.end)
        try:
            yield
        except Exception as error:  # Playwright's TimeoutError is not the builtin one
            if type(error).__name__ == "TimeoutError" or time.monotonic() >= self.deadline:
                raise LabHang(f"phase '{name}' did not finish within {limit:.0f} s "
                              f"(overall limit included): {error}") from error
            raise
        finally:
            self.timings[name] = round(time.monotonic() - start, 1)

    def left_ms(self) -> float:
        """Milliseconds to this phase's deadline (Playwright timeouts are in ms); at least 1."""
        return max(1.0, (self.deadline - time.monotonic()) * 1000)

    def check(self, what: str) -> None:
        if time.monotonic() >= self.deadline:
            raise LabHang(f"phase '{self.name}' did not finish within "
                          f"{self.timeouts[self.name]:.0f} s: {what}")


def _process_tree(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every descendant of `pid`, read from /proc (empty elsewhere)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(stat.parent.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _kill_tree(processes: list[tuple[int, str]]) -> None:
    """SIGKILL the processes from `_process_tree` that are still the same processes."""
    for pid, started in processes:
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
                os.kill(pid, signal.SIGKILL)


class Watchdog:
    """Last resort after `seconds`: kill this process's Chromium, so that a Playwright call stuck
    on the page fails at once (the browser is gone for later runs); `fired` names the phase."""

    def __init__(self, seconds: float, phases: Phases):
        self.seconds, self.phases, self.fired = seconds, phases, None
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = self.phases.name
        print(f"lab_driver watchdog: phase '{self.fired}' hung; killing Chromium", file=sys.stderr)
        chromium = os.path.realpath(chromium_path())
        _kill_tree([(pid, started) for pid, started in _process_tree(os.getpid())
                    if _exe(pid) == chromium])

    def __enter__(self) -> "Watchdog":
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token and private temporary Jupyter folders."""

    def __init__(self, root_dir: str | Path, env: dict[str, str] | None = None,
                 python: str = sys.executable, start_timeout: float = 60.0):
        self.root_dir = Path(root_dir).resolve()
        self.python, self.start_timeout = python, start_timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="lab_driver_"))
        self.token = os.urandom(16).hex()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.env.pop("MPLBACKEND", None)  # the kernel must use the inline backend, as in a lab
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR",
                     "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            self.env[name] = str(self.tmp / name.lower())
        for plugin, values in SETTINGS.items():
            path = self.tmp / "jupyterlab_settings_dir" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.log = self.tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "LabServer":
        args = [self.python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
                "--ServerApp.terminals_enabled=False",
                f"--FileCheckpoints.checkpoint_dir={self.tmp / 'checkpoints'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _request(self, path: str, method: str = "GET", timeout: float = 5.0) -> bytes:
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                self._request("/api/status", timeout=2)
                return
            time.sleep(0.25)
        raise LabHang(f"phase 'start server' did not finish within {self.start_timeout:.0f} s:\n"
                      f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def writes(self) -> list[str]:
        """The server's log lines for every file it saved, uploaded, created, copied or deleted."""
        marks = ("Saving file at ", "Uploading file to ", "Creating new ", "Copying ", "delete ")
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if any(mark in line for mark in marks)]

    def stop(self, timeout: float = 10.0) -> None:
        """POST /api/shutdown (it ends the kernels too), then end the process group."""
        if self.proc is None:
            return
        tree = _process_tree(self.proc.pid)  # kernels run in their own sessions
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self._request("/api/shutdown", method="POST", timeout=timeout / 2)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    self.proc.wait(timeout / 2)
                    break
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout / 2)
        _kill_tree(tree)  # nothing outlives the server, even when shutdown failed
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_browser(playwright):
    """Headless Chromium from the system (never Playwright's own download)."""
    return playwright.chromium.launch(executable_path=str(chromium_path()), headless=True,
                                      args=LAUNCH_ARGS, timeout=30_000)


def run_notebook(browser, server: LabServer, path: str, out_dir: str | Path | None = None,
                 timeouts: dict[str, float] | None = None, overall: float | None = None) -> RunResult:
    """Open `path` (relative to the server's root) in a new page, run all cells, read the result.

    `timeouts` overrides some of TIMEOUTS (e.g. ``{"run": 600}`` for a training lesson); `overall`
    defaults to their sum. Raises LabHang naming the phase that missed its deadline; saves
    `out_dir/<notebook stem>.png` whatever happens.
    """
    phases = Phases(timeouts, overall)
    overall = phases.overall
    result = RunResult(notebook=path, timings=phases.timings)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        with Watchdog(overall + 30, phases) as watchdog:
            try:
                _drive(page, server, path, phases, result)
            except Exception as error:
                if watchdog.fired:
                    raise LabHang(f"watchdog after {watchdog.seconds:.0f} s: phase "
                                  f"'{watchdog.fired}' hung ({error})") from error
                raise
            finally:
                if out_dir is not None:
                    result.screenshot = _screenshot(page, path, Path(out_dir), phases)
    finally:
        with contextlib.suppress(Exception):
            context.close()
    return result


def _drive(page, server: LabServer, path: str, phases: Phases, result: RunResult) -> None:
    with phases("open"):
        page.goto(f"{server.url}/lab/tree/{path}?reset&token={server.token}",
                  timeout=phases.left_ms())
        page.wait_for_function(f"(path) => !!window.jupyterapp && !!({FIND_PANEL})(path)", arg=path,
                               timeout=phases.left_ms())
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=phases.left_ms())
    with phases("kernel"):
        while page.evaluate(KERNEL_STATE, path) != ["idle", "connected"]:
            _no_dialog(page)
            phases.check(f"kernel is {page.evaluate(KERNEL_STATE, path)}")
            time.sleep(0.2)
        # The kernel's info reply writes its language_info (with the Python version) into the
        # notebook's metadata just after this: wait for it, not for a fixed time.
        page.wait_for_function(f"(path) => !!(({FIND_PANEL})(path).context.model.toJSON().metadata"
                               f".language_info || {{}}).version", arg=path, timeout=phases.left_ms())
        result.dirty_on_open = page.evaluate(DIRTY, path)
        on_disk = json.loads((server.root_dir / path).read_text(encoding="utf-8"))["metadata"]
        in_lab = json.loads(page.evaluate(MODEL_METADATA, path))
        result.metadata_changes = sorted(key for key in set(on_disk) | set(in_lab)
                                         if on_disk.get(key) != in_lab.get(key))
    with phases("clear"):
        _menu(page, "Edit", "editmenu:clear-all", phases)
        page.wait_for_function(f"(path) => ({PROMPTS})(path).every(p => p === '[ ]:')", arg=path,
                               timeout=phases.left_ms())
    with phases("run"):
        _menu(page, "Run", "runmenu:run-all", phases)
        _wait_finished(page, path, phases)
    with phases("read"):
        cells = page.evaluate(CELL_REPORT, path)
        code = [cell for cell in cells if cell["type"] == "code"]
        result.code_cells = len(code)
        result.errors = [CellError(cell["index"], e["ename"], e["evalue"])
                         for cell in code for e in cell["errors"]]
        result.not_run = [cell["index"] for cell in code if cell["executionCount"] is None]
        result.last_code_cell = code[-1]["index"] if code else None
        result.stdout = {cell["index"]: cell["text"] for cell in code}
        answer = page.evaluate(KERNEL_EXEC, [path, PROBE, phases.left_ms()])
        result.kernel = json.loads(answer.strip().splitlines()[-1])


def _no_dialog(page) -> None:
    """A dialog here means a kernel picker, a dead kernel or a restart: stop with its text."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        raise RuntimeError(f"JupyterLab shows a dialog: {dialog.first.inner_text()[:300]!r}")


def _menu(page, menu: str, command: str, phases: Phases) -> None:
    """Click a main-menu entry, as a user does (e.g. Run > Run All Cells)."""
    page.get_by_role("menuitem", name=menu, exact=True).click(timeout=phases.left_ms())
    page.locator(f".lm-Menu-item[data-command='{command}']").click(timeout=phases.left_ms())


def _wait_finished(page, path: str, phases: Phases, stable_polls: int = 3) -> None:
    """Kernel idle, no ``[*]`` prompt, at least one cell ran, the same over a few polls."""
    stable = 0
    while stable < stable_polls:
        time.sleep(0.3)
        _no_dialog(page)
        prompts = page.evaluate(PROMPTS, path)
        status = page.evaluate(KERNEL_STATE, path)
        if status[0] == "dead":
            raise RuntimeError("the kernel died while running the notebook")
        done = (status == ["idle", "connected"] and "[*]:" not in prompts
                and (not prompts or any(p != "[ ]:" for p in prompts)))
        stable = stable + 1 if done else 0
        phases.check(f"kernel {status}, {prompts.count('[*]:')} cells queued or running")


def _screenshot(page, path: str, out_dir: Path, phases: Phases) -> Path | None:
    """Grow the viewport to the whole notebook, then save ``out_dir/<notebook stem>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{Path(path).stem}.png"
    phases.end = max(phases.end, time.monotonic() + TIMEOUTS["screenshot"])  # even after a hang
    try:
        with phases("screenshot"):
            extra = page.evaluate("""() => {  // bottom of the last cell, below the visible part
                const outer = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) '
                                                      + '.jp-WindowedPanel-outer');
                const cells = outer ? outer.querySelectorAll('.jp-Cell') : [];
                if (!cells.length) return 0;
                const bottom = cells[cells.length - 1].getBoundingClientRect().bottom
                    - outer.getBoundingClientRect().top + outer.scrollTop;
                return bottom + 40 - outer.clientHeight; }""")
            height = min(VIEWPORT["height"] + max(0, round(extra)), MAX_SCREENSHOT_HEIGHT)
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
            page.evaluate("() => document.querySelectorAll('.jp-WindowedPanel-outer')"
                          ".forEach(outer => { outer.scrollTop = 0; })")  # run-all scrolled down
            page.wait_for_timeout(300)
            page.screenshot(path=str(target), full_page=True, timeout=phases.left_ms())
        return target
    except Exception as error:  # a failed picture must not hide the real failure
        print(f"lab_driver: no screenshot of {path}: {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results/browser"))
    parser.add_argument("--profile", default="ci", help="COURSE_PROFILE for the kernel (default ci)")
    parser.add_argument("--run-timeout", type=float, default=TIMEOUTS["run"],
                        help="seconds for Run All in each notebook")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    paths = [p.resolve() for p in args.notebooks]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    failed = 0
    with tempfile.TemporaryDirectory(prefix="lab_driver_ckpt_") as checkpoints, \
            LabServer(root, env={"COURSE_PROFILE": args.profile,
                                 "COURSE_CHECKPOINTS": checkpoints}) as server, \
            sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for path in paths:
            rel = path.relative_to(root).as_posix()
            try:
                result = run_notebook(browser, server, rel, args.out, {"run": args.run_timeout})
            except Exception as error:
                failed += 1
                print(f"{rel}: FAILED: {error}")
                continue
            problems = [str(e) for e in result.errors] + [f"cell {i} never ran" for i in result.not_run]
            failed += bool(problems)
            print(f"{rel}: {'FAILED' if problems else 'ok'} ({result.code_cells} code cells, "
                  f"{result.timings}) screenshot: {result.screenshot}\n  kernel: {result.kernel}")
            for problem in problems:
                print(f"  {problem}")
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Start a real, headless ComfyUI server with this pack installed, and talk to it over HTTP.

``ComfyClient(url)`` speaks to any running ComfyUI (queue, wait, upload, download). ``ComfyServer(...)`` is a
context manager that launches one on a free loopback port in a throw-away base directory, with this repository
symlinked into ``custom_nodes/comfyui-vmdiff`` and model folders taken from ``models_dir``::

    with ComfyServer(models_dir) as srv:
        entry = srv.run(api_prompt)
        print(srv.output_images(entry))

Used by the tests (tests/conftest.py) and by ``vmdiff_cli/run_workflow.py``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    import requests
except ModuleNotFoundError:  # not among ComfyUI's requirements (transformers 5 no longer pulls it in)
    raise ModuleNotFoundError("vmdiff_cli/comfy_server.py (used by run_workflow.py and folder_runner.py) needs the "
                              "Python "
                              "package requests, which this Python lacks: pip install \"requests>=2.31,<3\"",
                              name="requests") from None

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "comfyui-vmdiff"
# Folders ComfyUI knows by name; any other sub-folder of models_dir is mapped too.
MODEL_FOLDERS = ("diffusion_models", "clip_vision", "style_models", "vae", "text_encoders", "clip", "vae_approx",
                 "checkpoints")


def installed_comfyui() -> Path | None:
    """The ComfyUI this pack is installed in (``<ComfyUI>/custom_nodes/<pack>/``, as laid out or after resolving a
    link), or None for a standalone checkout."""
    for pack in (Path(os.path.abspath(__file__)).parents[1], REPO_ROOT):
        if pack.parent.name == "custom_nodes" and (pack.parent.parent / "main.py").is_file():
            return pack.parent.parent
    return None


def locate_comfyui() -> tuple[Path, str]:
    """(ComfyUI's folder, how it was chosen): ``$COMFYUI_PATH``, else the ComfyUI this pack is installed in, else
    ``../shared/ComfyUI`` beside the checkout, else the pinned clone in ``.cache/ComfyUI`` (scripts/setup_env.sh
    makes it for a standalone checkout). Raises RuntimeError naming the fix when there is none."""
    candidates = [(os.environ.get("COMFYUI_PATH"), "$COMFYUI_PATH"),
                  (installed_comfyui(), "the ComfyUI this pack is installed in"),
                  (REPO_ROOT.parent / "shared" / "ComfyUI", "../shared/ComfyUI beside this checkout"),
                  (REPO_ROOT / ".cache" / "ComfyUI", "the pinned clone in .cache/ComfyUI")]
    for cand, how in candidates:
        if cand and (Path(cand) / "main.py").is_file():
            return Path(cand).resolve(), how
    raise RuntimeError("ComfyUI not found: install this pack in <ComfyUI>/custom_nodes/, set COMFYUI_PATH, pass "
                       "--server URL of a running ComfyUI, or run scripts/setup_env.sh (it clones ComfyUI v0.8.0)")


def find_comfyui() -> Path:
    """ComfyUI's folder (locate_comfyui)."""
    return locate_comfyui()[0]


def default_models_dir() -> Path | None:
    """``<ComfyUI>/models`` when the ComfyUI is the one this pack is installed in (its own model folders), else None."""
    comfyui, how = locate_comfyui()
    if installed_comfyui() is not None and comfyui == installed_comfyui().resolve():
        return comfyui / "models"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_extra_model_paths_yaml(models_dir: Path, yaml_path: Path, custom_nodes_dirs=()) -> Path:
    """Map every model folder under models_dir (plus the usual names; ``clip`` is ``text_encoders``' legacy name) for
    ``--extra-model-paths-config``, optionally also loading custom node folders (ComfyUI's utils/extra_config.py)."""
    models_dir = Path(models_dir).resolve()
    found = {p.name for p in models_dir.iterdir() if p.is_dir()} if models_dir.is_dir() else set()
    names = set(MODEL_FOLDERS) | found
    lines = ["vmdiff_models:", f"    base_path: {json.dumps(str(models_dir))}", "    is_default: true"]
    lines += [f"    {name}: {name}" for name in sorted(names)]
    if custom_nodes_dirs:
        lines.append("    custom_nodes: |")
        lines += [f"        {Path(d).resolve()}" for d in custom_nodes_dirs]
    Path(yaml_path).parent.mkdir(parents=True, exist_ok=True)
    Path(yaml_path).write_text("\n".join(lines) + "\n")
    return Path(yaml_path)


def upload_name(path: Path) -> str:
    """The input-folder name of an uploaded image: its content's hash, so two runs on one server whose pictures
    share file names never swap them (equal names mean equal bytes)."""
    path = Path(path)
    return f"vmdiff_upload_{hashlib.sha256(path.read_bytes()).hexdigest()[:20]}{path.suffix.lower() or '.png'}"


class PromptError(RuntimeError):
    """POST /prompt was refused (HTTP 400): ``error`` and ``node_errors`` are ComfyUI's answer."""

    def __init__(self, error, node_errors):
        self.error, self.node_errors = error, node_errors
        msg = error.get("message", error) if isinstance(error, dict) else error
        super().__init__(f"prompt rejected: {msg} {json.dumps(node_errors)[:2000]}")


class ExecutionError(RuntimeError):
    """The prompt was accepted but failed while running; ``entry`` is its /history entry."""

    def __init__(self, entry):
        self.entry = entry
        msgs = [m[1] for m in entry.get("status", {}).get("messages", []) if m[0] == "execution_error"]
        detail = msgs[0] if msgs else entry.get("status")
        if isinstance(detail, dict):
            detail = f"{detail.get('node_type')} (node {detail.get('node_id')}): {detail.get('exception_message')}"
        super().__init__(f"prompt failed: {detail}")


class ComfyClient:
    """HTTP client for one ComfyUI server (only loopback addresses are ever started by this module)."""

    #: seconds an HTTP call may take: a CPU-bound model run holds the server's GIL, so on a loaded 2-core machine a
    #: /history poll has been seen to take over 30 s although nothing was wrong.
    HTTP_TIMEOUT = 120

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.http = requests.Session()

    def get(self, path: str, **kw):
        r = self.http.get(self.url + path, timeout=kw.pop("timeout", self.HTTP_TIMEOUT), **kw)
        r.raise_for_status()
        return r

    def object_info(self, node_class: str | None = None) -> dict:
        return self.get("/object_info" + (f"/{node_class}" if node_class else ""), timeout=120).json()

    def upload_image(self, image, name: str) -> str:
        """Upload a file path or PIL image to the server's input folder; returns the name to give LoadImage."""
        if isinstance(image, (str, Path)):
            data = Path(image).read_bytes()
        else:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            data = buf.getvalue()
        r = self.http.post(self.url + "/upload/image", files={"image": (name, data)},
                           data={"overwrite": "true", "type": "input"}, timeout=self.HTTP_TIMEOUT)
        r.raise_for_status()
        info = r.json()
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def queue(self, prompt: dict) -> str:
        r = self.http.post(self.url + "/prompt", json={"prompt": prompt, "client_id": self.client_id}, timeout=120)
        if r.status_code == 400:
            body = r.json()
            raise PromptError(body.get("error"), body.get("node_errors", {}))
        r.raise_for_status()
        body = r.json()
        if body.get("node_errors"):  # ComfyUI queued the outputs that validated and dropped the rest: take it back
            self.http.post(self.url + "/queue", json={"delete": [body["prompt_id"]]}, timeout=self.HTTP_TIMEOUT)
            raise PromptError("some outputs failed validation", body["node_errors"])
        return body["prompt_id"]

    def _alive(self) -> None:
        """Hook for ComfyServer: raise if the server process died."""

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """Poll /history/<id> until the prompt finished (success or error); returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            status = (entry or {}).get("status") or {}
            if status.get("completed") or status.get("status_str") == "error":
                return entry
            self._alive()
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s")

    def run(self, prompt: dict, timeout: float = 600, check: bool = True) -> dict:
        entry = self.wait(self.queue(prompt), timeout)
        if check and entry["status"].get("status_str") != "success":
            raise ExecutionError(entry)
        return entry

    def interrupt(self) -> None:
        self.http.post(self.url + "/interrupt", timeout=self.HTTP_TIMEOUT).raise_for_status()

    @staticmethod
    def image_refs(entry: dict, types=("output",)) -> list[dict]:
        refs = []
        for node_out in entry.get("outputs", {}).values():
            refs += [im for im in node_out.get("images", []) if im.get("type") in types]
        return refs

    def download_images(self, entry: dict, dest: Path, types=("output",)) -> list[Path]:
        """Fetch the images of a history entry through /view into dest (works with any server)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for ref in self.image_refs(entry, types):
            data = self.get("/view", params={k: ref.get(k, "") for k in ("filename", "subfolder", "type")}).content
            path = dest / ref["filename"]
            path.write_bytes(data)
            paths.append(path)
        return paths


WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
while os.getppid() == parent and running(server):
    time.sleep(0.5)
for sig in (signal.SIGTERM, signal.SIGKILL):
    if not running(server):
        break
    try:
        os.killpg(server, sig)
    except OSError:
        break
    time.sleep(10)
"""


def reap_with_parent(server_pid: int) -> None:
    """Start a watchdog that stops the server (its process group) when this process dies, however it dies
    (SIGKILL, SIGTERM to pytest, a killed Ray actor): the server runs in its own session, so nothing else would stop
    it. Linux (/proc); elsewhere nothing is started."""
    if Path(f"/proc/{server_pid}").exists():
        subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(server_pid)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)


def stop_on_signals() -> None:
    """For a command-line tool that starts a ComfyServer: SIGTERM, SIGHUP and SIGINT (Ctrl-C) end it by an exception
    (SystemExit 128 + signal), so ``with ComfyServer`` stops the server and removes its folder. SIGINT is set
    explicitly: a tool started in the background by a script inherits SIGINT *ignored*, and Python then never raises
    KeyboardInterrupt. Main thread only."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


class ComfyServer(ComfyClient):
    """Launch ``<python> <ComfyUI>/main.py --cpu`` on 127.0.0.1 in a temporary base directory (context manager)."""

    def __init__(self, models_dir: Path | None = None, extra_custom_nodes: list[Path] = (), port: int | None = None,
                 python: str | None = None, comfyui: Path | None = None, startup_timeout: float = 600,
                 extra_args: list[str] = (), frontend: bool = False):
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.models_dir = Path(models_dir) if models_dir else None
        self.extra_custom_nodes = [Path(p) for p in extra_custom_nodes]
        self.python = python or sys.executable
        self.comfyui = Path(comfyui) if comfyui else find_comfyui()
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.frontend = frontend  # True: serve ComfyUI's own frontend (the installed comfyui-frontend-package)
        self.proc: subprocess.Popen | None = None
        self.base: Path | None = None
        self.startup_seconds: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.base / "comfyui.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.base and self.log_path.exists() else ""

    def _prepare_base(self) -> list[str]:
        self.base = Path(tempfile.mkdtemp(prefix="vmdiff-comfy-"))
        for sub in ("input", "output", "temp", "user", "custom_nodes", "empty_frontend"):
            (self.base / sub).mkdir()
        (self.base / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
        for extra in self.extra_custom_nodes:
            (self.base / "custom_nodes" / extra.name).symlink_to(extra.resolve(), target_is_directory=True)
        args = []
        if self.models_dir:
            yaml_path = write_extra_model_paths_yaml(self.models_dir, self.base / "extra_model_paths.yaml")
            args = ["--extra-model-paths-config", str(yaml_path)]
        return args

    def start(self) -> "ComfyServer":
        model_args = self._prepare_base()
        cmd = [self.python, str(self.comfyui / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base),
               *([] if self.frontend else ["--front-end-root", str(self.base / "empty_frontend")]),
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *model_args, *self.extra_args]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",
                   PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.base, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        reap_with_parent(self.proc.pid)  # however this process ends, its server ends too
        deadline = t0 + self.startup_timeout
        while time.monotonic() < deadline:
            self._alive()
            try:
                self.http.get(self.url + "/system_stats", timeout=2).raise_for_status()
                self.startup_seconds = time.monotonic() - t0
                return self
            except requests.RequestException:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.startup_timeout} s; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        self.http.close()

    def cleanup(self) -> None:
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def output_images(self, entry: dict, types=("output",)) -> list[Path]:
        """Paths of the images a history entry reports, under <base>/output (or temp/input for other types)."""
        return [self.base / ref["type"] / ref.get("subfolder", "") / ref["filename"]
                for ref in self.image_refs(entry, types)]

    def __enter__(self) -> "ComfyServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()

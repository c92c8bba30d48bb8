"""The session fixtures every tier may use (loaded by tests/conftest.py as a plugin): real ComfyUI servers (one per
distinct arguments, started once per session and stopped at its end), the real-loader stand-in files, and the object
images uploaded once. Importing this module imports no ComfyUI (the servers are child processes)."""
from pathlib import Path

import pytest

from tests.support.tiny_folders import TEST_NODES
from vmdiff_cli.comfy_server import ComfyServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def comfy_server_factory():
    """``get(models_dir=None, extra_custom_nodes=(), frontend=False, extra_args=())`` → a started ComfyServer, one
    per distinct arguments (frontend=True serves ComfyUI's real frontend)."""
    servers: dict[tuple, ComfyServer] = {}

    def get(models_dir: Path | None = None, extra_custom_nodes=(), frontend: bool = False,
            extra_args=()) -> ComfyServer:
        key = (str(models_dir) if models_dir else None, tuple(str(p) for p in extra_custom_nodes), frontend,
               tuple(extra_args))
        if key not in servers:
            srv = ComfyServer(models_dir, list(extra_custom_nodes), frontend=frontend, extra_args=list(extra_args))
            srv.start()
            print(f"\n[comfy_server] {key} started in {srv.startup_seconds:.1f} s (pid {srv.pid}, {srv.url})")
            servers[key] = srv
        return servers[key]

    yield get
    for srv in servers.values():
        srv.stop()
        srv.cleanup()


@pytest.fixture(scope="session")
def comfy_server(comfy_server_factory) -> ComfyServer:
    """A server with no model folders (the pack and the test-only nodes): enough for workflows of core nodes that
    load no model. The same arguments as test_reliability's cheap server, so the two share one server start."""
    return comfy_server_factory(None, [TEST_NODES])


@pytest.fixture(scope="session")
def real_models_dir() -> Path:
    """The real-loader stand-in files (vmdiff_cli/tiny_models.write_real_loader_models), generated once and cached.

    Generated in a child process with the scorer stand-ins (before any server maps the folder), so the ~2.5 GB it
    takes to build them is returned before any server starts, and ComfyUI never boots in the test process here
    (a frontend test asks for this inside Playwright's running event loop, where ComfyUI's boot cannot run)."""
    from vmdiff_cli.tiny_models import write_real_loader_models_in_child

    return write_real_loader_models_in_child(scorers=True)


@pytest.fixture(scope="session")
def vmdiff_server(comfy_server_factory, real_models_dir) -> ComfyServer:
    """One real ComfyUI server with the pack, the test-only nodes (tests/custom_nodes) and all real-loader
    stand-ins, shared by the server tests. Its LRU cache keeps loaded models and the Redux encodes of the shared
    object images across the tests' different workflows (the CPU stand-ins cost seconds per model call)."""
    return comfy_server_factory(real_models_dir, [TEST_NODES], extra_args=["--cache-lru", "200"])


@pytest.fixture(scope="session")
def object_images(vmdiff_server, tmp_path_factory) -> list[str]:
    """Two synthetic object pictures uploaded once under the shipped workflows' own LoadImage names."""
    from vmdiff_cli.run_workflow import synthetic_objects

    paths = synthetic_objects(tmp_path_factory.mktemp("objects"), size=96)
    return [vmdiff_server.upload_image(p, f"vmdiff_object_{i + 1}.png") for i, p in enumerate(paths)]


@pytest.fixture(scope="session")
def three_object_images(vmdiff_server, object_images, tmp_path_factory) -> list[str]:
    """The shared object pair (its Redux encodes stay in the server's cache) and a third object, a green triangle
    (the three-object graph)."""
    from PIL import Image, ImageDraw

    tree = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(tree).polygon([(48, 8), (88, 88), (8, 88)], fill=(30, 160, 40))
    path = tmp_path_factory.mktemp("inputs") / "object_3.png"
    tree.save(path)
    return [*object_images, vmdiff_server.upload_image(path, "vmdiff_object_3.png")]


@pytest.fixture(scope="session")
def tiny_object_images(comfy_server, tmp_path_factory) -> list[str]:
    """The two synthetic object pictures uploaded once to the cheap server (``comfy_server``), for workflows moved
    onto the test-only tiny loaders (tests/support/tiny_folders.on_tiny_loaders)."""
    from vmdiff_cli.run_workflow import synthetic_objects

    paths = synthetic_objects(tmp_path_factory.mktemp("tiny_objects"), size=96)
    return [comfy_server.upload_image(p, f"vmdiff_tiny_object_{i + 1}.png") for i, p in enumerate(paths)]

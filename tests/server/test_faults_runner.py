"""The folder runner's own mistakes. Bad input folders and broken images are refused in one line
(exit 2) before any server is contacted; records are bound to their files' content and the settings they ran
(a replaced picture or another --set re-runs exactly those pairs); an --out that cannot be written is refused
before any work, and a disk that fills up mid-run (a real small tmpfs where this runs as root, else RLIMIT_FSIZE →
EFBIG) stops the run at the first failed write, says how to resume, leaves no .tmp file, and the resume finishes."""
from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vmdiff_cli.comfy_server import free_port
from vmdiff_cli.folder_runner import FolderRun, RunnerError, find_objects, image_problem, settings_hash
from tests.support.tiny_folders import TEST_NODES, folder_of, picture, tiny_workflow

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
#: as root, permissions are only enforced once these capabilities are dropped (setpriv, util-linux)
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
          "-dac_override,-dac_read_search"]


def runner(*args, cwd=REPO, timeout=600, unprivileged=False, fsize=None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "vmdiff_cli" / "folder_runner.py"), *map(str, args)]
    if unprivileged and ROOT:
        command = NO_DAC + command
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env=env)


def one_line_refusal(done: subprocess.CompletedProcess, *needles: str) -> str:
    """The process refused with exit 2 and exactly one line on stderr containing every needle, no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --- the input folder ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "file", "empty", "one image", "only other files", "unreadable",
                                  "dot without images"])
def test_a_bad_input_folder_is_one_line_and_exit_2_before_any_server(tmp_path, case):
    cwd, arg = REPO, tmp_path / "objs"
    needles = ["input_dir", "nothing was run"]
    if case == "missing":
        needles += ["no such folder", "give the folder"]
    elif case == "file":
        arg = picture(tmp_path / "owl.png", (200, 30, 30))
        needles += ["is a file, not a folder", str(tmp_path)]
    elif case in ("empty", "one image", "only other files"):
        arg.mkdir()
        if case == "one image":
            picture(arg / "owl.png", (200, 30, 30))
        if case == "only other files":
            (arg / "notes.txt").write_text("owl, jar")
            (arg / "sub.png").mkdir()  # a folder named like an image is no image
        needles = ["needs at least two images", f"found {1 if case == 'one image' else 0}", "put the object images"]
    elif case == "unreadable":
        folder_of(arg, ["owl.png", "jar.png"])
        arg.chmod(0)
        needles += ["cannot be read (Permission denied)", "chmod"]
    elif case == "dot without images":
        cwd, arg = tmp_path, "."
        needles = ["needs at least two images", "found 0", str(tmp_path)]
    try:
        done = runner(arg, "--server", unreachable(), "--out", tmp_path / "out", cwd=cwd, timeout=60,
                      unprivileged=case == "unreadable")
    finally:
        if case == "unreadable":
            arg.chmod(0o755)
    one_line_refusal(done, *needles)
    assert not (tmp_path / "out").exists()  # nothing written, no server contacted


def test_dot_is_the_current_folder_and_its_default_out_sits_beside_it(tmp_path):
    """`folder_runner.py .` used to die in Path('.').with_name; now it is the folder it names, and --out defaults to
    <folder>_fused next to it (an unreachable server: the run gets as far as the workers)."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    done = runner(".", "--server", unreachable(), cwd=folder, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "2 images, 2 ordered pairs, 0 done, 2 to run" in done.stdout, done.stdout
    assert (tmp_path / "objs_fused" / "records").is_dir()


# --- the images ------------------------------------------------------------------------------------------------------
def broken_images(folder: Path) -> dict[str, bytes]:
    """Members of 'not an image that decodes': each name → its bytes."""
    good = folder / "owl.png"
    png = good.read_bytes()
    jpeg_path = folder / "_tmp.jpg"
    Image.open(good).convert("RGB").save(jpeg_path, quality=90)
    jpeg = jpeg_path.read_bytes()
    jpeg_path.unlink()
    return {"random.png": os.urandom(3000),
            "truncated.png": png[: len(png) * 2 // 3],
            "truncated.jpg": jpeg[: len(jpeg) // 2],
            "empty.jpg": b"",
            "text.jpg": b"a photo of an owl\n",
            "header_only.png": png[:33],  # signature and IHDR, no pixel data
            "bad_crc.webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + os.urandom(64)}


def test_broken_images_are_refused_by_name_and_a_wrong_extension_is_fine(tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    wrong_ext = folder / "cup.jpg"  # a valid PNG named .jpg: ComfyUI and Pillow read it by content
    picture(tmp_path / "cup.png", (30, 160, 40)).rename(wrong_ext)
    broken = broken_images(folder)
    for name, data in broken.items():
        (folder / name).write_bytes(data)
        assert image_problem(folder / name), name
    assert image_problem(wrong_ext) is None and image_problem(folder / "owl.png") is None
    with pytest.raises(RunnerError, match="not images that decode fully") as info:
        find_objects(folder)
    for name in broken:
        assert f"{name} (" in str(info.value), name
    assert "cup.jpg" not in str(info.value) and "owl.png" not in str(info.value)
    done = runner(folder, "--server", unreachable(), "--out", tmp_path / "out", timeout=60)
    line = one_line_refusal(done, f"{len(broken)} file(s) are not images that decode fully", "move them out",
                            "empty.jpg (an empty file)", "truncated.png (image file is truncated")
    assert "cup.jpg" not in line
    for name in broken:
        (folder / name).unlink()
    assert [o["path"].name for o in find_objects(folder)] == ["cup.jpg", "jar.png", "owl.png"]


# --- records bound to content and settings ---------------------------------------------------------------------------
def fake_result(tag: str) -> dict:
    return {"fields": {"alpha": 0.5, "server": "none", "seconds": 0.0, "prompt_id": tag},
            "images": [(".png", f"image of {tag}".encode())]}


def test_a_record_is_stale_when_its_pictures_settings_or_labels_change(tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl1.png", "jar.png", "cup.png"])
    workflow, out = {"1": {"class_type": "X", "inputs": {}}}, tmp_path / "fused"
    run = FolderRun(find_objects(folder), out, workflow, ["11.seed=1"])
    for i, j in run.pairs:
        run.store(i, j, fake_result(run.pair_name(i, j)))
    assert FolderRun(find_objects(folder), out, workflow, ["11.seed=1"]).missing() == []
    # the same settings in another order of keys are the same settings
    assert settings_hash({"b": 1, "a": 2}, [], None) == settings_hash({"a": 2, "b": 1}, [], {})
    # another --set, another workflow, other overrides (--small): every pair is stale, with the reason
    for other in (FolderRun(find_objects(folder), out, workflow, ["11.seed=2"]),
                  FolderRun(find_objects(folder), out, {**workflow, "2": {}}, ["11.seed=1"]),
                  FolderRun(find_objects(folder), out, workflow, ["11.seed=1"], overrides={"X": {"steps": 2}})):
        assert len(other.missing()) == 6
        assert other.stale_reason(0, 1).startswith("the settings changed")
    # --labels sanitize renames owl1 → "owl": its four pairs are stale
    relabelled = FolderRun(find_objects(folder, "sanitize"), out, workflow, ["11.seed=1"])
    assert sorted(relabelled.missing()) == ["cup__owl1", "jar__owl1", "owl1__cup", "owl1__jar"]
    # jar.png replaced under its name: the four pairs with jar are stale, the others are done
    picture(folder / "jar.png", (250, 250, 0))
    again = FolderRun(find_objects(folder), out, workflow, ["11.seed=1"])
    assert sorted(again.missing()) == ["cup__jar", "jar__cup", "jar__owl1", "owl1__jar"]
    assert again.stale_reason(1, 2) == "jar.png changed since its record"
    i, j = 1, 2  # store the re-run: the new record names what it supersedes
    old = json.loads(again.record_path(i, j).read_text())
    new = again.store(i, j, fake_result("rerun"))
    assert new["supersedes"]["prompt_id"] == old["prompt_id"] and new["inputs_sha256"] != old["inputs_sha256"]
    assert again.done(i, j)
    # a record of an older runner (no content hash) is re-run, not trusted
    legacy = json.loads(again.record_path(0, 1).read_text())
    del legacy["inputs_sha256"]
    again.record_path(0, 1).write_text(json.dumps(legacy))
    assert "no content hash" in again.stale_reason(0, 1)


@pytest.mark.slow
def test_a_replaced_picture_and_another_set_rerun_their_pairs_through_the_server(comfy_server, tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    workflow, out = tiny_workflow(tmp_path / "tiny.json"), tmp_path / "out"
    base = [folder, "--server", comfy_server.url, "--small", "--out", out, "--workflow", workflow]

    def records():
        return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}

    first = runner(*base)
    assert first.returncode == 0 and "2 of 2 pair(s) done" in first.stdout, first.stdout + first.stderr
    again = runner(*base)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout
    before = records()

    picture(folder / "owl.png", (250, 250, 0), size=40)  # another picture under the same name
    replaced = runner(*base)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert "2 ordered pairs, 0 done, 2 to run" in replaced.stdout, replaced.stdout
    assert "owl__jar runs again: owl.png changed since its record" in replaced.stdout, replaced.stdout
    after = records()
    for name in ("owl__jar", "jar__owl"):
        assert after[name]["inputs_sha256"] != before[name]["inputs_sha256"]
        assert after[name]["supersedes"]["prompt_id"] == before[name]["prompt_id"]
        assert after[name]["prompt_id"] != before[name]["prompt_id"]
    with Image.open(out / "images" / after["owl__jar"]["outputs"][0]) as im:
        assert im.size == (32, 32)

    with_set = runner(*base, "--set", "11.seed=7")
    assert with_set.returncode == 0, with_set.stdout + with_set.stderr
    assert "0 done, 2 to run" in with_set.stdout and "the settings changed" in with_set.stdout, with_set.stdout
    seeded = records()
    assert all(r["seed"] == 7 and r["set"] == ["11.seed=7"] for r in seeded.values()), seeded
    same_set = runner(*base, "--set", "11.seed=7")
    assert same_set.returncode == 0 and "nothing to run" in same_set.stdout, same_set.stdout
    assert runner(*base).stdout.count("runs again: the settings changed") == 2  # back to the workflow's seed


# --- writes that cannot succeed --------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int, read_only: bool = False):
    """A real small file system at ``path`` (tmpfs; needs root and mount), or None where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    mounted = ROOT and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "vmdiff_test", str(path)],
                                      capture_output=True).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.parametrize("case", ["read-only file system", "no permission", "under a file", "a file"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, case):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    out, expected = tmp_path / "out", None
    with contextlib.ExitStack() as stack:
        if case == "read-only file system":
            mounted = stack.enter_context(tmpfs(tmp_path / "ro", 64, read_only=True))
            if mounted is not None:
                out, expected = mounted / "fused", "cannot write there (Read-only file system)"
            else:  # no mount here: a folder without write permission is the same refusal
                case = "no permission"
        if case == "no permission":
            (tmp_path / "locked").mkdir()
            (tmp_path / "locked").chmod(0o555)
            out, expected = tmp_path / "locked" / "fused", "cannot write there (Permission denied)"
        if case == "under a file":
            (tmp_path / "a_file").write_text("x")
            out, expected = tmp_path / "a_file" / "fused", "cannot write there (Not a directory)"
        if case == "a file":
            out, expected = tmp_path / "results.txt", "is a file, not a folder"
            out.write_text("the user's")
        done = runner(folder, "--server", unreachable(), "--out", out, timeout=60,
                      unprivileged=case == "no permission")
        one_line_refusal(done, f"--out {out}: {expected}", "--out PATH", "nothing was run")
        assert not out.exists() if case != "a file" else out.read_text() == "the user's"


def test_stale_tmp_files_of_a_dead_run_are_removed_on_resume(tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    out = tmp_path / "fused"
    (out / "images").mkdir(parents=True)
    (out / "records").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [out / "images" / f".owl__jar_0.png.{dead_pid}.140.tmp",
             out / "records" / f".owl__jar.json.{dead_pid}.1.tmp",
             out / f".results.json.{dead_pid}.7.tmp"]
    for p in stale:
        p.write_bytes(b"")
    living = out / "images" / f".jar__owl_0.png.{os.getppid()}.1.tmp"  # a running process's file: not ours to remove
    living.write_bytes(b"half")
    logged = []
    FolderRun(find_objects(folder), out, {}, log=logged.append)
    assert not any(p.exists() for p in stale) and living.exists()
    assert "removed 3 unfinished file(s) of an earlier run" in logged[0]


def tmp_files(out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in out.rglob("*.tmp")]


@pytest.mark.slow
def test_a_full_disk_stops_the_run_cleanly_and_the_resume_finishes(comfy_server, tmp_path):
    """A real full disk: --out on a 16 KiB tmpfs (4 pages) fills after the first pair or two; where tmpfs cannot be
    mounted, RLIMIT_FSIZE on the runner gives EFBIG at its first image. Either way: exit 1, one STOPPED line naming
    the file, the error and how to resume; no traceback; no .tmp file; no pair run after the failure; then a
    resume with room runs only the missing pairs and keeps the finished ones."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png", "cup.png"])
    workflow = tiny_workflow(tmp_path / "tiny.json")
    with tmpfs(tmp_path / "disk", 16) as disk:
        out = (disk or tmp_path) / "fused"
        command = [folder, "--server", comfy_server.url, "--small", "--out", out, "--workflow", workflow]
        done = runner(*command, fsize=None if disk else 1500)
        log = done.stdout + done.stderr
        error = "No space left on device (ENOSPC)" if disk else "File too large (EFBIG)"
        print(f"\n[full disk] {'tmpfs 16 KiB' if disk else 'RLIMIT_FSIZE 1500 B'}: {log[-1500:]}")
        assert done.returncode == 1 and "Traceback" not in log, log
        assert "STOPPED: writing " in done.stdout and error in done.stdout, log
        assert "run the same command again" in done.stdout, log
        assert tmp_files(out) == []
        records = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
        assert len(records) < 6
        # no pair was sent after the failed write: the server saw at most one more prompt than records were made
        missing_line = [line for line in done.stdout.splitlines() if "pair(s) done," in line][0]
        assert f"{len(records)} of 6 pair(s) done, {6 - len(records)} missing" in missing_line, missing_line
        assert not re.search(r"\] \S+ failed: ", done.stdout), log  # a stop, not pairs failing one by one
        assert "not run (the run stopped)" in done.stdout, log
        if disk:
            subprocess.run(["mount", "-o", "remount,size=4096k", str(disk)], check=True)
        resumed = runner(*command)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"6 ordered pairs, {len(records)} done, {6 - len(records)} to run" in resumed.stdout, resumed.stdout
        assert all((out / "records" / name).read_bytes() == data for name, data in records.items())
        assert len(list((out / "records").glob("*.json"))) == 6 and tmp_files(out) == []
        assert len(json.loads((out / "results.json").read_text())["pairs"]) == 6


@pytest.mark.slow
def test_a_full_disk_stops_the_ray_mode_cleanly(tmp_path):
    """The same on Ray (one actor with its own server): the driver's first failed write stops sending pairs, the
    actor and its server are stopped, the message says how to resume. Without a mount (not root), records/ without
    write permission is the failing write (EACCES) instead of a full disk."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png", "cup.png"])
    workflow = tiny_workflow(tmp_path / "tiny.json")
    with tmpfs(tmp_path / "disk", 16) as disk:
        out = (disk or tmp_path) / "fused"
        if not disk:
            (out / "records").mkdir(parents=True)
            (out / "records").chmod(0o555)
        done = runner(folder, "--ray", "--actors", "1", "--small", "--custom-nodes", TEST_NODES, "--workflow",
                      workflow, "--out", out, timeout=900)
        log = done.stdout + done.stderr
        print(f"\n[full disk, Ray] {log[-1500:]}")
        assert done.returncode == 1 and "Traceback" not in log, log
        assert "STOPPED: writing " in done.stdout and "run the same command again" in done.stdout, log
        assert ("No space left on device" if disk else "Permission denied") in done.stdout, log
        assert tmp_files(out) == [] and len(list((out / "records").glob("*.json"))) < 6


STORE_IN_CHILD = """
import json, sys
from pathlib import Path
from vmdiff_cli.folder_runner import FolderRun, WriteStopped, find_objects
run = FolderRun(find_objects(Path(sys.argv[1])), Path(sys.argv[2]), {}, log=lambda *a: None)
stored = 0
for i, j in run.pairs:
    try:
        run.store(i, j, {"fields": {"server": "none", "seconds": 0.0, "prompt_id": "p"},
                         "images": [(".png", bytes(int(sys.argv[3])))]})
        stored += 1
    except WriteStopped as error:
        print(json.dumps({"stored": stored, "stopped": run.stopped, "error": str(error)}))
        break
else:
    print(json.dumps({"stored": stored, "stopped": run.stopped}))
"""


@pytest.mark.parametrize("case", ["file too large (RLIMIT_FSIZE)", "records/ without write permission"])
def test_a_write_that_cannot_succeed_stops_at_once_without_leaving_tmp_files(tmp_path, case):
    """The members a full disk shares its handling with, on every machine (root or not): EFBIG from RLIMIT_FSIZE,
    EACCES from a folder without write permission. The first failing write stops the run, names the file and the
    error, and leaves no .tmp file."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png", "cup.png"])
    out = tmp_path / "fused"
    command = [sys.executable, "-c", STORE_IN_CHILD, str(folder), str(out)]
    if case.startswith("file too large"):
        size, limit, expected = 5000, 4096, "File too large (EFBIG)"
        done = subprocess.run(command + [str(size)], capture_output=True, text=True, cwd=REPO, timeout=120,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    else:
        (out / "records").mkdir(parents=True)
        (out / "records").chmod(0o555)
        expected = "Permission denied (EACCES)"
        done = subprocess.run((NO_DAC if ROOT else []) + command + ["100"], capture_output=True, text=True,
                              cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stored"] == 0 and expected in result["stopped"], result
    assert tmp_files(out) == []

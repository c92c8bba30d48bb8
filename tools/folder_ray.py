"""The folder runner on Ray (``folder_runner.py --ray [ADDRESS]``): one actor per GPU (per CPU slot where there is
none) owns a ComfyUI server on its node; the ordered pairs are dispatched to free actors, both orders of a pair to
the same actor one after the other (its cache keeps both Redux encodes). The driver writes every image and record
(the actors return them), so the output folder lives where the driver runs; nothing on shared storage is needed.

Faults: an actor whose server died restarts it and reports the pair failed; an actor that died is restarted by Ray
(its watchdog stops the orphaned server); either way the pair goes back to the queue and runs on any actor, up to
``retries`` more times. Every pair ends with exactly one record (the driver stores each pair once), or is reported
missing with its last error. The first write of the driver that cannot succeed (disk full, read-only --out) stops
the run: no more pairs are sent, the actors and their servers are stopped, and the runner says how to resume.
Ray is optional: not in requirements.txt; ``require_ray`` names the package.
"""
from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.comfy_server import ComfyServer  # noqa: E402
from tools.folder_runner import FolderRun, RunnerError, fuse_pair, prepare_workflow  # noqa: E402


def require_ray():
    try:
        import ray
    except ImportError:
        raise RunnerError("--ray needs the optional package 'ray' (pip install \"ray>=2.9\" in the Python that runs "
                          "ComfyUI; it is not in requirements.txt); or drop --ray to run on one server") from None
    return ray


class PairWorker:
    """A Ray actor's state: one ComfyUI server on this node and the workflow prepared for it."""

    def __init__(self, models_dir: Optional[str], custom_nodes: list, server_args: list, workflow: dict,
                 workflow_name: str, sets: list, overrides: Optional[dict], timeout: float):
        self.config = dict(models_dir=models_dir, custom_nodes=custom_nodes, server_args=server_args)
        self.workflow, self.workflow_name, self.sets, self.overrides = workflow, workflow_name, sets, overrides
        self.timeout, self.server, self.server_starts = timeout, None, 0
        self._start_server()

    def _start_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.cleanup()
        c = self.config
        self.server = ComfyServer(c["models_dir"], [Path(p) for p in c["custom_nodes"]],
                                  extra_args=c["server_args"]).start()
        self.server_starts += 1
        self.prepared = prepare_workflow(self.workflow, self.server.object_info(), self.sets, self.overrides,
                                         self.workflow_name)
        self.uploaded: dict = {}

    def info(self) -> dict:
        import socket

        return {"pid": os.getpid(), "server_pid": self.server.pid, "url": self.server.url, "node": socket.gethostname(),
                "server_starts": self.server_starts}

    def _healthy(self) -> bool:
        """The server process runs and answers (a killed server may close its socket before its process ends)."""
        if self.server.proc.poll() is not None:
            return False
        try:
            self.server.get("/system_stats", timeout=10)
            return True
        except Exception:  # noqa: BLE001 — any failure to answer means: replace it
            return False

    def fuse(self, first: dict, second: dict) -> dict:
        """{"result": fuse_pair's result} or {"error": why}; a dead server is replaced before the answer."""
        try:
            if not self._healthy():
                self._start_server()
            return {"result": fuse_pair(self.server, self.prepared, first, second, self.uploaded, self.timeout)}
        except Exception as error:  # noqa: BLE001 — returned, so the driver decides about the retry
            died = not self._healthy()
            if died:
                self._start_server()
            return {"error": f"{type(error).__name__}: {str(error)[:500]}", "server_died": died}

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.cleanup()


def ray_env() -> dict:
    """The actors import this repository (tools/) and find ComfyUI as the driver does: same paths on every node."""
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if os.environ.get("COMFYUI_PATH"):
        env["COMFYUI_PATH"] = os.environ["COMFYUI_PATH"]
    return {"env_vars": env}


def run_on_ray(run: FolderRun, address: Optional[str] = None, actors: int = 0, models_dir: Optional[Path] = None,
               custom_nodes: list = (), server_args: list = (), retries: int = 2,
               after_store: Optional[Callable[[int, list, list, int], None]] = None) -> dict:
    """Fuse the pairs of ``run`` that are not done on Ray actors; returns the summary (also in results.json).

    ``address``: a running cluster ("auto", "ray://head:10001") or None for a local instance (stopped at the end;
    an instance already started in this process is used as it is). ``actors``: 0 → one per GPU, or per CPU where
    there is no GPU. ``after_store(pairs stored, actor handles, their first info(), index of the actor that made the
    pair)`` is called after each stored pair (the fault tests)."""
    ray = require_ray()
    from tqdm import tqdm

    own = not ray.is_initialized()
    if own:
        ray.init(address=address, runtime_env=ray_env(), include_dashboard=False, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = actors or gpus or max(1, int(resources.get("CPU", 1)))
        options = dict(num_gpus=1, num_cpus=0) if gpus else dict(num_cpus=1)
        Worker = ray.remote(max_restarts=-1, max_task_retries=0, **options)(PairWorker)
        handles = [Worker.remote(str(models_dir) if models_dir else None, [str(p) for p in custom_nodes],
                                 list(server_args), run.workflow, run.workflow_name or "the workflow", run.sets,
                                 run.overrides, run.timeout) for _ in range(count)]
        names = [f"actor {k + 1}" for k in range(count)]
        infos = ray.get([h.info.remote() for h in handles])  # waits for every actor's server to answer
        for name, info in zip(names, infos):
            run.log(f"[folder_runner] {name}: node {info['node']}, pid {info['pid']}, ComfyUI pid {info['server_pid']}")
        queue = collections.deque(run.todo())
        total, remaining = len(run.pairs), sum(len(u) for u in queue)
        run.log(f"[folder_runner] {len(run.objects)} images, {total} ordered pairs, {total - remaining} done, "
                f"{remaining} to run on {count} Ray actor(s) ({'1 GPU' if gpus else '1 CPU'} each)")
        bar = tqdm(total=total, initial=total - remaining, unit="pair", file=sys.stderr, dynamic_ncols=True)
        inflight: dict = {}  # object ref → (actor index, pair)
        probes: dict = {}  # object ref of info() → index of an actor that died: no work for it until it answers
        busy = [0] * count
        attempts: collections.Counter = collections.Counter()
        per_actor = [{"pairs": 0, "seconds": 0.0, "retried": 0, "failed": 0} for _ in range(count)]
        stored, t0 = 0, time.monotonic()
        while (queue or inflight) and run.stopped is None:
            down = set(probes.values())
            for k in range(count):  # a free actor takes the next unit: both orders of a pair in a row
                if not busy[k] and k not in down and queue:
                    for i, j in queue.popleft():
                        ref = handles[k].fuse.remote(run.objects[i], run.objects[j])
                        inflight[ref] = (k, (i, j))
                        busy[k] += 1
            ready, _ = ray.wait(list(inflight) + list(probes), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in probes:  # a restarted actor answered (or is still down: ask again)
                    k = probes.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayError:
                        time.sleep(0.5)
                        probes[handles[k].info.remote()] = k
                    continue
                k, (i, j) = inflight.pop(ref)
                busy[k] -= 1
                try:
                    answer = ray.get(ref)
                except ray.exceptions.RayError as error:  # the actor died (Ray restarts it)
                    answer = {"error": f"{names[k]} died: {type(error).__name__}: {str(error).splitlines()[0]}"}
                    if k not in probes.values():
                        probes[handles[k].info.remote()] = k
                if "result" in answer:
                    answer["result"]["fields"]["worker"] = names[k]
                    try:
                        run.store(i, j, answer["result"])
                    except Exception:  # noqa: BLE001 — WriteStopped of the runner's module (it may be __main__)
                        if run.stopped is None:
                            raise
                        break  # nothing more can be stored: stop sending pairs (report() says why)
                    per_actor[k]["pairs"] += 1
                    per_actor[k]["seconds"] += answer["result"]["fields"]["seconds"]
                    stored += 1
                    bar.update(1)
                    elapsed = (time.monotonic() - t0) / 60
                    bar.set_postfix_str(" ".join(f"{n}: {a['pairs'] / elapsed:.1f}/min"
                                                 for n, a in zip(names, per_actor)))
                    if after_store:
                        after_store(stored, handles, infos, k)
                    continue
                attempts[(i, j)] += 1
                if attempts[(i, j)] <= retries:
                    per_actor[k]["retried"] += 1
                    run.log(f"[folder_runner] retrying {run.pair_name(i, j)} ({attempts[(i, j)]}/{retries}) "
                            f"after: {answer['error']}")
                    queue.appendleft([(i, j)])
                else:
                    per_actor[k]["failed"] += 1
                    run.fail(i, j, f"on {names[k]} after {retries} retries: {answer['error']}")
                    bar.update(1)
        bar.close()
        for handle in handles:
            try:
                ray.get(handle.shutdown.remote(), timeout=60)
            except Exception:  # noqa: BLE001 — a dead actor has no server left to stop (its watchdog did)
                pass
            ray.kill(handle)
        workers = {n: {**a, "mean_seconds": round(a["seconds"] / a["pairs"], 2) if a["pairs"] else None}
                   for n, a in zip(names, per_actor)}
        retried = sum(min(n, retries) for n in attempts.values())  # failed runs that were run again
        extra = {"backend": "ray", "actors": count, "retried": retried, "workers": workers,
                 "wall_seconds": round(time.monotonic() - t0, 1)}
        try:
            return run.write_results(extra=dict(extra))
        except Exception:  # noqa: BLE001 — WriteStopped (see above): the summary without results.json
            if run.stopped is None:
                raise
            return {**run.summary(run.records()), **extra}
    finally:
        if own:
            ray.shutdown()

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

from vmdiff_cli.comfy_server import ComfyServer

REPO_ROOT = Path(__file__).resolve().parents[1]


def require_ray():
    try:
        import ray
    except ImportError:
        raise SystemExit("[folder_runner] --ray needs the optional package 'ray' (pip install \"ray>=2.9\" in the "
                         "Python that runs ComfyUI; it is not in requirements.txt); or drop --ray to run on one "
                         "server") from None
    return ray


class PairWorker:
    """A Ray actor's state: one ComfyUI server on this node and the workflow prepared for it. ``prepare`` and
    ``fuse`` are the folder run's ``prepare_workflow`` and ``fuse_pair`` (folder_runner.FolderRun)."""

    def __init__(self, models_dir: Optional[str], custom_nodes: list, server_args: list, workflow: dict,
                 workflow_name: str, sets: list, overrides: Optional[dict], timeout: float, prepare: Callable,
                 fuse: Callable):
        self.config = dict(models_dir=models_dir, custom_nodes=custom_nodes, server_args=server_args)
        self.workflow, self.workflow_name, self.sets, self.overrides = workflow, workflow_name, sets, overrides
        self.timeout, self.server, self.server_starts = timeout, None, 0
        self.prepare, self.fuse_pair = prepare, fuse
        self._start_server()

    def _start_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.cleanup()
        c = self.config
        self.server = ComfyServer(c["models_dir"], [Path(p) for p in c["custom_nodes"]],
                                  extra_args=c["server_args"]).start()
        self.server_starts += 1
        self.prepared = self.prepare(self.workflow, self.server.object_info(), self.sets, self.overrides,
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
            return {"result": self.fuse_pair(self.server, self.prepared, first, second, self.uploaded, self.timeout)}
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
    """The actors import this repository (vmdiff_cli/) and find ComfyUI as the driver does: same paths on every node."""
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if os.environ.get("COMFYUI_PATH"):
        env["COMFYUI_PATH"] = os.environ["COMFYUI_PATH"]
    return {"env_vars": env}


def start_actors(ray, run, actors: int, models_dir: Optional[Path], custom_nodes: list,
                 server_args: list) -> tuple[list, list[dict], int]:
    """Start the actors (``actors``, or one per GPU, or per CPU where there is no GPU) and wait until every one's
    server answers; returns (handles, their info(), GPUs in the cluster)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = actors or gpus or max(1, int(resources.get("CPU", 1)))
    options = dict(num_gpus=1, num_cpus=0) if gpus else dict(num_cpus=1)
    Worker = ray.remote(max_restarts=-1, max_task_retries=0, **options)(PairWorker)
    handles = [Worker.remote(str(models_dir) if models_dir else None, [str(p) for p in custom_nodes],
                             list(server_args), run.workflow, run.workflow_name or "the workflow", run.sets,
                             run.overrides, run.timeout, type(run).prepare_workflow, type(run).fuse_pair)
               for _ in range(count)]
    infos = ray.get([h.info.remote() for h in handles])  # waits for every actor's server to answer
    for k, info in enumerate(infos):
        run.log(f"[folder_runner] actor {k + 1}: node {info['node']}, pid {info['pid']}, "
                f"ComfyUI pid {info['server_pid']}")
    return handles, infos, gpus


def stop_actors(ray, handles: list) -> None:
    """Stop each actor's server, then the actor."""
    for handle in handles:
        try:
            ray.get(handle.shutdown.remote(), timeout=60)
        except Exception:  # noqa: BLE001 — a dead actor has no server left to stop (its watchdog did)
            pass
        ray.kill(handle)


class RayDispatch:
    """The driver's side of a Ray run: hands the pairs to free actors (both orders of a pair to one actor in a row),
    stores each answer, and puts a failed pair back in the queue up to ``retries`` more times."""

    def __init__(self, ray, run, handles: list, infos: list[dict], retries: int,
                 after_store: Optional[Callable[[int, list, list, int], None]] = None):
        from tqdm import tqdm

        self.ray, self.run, self.handles, self.infos, self.retries = ray, run, handles, infos, retries
        self.after_store = after_store
        self.names = [f"actor {k + 1}" for k in range(len(handles))]
        self.queue = collections.deque(run.todo())
        total, remaining = len(run.pairs), sum(len(u) for u in self.queue)
        self.remaining = remaining
        self.bar = tqdm(total=total, initial=total - remaining, unit="pair", file=sys.stderr, dynamic_ncols=True)
        self.inflight: dict = {}  # object ref → (actor index, pair)
        self.probes: dict = {}  # object ref of info() → index of an actor that died: no work for it until it answers
        self.busy = [0] * len(handles)
        self.attempts: collections.Counter = collections.Counter()
        self.per_actor = [{"pairs": 0, "seconds": 0.0, "retried": 0, "failed": 0} for _ in handles]
        self.stored, self.t0 = 0, time.monotonic()

    def run_all(self) -> None:
        """Until every pair is stored or failed for good."""
        while (self.queue or self.inflight) and self.run.stopped is None:
            self.submit()
            ready, _ = self.ray.wait(list(self.inflight) + list(self.probes), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self.probes:
                    self.on_probe(ref)
                else:
                    self.on_answer(ref)
        self.bar.close()

    def submit(self) -> None:
        """A free actor (not known dead) takes the next unit: both orders of a pair in a row."""
        down = set(self.probes.values())
        for k, handle in enumerate(self.handles):
            if not self.busy[k] and k not in down and self.queue:
                for i, j in self.queue.popleft():
                    self.inflight[handle.fuse.remote(self.run.objects[i], self.run.objects[j])] = (k, (i, j))
                    self.busy[k] += 1

    def on_probe(self, ref) -> None:
        """A restarted actor answered (or is still down: ask again)."""
        k = self.probes.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError:
            time.sleep(0.5)
            self.probes[self.handles[k].info.remote()] = k

    def on_answer(self, ref) -> None:
        k, (i, j) = self.inflight.pop(ref)
        self.busy[k] -= 1
        try:
            answer = self.ray.get(ref)
        except self.ray.exceptions.RayError as error:  # the actor died (Ray restarts it)
            answer = {"error": f"{self.names[k]} died: {type(error).__name__}: {str(error).splitlines()[0]}"}
            if k not in self.probes.values():
                self.probes[self.handles[k].info.remote()] = k
        if "result" in answer:
            self.store(k, i, j, answer["result"])
        else:
            self.retry_or_fail(k, i, j, answer["error"])

    def store(self, k: int, i: int, j: int, result: dict) -> None:
        result["fields"]["worker"] = self.names[k]
        try:
            self.run.store(i, j, result)
        except Exception:  # noqa: BLE001 — WriteStopped of the runner's module (it may be __main__)
            if self.run.stopped is None:
                raise
            return  # nothing more can be stored: run_all stops sending pairs (report() says why)
        stats = self.per_actor[k]
        stats["pairs"] += 1
        stats["seconds"] += result["fields"]["seconds"]
        self.stored += 1
        self.bar.update(1)
        minutes = (time.monotonic() - self.t0) / 60
        self.bar.set_postfix_str(" ".join(f"{n}: {a['pairs'] / minutes:.1f}/min"
                                          for n, a in zip(self.names, self.per_actor)))
        if self.after_store:
            self.after_store(self.stored, self.handles, self.infos, k)

    def retry_or_fail(self, k: int, i: int, j: int, error: str) -> None:
        self.attempts[(i, j)] += 1
        if self.attempts[(i, j)] <= self.retries:
            self.per_actor[k]["retried"] += 1
            self.run.log(f"[folder_runner] retrying {self.run.pair_name(i, j)} ({self.attempts[(i, j)]}/"
                         f"{self.retries}) after: {error}")
            self.queue.appendleft([(i, j)])
        else:
            self.per_actor[k]["failed"] += 1
            self.run.fail(i, j, f"on {self.names[k]} after {self.retries} retries: {error}")
            self.bar.update(1)

    def summary(self) -> dict:
        """What results.json adds for a Ray run."""
        workers = {n: {**a, "mean_seconds": round(a["seconds"] / a["pairs"], 2) if a["pairs"] else None}
                   for n, a in zip(self.names, self.per_actor)}
        retried = sum(min(n, self.retries) for n in self.attempts.values())  # failed runs that were run again
        return {"backend": "ray", "actors": len(self.handles), "retried": retried, "workers": workers,
                "wall_seconds": round(time.monotonic() - self.t0, 1)}


def run_on_ray(run, address: Optional[str] = None, actors: int = 0, models_dir: Optional[Path] = None,
               custom_nodes: list = (), server_args: list = (), retries: int = 2,
               after_store: Optional[Callable[[int, list, list, int], None]] = None) -> dict:
    """Fuse the pairs of ``run`` (a folder_runner.FolderRun) that are not done on Ray actors; returns the summary
    (also in results.json).

    ``address``: a running cluster ("auto", "ray://head:10001") or None for a local instance (stopped at the end;
    an instance already started in this process is used as it is). ``actors``: 0 → one per GPU, or per CPU where
    there is no GPU. ``after_store(pairs stored, actor handles, their first info(), index of the actor that made the
    pair)`` is called after each stored pair (the fault tests)."""
    ray = require_ray()
    own = not ray.is_initialized()
    if own:
        ray.init(address=address, runtime_env=ray_env(), include_dashboard=False, log_to_driver=False)
    try:
        handles, infos, gpus = start_actors(ray, run, actors, models_dir, custom_nodes, server_args)
        dispatch = RayDispatch(ray, run, handles, infos, retries, after_store)
        total = len(run.pairs)
        run.log(f"[folder_runner] {len(run.objects)} images, {total} ordered pairs, {total - dispatch.remaining} "
                f"done, {dispatch.remaining} to run on {len(handles)} Ray actor(s) ({'1 GPU' if gpus else '1 CPU'} "
                f"each)")
        dispatch.run_all()
        stop_actors(ray, handles)
        extra = dispatch.summary()
        try:
            return run.write_results(extra=dict(extra))
        except Exception:  # noqa: BLE001 — WriteStopped (see above): the summary without results.json
            if run.stopped is None:
                raise
            return {**run.summary(run.records()), **extra}
    finally:
        if own:
            ray.shutdown()

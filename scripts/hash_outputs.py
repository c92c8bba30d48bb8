"""Maintainers' check that a refactor changed no result: one sha256 per fixed-seed stage output.

    .venv/bin/python -m scripts.hash_outputs > after.txt && diff before.txt after.txt

Runs the VMDiff nodes in-process (their ``execute``, as tests/nodes/test_nodes_inprocess.py calls them) on the tiny
random-weight stand-ins of vmdiff_cli/tiny_models.py, on fixed seeds, and prints ``name sha256`` per output tensor or
value: Blending Noise (both inversions × bf16_state off/on, and text_and_redux context), Mixing Denoise (the three
mix rules, bf16_state, a part-level mask), Random Noise, Mix Tokens N (slerp/lerp, 2 and 3 sets), Auto-Tune
(candidates_per_batch 1 and 3 × search_steps 0 and 4, with a scorer that scores the decoded pixels) and MagicMix on
the SD1.5 and Flux stand-ins (image and prompt layouts). The hash covers dtype, shape and bytes, so any change of a
single bit shows. CPU only, a minute or two.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time

import torch  # noqa: E402

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack  # noqa: E402

boot_comfy_inprocess()
pack = load_pack()
from vmdiff_cli import tiny_models  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # one thread: summation order (and so every bit) independent of the machine's cores


def node(name):
    """The node class as ComfyUI registers it (the pack's NODES, after any wrapping)."""
    found = [n for n in pack.NODES if n.__name__ == name] if hasattr(pack, "NODES") else []
    if found:
        return found[0]
    from vmdiff_pack import nodes as pack_nodes

    return next(n for n in pack_nodes.NODES if n.__name__ == name)


def digest(value) -> str:
    h = hashlib.sha256()
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


LINES: list[str] = []


def emit(name: str, value) -> None:
    line = f"{name} {digest(value)}"
    LINES.append(line)
    print(line, flush=True)


class PixelScorer:
    """A deterministic scorer of the decoded images (the search's branches follow the pixels): S = 2·mean + 1,
    under the 2.4 threshold, so the β stage runs too."""

    def score(self, images):
        return [{"score": float(2 * im.double().mean() + 1), "D1": 0.5, "D2": 0.4, "T1": 0.3, "T2": 0.3,
                 "n1": 0.5, "n2": 0.5} for im in images]


def image(seed, h=40, w=40, c=3):
    return torch.rand(1, h, w, c, generator=torch.Generator().manual_seed(seed))


def main() -> int:
    start = time.time()
    flux, vae, cond = tiny_models.tiny_flux(seed=0), tiny_models.tiny_vae(seed=0), tiny_models.tiny_flux_conditioning(0)
    clip_vision, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    redux = node("VMDiffReduxEncode")
    z = [redux.execute(clip_vision, style, image(s)).result[0] for s in (1, 2, 3)]
    emit("redux_encode.z1", z[0].tokens)
    emit("redux_encode.z2", z[1].tokens)
    size = dict(width=32, height=32)

    blending, mixing = node("VMDiffBlendingNoise"), node("VMDiffMixingDenoise")
    eps_b = {}
    for inversion in ("lagged", "exact-euler"):
        for bf16 in (False, True):
            out = blending.execute(flux, z[0], z[1], cond, seed=42, **size, steps=8, t_den_step=4, beta_1=1.0,
                                   beta_2=1.3, inversion=inversion, bf16_state=bf16).result
            key = f"{inversion}.bf16_{bf16}"
            eps_b[key] = out[0]
            emit(f"blending_noise.{key}.eps_b", out[0]["samples"])
            emit(f"blending_noise.{key}.preview", out[2]["samples"])
            emit(f"blending_noise.{key}.noise", out[1].generate_noise({"samples": torch.zeros_like(out[0]["samples"])}))
    text_cond = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=5)
    out = blending.execute(flux, z[0], z[1], text_cond, seed=3, **size, steps=6, t_den_step=2,
                           context="text_and_redux").result
    emit("blending_noise.text_and_redux.eps_b", out[0]["samples"])

    base = eps_b["lagged.bf16_False"]
    for rule in ("official", "slerp", "lerp"):
        out = mixing.execute(flux, base, z[0], z[1], cond, alpha=0.37, guidance=4.0, steps=8, mix_rule=rule).result
        emit(f"mixing_denoise.{rule}.latent", out[0]["samples"])
    out = mixing.execute(flux, eps_b["lagged.bf16_True"], z[0], z[1], cond, alpha=0.5, steps=8, bf16_state=True).result
    emit("mixing_denoise.bf16_True.latent", out[0]["samples"])
    mask = torch.zeros(1, 32, 32)
    mask[:, :, 16:] = 1.0
    out = mixing.execute(flux, base, z[0], z[1], cond, alpha=0.3, alpha_masked=0.8, steps=8, mask=mask).result
    emit("mixing_denoise.mask.latent", out[0]["samples"])
    latent = out[0]["samples"]
    emit("vae.decode.mask", vae.decode(latent))

    random_noise = node("VMDiffRandomNoise")
    eps = random_noise.execute(seed=7, **size).result[0]
    emit("random_noise.seed7", eps["samples"])
    emit("random_noise.seed8", random_noise.execute(seed=8, width=48, height=32).result[0]["samples"])
    out = mixing.execute(flux, eps, z[0], z[1], cond, alpha=0.5, steps=6).result
    emit("mixing_denoise.random_eps.latent", out[0]["samples"])

    mix_n = node("VMDiffMixTokensN")
    for rule in ("slerp", "lerp"):
        two = mix_n.execute(z[0], z[1], weight_1=0.7, weight_2=0.3, mix_rule=rule).result
        three = mix_n.execute(z[0], z[1], z[2], weight_1=1.0, weight_2=2.0, weight_3=0.5, mix_rule=rule).result
        emit(f"mix_tokens_n.{rule}.2.tokens", two[0].tokens)
        emit(f"mix_tokens_n.{rule}.2.concat", two[1].tokens)
        emit(f"mix_tokens_n.{rule}.3.tokens", three[0].tokens)
        emit(f"mix_tokens_n.{rule}.3.concat", three[1].tokens)
    three = mix_n.execute(z[0], z[1], z[2], mix_rule="slerp").result
    out = mixing.execute(flux, eps, three[0], None, cond, steps=6).result
    emit("mixing_denoise.mix_tokens_n3.latent", out[0]["samples"])

    auto_tune = node("VMDiffAutoTune")
    for batch in (1, 3):
        for search_steps in (0, 4):
            res = auto_tune.execute(flux, z[0], z[1], cond, vae, PixelScorer(), seed=7, width=32, height=32, steps=6,
                                    t_den_step=2, search_steps=search_steps, candidates_per_batch=batch).result
            img, lat, alpha, b1, b2, seed, score, params, log = res[:9]
            key = f"auto_tune.batch{batch}.search{search_steps}"
            emit(f"{key}.image", img)
            emit(f"{key}.latent", lat["samples"])
            emit(f"{key}.choice", [alpha, b1, b2, seed, score])
            log = json.loads(log)
            print(f"# {key}: stages {sorted({c.get('stage') for c in log['candidates']})}, "
                  f"{len(log['candidates'])} candidates", file=sys.stderr)
            emit(f"{key}.candidates", [[c.get("stage"), c.get("alpha"), c.get("beta_1"), c.get("beta_2"),
                                        c.get("score")] for c in log["candidates"]])

    magicmix = node("VMDiffMagicMix")
    sd15 = {"model": tiny_models.tiny_sd15(seed=0), "vae": tiny_models.tiny_vae(seed=0, latent_channels=4),
            "content": tiny_models.tiny_sd15_conditioning(seed=1), "layout": tiny_models.tiny_sd15_conditioning(seed=2),
            "negative": tiny_models.tiny_sd15_conditioning(seed=3), "cfg": 5.0, "scheduler": "normal"}
    fluxf = {"model": flux, "vae": vae, "content": tiny_models.tiny_flux_conditioning(seed=1, text_tokens=4),
             "layout": tiny_models.tiny_flux_conditioning(seed=2, text_tokens=4), "negative": None, "cfg": 1.0,
             "scheduler": "simple"}
    for family, f in (("sd15", sd15), ("flux", fluxf)):
        common = dict(seed=7, steps=10, scheduler=f["scheduler"], k_max=0.6, k_min=0.3, nu=0.5, cfg=f["cfg"],
                      negative=f["negative"])
        out = magicmix.execute(f["model"], f["content"], layout_image=image(0, 64, 48), vae=f["vae"], **common)
        emit(f"magicmix.{family}.image_layout", out.result[0]["samples"])
        out = magicmix.execute(f["model"], f["content"], layout_conditioning=f["layout"], width=48, height=64,
                               **common)
        emit(f"magicmix.{family}.prompt_layout", out.result[0]["samples"])
    print(f"# {len(LINES)} outputs in {time.time() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    with torch.inference_mode():  # as ComfyUI's executor runs a node
        sys.exit(main())

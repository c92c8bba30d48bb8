"""VMDiff Auto-Tune in-process on the tiny stand-ins, with scorers whose outcomes are forced."""
import json

import numpy as np
import pytest
import torch
from PIL import Image



from vmdiff_pack.nodes.auto_tune import VMDiffAutoTune
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.vmdiff_comfy.stages.provenance import upstream_model_files
from tests.custom_nodes.vmdiff_test_nodes.scorers import ForcedScorer
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.nodes.save_image import VMDiffSaveImage

STAGE = dict(width=32, height=32, steps=6, t_den_step=2)


class ForwardCounter:
    def __init__(self, model):
        self.model, self.calls = model.clone(), 0
        self.model.set_model_unet_function_wrapper(self)

    def __call__(self, apply_model, args):
        self.calls += 1
        return apply_model(args["input"], args["timestep"], **args["c"])


@pytest.fixture(scope="module")
def setup(stand_ins):
    clip_vision, style = stand_ins["clip_vision"], stand_ins["style"]
    imgs = [torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    tokens = [VMDiffReduxEncode.execute(clip_vision, style, i).result[0] for i in imgs]
    return {"model": stand_ins["model"], "tokens": tokens, "cond": stand_ins["cond"], "vae": stand_ins["vae"]}


def tune(setup, scorer, model=None, **kw):
    args = dict(seed=7, **STAGE)
    args.update(kw)
    return VMDiffAutoTune.execute(model or setup["model"], *setup["tokens"], setup["cond"], setup["vae"], scorer,
                                  **args)


def test_score_above_threshold_stops_after_11_alpha_candidates(setup):
    counter = ForwardCounter(setup["model"])
    out = tune(setup, ForcedScorer(lambda i: 3.0), model=counter.model)
    image, latent, alpha, b1, b2, seed, score, params, log, plot, grid = out.result
    params, log = json.loads(params), json.loads(log)
    assert len(log["candidates"]) == 11 and {c["stage"] for c in log["candidates"]} == {"alpha"}
    # one ε_b (3 + 3 passes at t_den step 2) reused by 11 Mixing Denoise runs of 6 steps
    assert params["sample_nfe"] == counter.calls == 6 + 11 * 6
    assert (b1, b2, seed) == (1.0, 1.0, 7) and 0.4 <= alpha <= 0.6
    assert image.shape == (1, 32, 32, 3) and latent["samples"].shape == (1, 16, 4, 4)
    assert plot.shape[-1] == 3 and grid.shape[0] == 1 and grid.shape[1] >= 2 * 160


def test_low_scores_run_the_beta_stage_with_one_blending_noise_per_beta(setup):
    counter = ForwardCounter(setup["model"])
    out = tune(setup, ForcedScorer(lambda i: 1.0), model=counter.model)
    params, log = json.loads(out.result[7]), json.loads(out.result[8])
    beta = [c for c in log["candidates"] if c["stage"] == "beta"]
    assert beta and len({(c["beta_1"], c["beta_2"]) for c in beta}) == len(beta)
    assert all(c["beta_1"] == 0.5 for c in beta)  # D1 + 3.13·T1 > D2 + 3.13·T2: image 1 is the stronger side
    assert params["sample_nfe"] == counter.calls == (1 + len(beta)) * 6 + len(log["candidates"]) * 6


def test_paper_rounds_resample_the_noise(setup):
    out = tune(setup, ForcedScorer(lambda i: 1.0), preset="paper", rounds=3, beta_stronger=1.0, alpha_tol=0.05,
               beta_tol=2.0)
    log = json.loads(out.result[8])
    assert {c["seed"] for c in log["candidates"]} == {7, 8, 9}
    assert json.loads(out.result[7])["preset_departures"] == ["alpha_tol", "beta_tol", "mix_rule"]


class MeanScorer:
    """S = 1 + the mean pixel of the candidate (always under 2.4: the β stage runs); image 1 the stronger side."""

    def score(self, images):
        return [{"score": 1.0 + float(i.mean()), "D1": 0.5, "D2": 0.4, "T1": 0.3, "T2": 0.3, "n1": 0.5, "n2": 0.5}
                for i in images]


def test_candidates_in_one_batch_give_the_same_search_in_fewer_dit_passes(setup):
    runs = {}
    for per_batch in (1, 3):
        counter = ForwardCounter(setup["model"])
        out = tune(setup, MeanScorer(), model=counter.model, alpha_tol=0.02, beta_tol=1.0,
                   candidates_per_batch=per_batch)
        runs[per_batch] = (out.result, json.loads(out.result[7]), json.loads(out.result[8]), counter.calls)
    (one, p1, log1, calls1), (three, p3, log3, calls3) = runs[1], runs[3]
    key = lambda c: (c["alpha"], c["beta_1"], c["beta_2"], c["seed"], c["stage"])  # noqa: E731
    assert [key(c) for c in log3["candidates"]] == [key(c) for c in log1["candidates"]]  # the same search
    assert any(c["stage"] == "beta" for c in log1["candidates"])
    assert [c["score"] for c in log3["candidates"]] == pytest.approx([c["score"] for c in log1["candidates"]],
                                                                     abs=1e-5)
    assert three[2:6] == one[2:6] and torch.allclose(three[0], one[0], atol=1e-4)  # α, β1, β2, seed; image
    # counted by ComfyUI's model wrapper: every forward pass, batched or not
    assert (p1["dit_calls"], p1["sample_nfe"], p1["unused_candidates"]) == (calls1, calls1, 0)
    assert p3["dit_calls"] == calls3 < calls1 and p3["sample_nfe"] > p1["sample_nfe"]
    assert p3["unused_candidates"] > 0 and p3["candidates_per_batch"] == 3
    print(f"\n[auto-tune batch] {len(log1['candidates'])} candidates: batch 1 {calls1} DiT passes / {calls1} latents; "
          f"batch 3 {calls3} passes / {p3['sample_nfe']} latents ({p3['unused_candidates']} unused candidates)")


def test_search_steps_render_the_winner_at_full_steps_and_replay_reproduces_it(setup):
    scorer = ForcedScorer(lambda i: 1.0 + 0.01 * (i == 4))  # the 5th candidate wins
    out = tune(setup, scorer, search_steps=3, alpha_tol=0.01)
    image, latent, alpha, b1, b2, seed = out.result[:6]
    params = json.loads(out.result[7])
    assert params["search_steps"] == 3 and params["candidates"] >= 5
    # replay through the manual nodes with the recorded values
    eps_b = VMDiffBlendingNoise.execute(setup["model"], *setup["tokens"], setup["cond"], seed=seed, beta_1=b1,
                                        beta_2=b2, **STAGE).result[0]
    replay = VMDiffMixingDenoise.execute(setup["model"], eps_b, *setup["tokens"], setup["cond"], alpha=alpha,
                                         steps=STAGE["steps"]).result[0]
    assert torch.equal(replay["samples"], latent["samples"])
    assert torch.equal(setup["vae"].decode(replay["samples"]), image)


def test_save_image_writes_the_replay_parameters_into_the_png(setup, tmp_path):
    import folder_paths

    folder_paths.set_output_directory(str(tmp_path))
    out = tune(setup, ForcedScorer(lambda i: 3.0), alpha_tol=0.05)
    saved = VMDiffSaveImage.execute(out.result[0], out.result[7], "replay_test")
    name = saved.ui["images"][0]["filename"]
    meta = json.loads(Image.open(tmp_path / name).text["vmdiff"])
    assert meta["alpha"] == out.result[2] and meta["seed"] == 7 and meta["preset"] == "official"
    pixels = np.asarray(Image.open(tmp_path / name), dtype=np.float32) / 255
    assert pixels.shape == (32, 32, 3)


def test_upstream_model_files_walks_the_prompt_graph():
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-krea-dev.safetensors", "weight_dtype": "fp8"}},
        "2": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "flux1-redux-dev.safetensors"}},
        "3": {"class_type": "VMDiffReduxEncode", "inputs": {"style_model": ["2", 0]}},
        "4": {"class_type": "VMDiffAutoTune", "inputs": {"model": ["1", 0], "tokens_1": ["3", 0], "seed": 1}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": "unrelated.safetensors"}},
    }
    assert upstream_model_files(prompt, "4") == {"StyleModelLoader.style_model_name": "flux1-redux-dev.safetensors",
                                                  "UNETLoader.unet_name": "flux1-krea-dev.safetensors"}


def test_interrupt_stops_the_search_within_one_model_step(setup):
    import comfy.model_management as mm

    counter = ForwardCounter(setup["model"])

    def interrupt_on_third_candidate(i):
        if i == 2:
            mm.interrupt_current_processing(True)
        return 1.0

    with pytest.raises(mm.InterruptProcessingException):
        tune(setup, ForcedScorer(interrupt_on_third_candidate), model=counter.model)
    mm.interrupt_current_processing(False)
    assert counter.calls == 6 + 3 * 6  # no model step ran after the interrupt

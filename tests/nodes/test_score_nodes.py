"""Similarity Score nodes in-process: the four loaders on tiny scorer FILES (vmdiff_cli/tiny_scorers) through the same
code users run, the isolation modes, encode-once, safe loading and the error messages."""
import json
import math
import os

import pytest
import torch

from vmdiff_cli.comfy_env import load_pack

pack = load_pack()
import comfy.model_management as mm
import comfy.model_patcher
import folder_paths

from vmdiff_cli import tiny_scorers
from vmdiff_pack.vmdiff_comfy.scoring import detection, files
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.nodes.score_loaders import (VMDiffLoadDINOv2, VMDiffLoadGroundingDINO, VMDiffLoadOpenCLIP,
                                             VMDiffLoadSAM)
from vmdiff_pack.nodes.similarity_score import (ScoreOptions, SimilarityScorer, VMDiffScorer,
                                                VMDiffSimilarityScore)
from vmdiff_pack.vmdiff_ops import score as score_ops

NAMES = tiny_scorers.TINY_SCORER_NAMES
FOLDERS = ("dinov2", "open_clip", "grounding-dino", "bert-base-uncased", "sams")
DETECT = 224  # GroundingDINO input short side for these tests (the reference's 800 costs 4× more)


def image(seed, h=48, w=64, batch=1):
    return torch.rand(batch, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def models_dir():
    root = tiny_scorers.default_models_dir()
    tiny_scorers.ensure_tiny_scorers(root)
    for kind in FOLDERS:
        folder_paths.add_model_folder_path(kind, str(root / kind))
    return root


@pytest.fixture(scope="module")
def loaded(models_dir):
    return {
        "dino": VMDiffLoadDINOv2.execute(NAMES["dinov2"]).result[0],
        "clip": VMDiffLoadOpenCLIP.execute(NAMES["open_clip_model"], NAMES["open_clip"]).result[0],
        "gdino": VMDiffLoadGroundingDINO.execute(checkpoint=NAMES["grounding_dino_hf"],
                                                 config=detection.BUILTIN_GDINO_CONFIG).result[0],
        "sam": VMDiffLoadSAM.execute(NAMES["sam_hf"]).result[0],
    }


def make_scorer(loaded, isolation="box", **kw):
    options = ScoreOptions(isolation=isolation, detect_short_side=DETECT, **kw)
    return SimilarityScorer(loaded["dino"], loaded["clip"], loaded["gdino"], loaded["sam"], image(1), image(2, 56, 40),
                            "owl", "jar", options)


@pytest.fixture(scope="module")
def box_scorer(loaded):
    return make_scorer(loaded, "box")


def calls(scorer):
    return json.loads(json.dumps(scorer.encoder_calls))


def delta(after, before):
    return {k: {f: after[k][f] - before[k].get(f, 0) for f in after[k]} for k in after}


# --------------------------------------------------------------------------------------------------
# folders, loaders, model management

def test_folders_are_registered_and_merged_with_existing_paths(models_dir, tmp_path):
    for kind in FOLDERS:
        paths, extensions = folder_paths.folder_names_and_paths[kind]
        assert paths[0] == os.path.join(folder_paths.models_dir, kind)
        assert str(models_dir / kind) in paths
    assert {".pth", ".safetensors", ".py"} <= folder_paths.folder_names_and_paths["grounding-dino"][1]
    extra = str(tmp_path / "my_sams")
    folder_paths.add_model_folder_path("sams", extra)
    files.register_score_folders()  # re-registering (another pack, a reload) keeps every path
    paths = folder_paths.folder_names_and_paths["sams"][0]
    assert extra in paths and str(models_dir / "sams") in paths
    assert paths[0] == os.path.join(folder_paths.models_dir, "sams")


def test_loader_widgets_list_the_files(models_dir):
    def options(node, name):
        spec = node.INPUT_TYPES()["required"][name]
        return spec[0] if isinstance(spec[0], list) else spec[1]["options"]

    assert NAMES["dinov2"] in options(VMDiffLoadDINOv2, "dinov2")
    assert NAMES["open_clip_model"] in options(VMDiffLoadOpenCLIP, "model_name")
    assert "ViT-bigG-14" in options(VMDiffLoadOpenCLIP, "model_name")
    assert NAMES["open_clip"] in options(VMDiffLoadOpenCLIP, "checkpoint")
    assert NAMES["open_clip_model"] + ".json" not in options(VMDiffLoadOpenCLIP, "checkpoint")
    gd_configs = options(VMDiffLoadGroundingDINO, "config")
    assert gd_configs[0] == detection.BUILTIN_GDINO_CONFIG and NAMES["grounding_dino_config"] in gd_configs
    gd_models = options(VMDiffLoadGroundingDINO, "checkpoint")
    assert NAMES["grounding_dino"] in gd_models and NAMES["grounding_dino_hf"] in gd_models
    assert NAMES["grounding_dino_config"] not in gd_models
    bert = VMDiffLoadGroundingDINO.INPUT_TYPES()["optional"]["bert"]  # a Hugging Face folder needs no BERT folder
    assert NAMES["bert"] in (bert[0] if isinstance(bert[0], list) else bert[1]["options"])
    assert {NAMES["sam"], NAMES["sam_hf"]} <= set(options(VMDiffLoadSAM, "checkpoint"))


def test_hf_folder_may_be_the_registered_folder_itself(tmp_path):
    root = tmp_path / "bert-base-uncased"
    root.mkdir()
    (root / "config.json").write_text("{}")
    (tmp_path / "other").mkdir()
    folder_paths.add_model_folder_path("bert-base-uncased", str(root))
    try:
        assert files.list_hf_folders("bert-base-uncased")["bert-base-uncased"] == root
    finally:
        folder_paths.folder_names_and_paths["bert-base-uncased"][0].remove(str(root))


def test_loaded_models_are_managed_by_comfyui(loaded):
    for key, kind in (("dino", "dino"), ("clip", "clip"), ("gdino", "detector"), ("sam", "segmenter")):
        model = loaded[key]
        assert model.kind == kind
        assert isinstance(model.patcher, comfy.model_patcher.ModelPatcher)
        assert model.patcher.load_device == mm.get_torch_device()
        assert model.patcher.offload_device == mm.unet_offload_device()
        inner = model.ready()
        assert any(lm.model is model.patcher for lm in mm.current_loaded_models), key
        assert not inner.training and all(not p.requires_grad for p in inner.parameters())
    mm.unload_all_models()
    assert not any(lm.model is loaded["dino"].patcher for lm in mm.current_loaded_models)
    loaded["dino"].ready()  # loads again on demand
    assert any(lm.model is loaded["dino"].patcher for lm in mm.current_loaded_models)


def test_loaders_read_the_architecture_from_the_files(loaded):
    dino = loaded["dino"].patcher.model.inner
    assert type(dino).__name__ == "Dinov2Model" and dino.config.hidden_size == 32
    clip = loaded["clip"]
    assert clip.image_size == 224 and clip.encode_texts(["a owl"]).shape == (1, 16)
    assert loaded["sam"].info["variant"] == "custom" and loaded["sam"].info["img_size"] == 64
    gdino = loaded["gdino"].patcher.model.inner
    assert type(gdino).__name__ == "GroundingDinoForObjectDetection" and gdino.config.num_queries == 16
    tokenizer = loaded["gdino"].processor.tokenizer
    assert tokenizer.unk_token_id not in tokenizer.convert_tokens_to_ids(["most", "prominent", "object"])


@pytest.mark.parametrize("fmt", ["release", "hf"])
def test_both_formats_load_onto_the_same_transformers_modules(models_dir, fmt):
    gdino = VMDiffLoadGroundingDINO.execute(
        checkpoint=NAMES["grounding_dino" if fmt == "release" else "grounding_dino_hf"],
        config=NAMES["grounding_dino_config"], bert=NAMES["bert"] if fmt == "release" else None).result[0]
    sam = VMDiffLoadSAM.execute(NAMES["sam" if fmt == "release" else "sam_hf"]).result[0]
    assert type(gdino.ready()).__name__ == "GroundingDinoForObjectDetection"
    assert type(sam.ready()).__name__ == "SamModel"
    expected = "original release" if fmt == "release" else "Hugging Face folder"
    assert gdino.info["format"] == sam.info["format"] == expected
    assert len(gdino.detect(image(5).movedim(-1, 1), "owl", 0.0, short_side=DETECT)) == 1


def test_grounding_dino_config_is_read_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.cfg.py"
    cfg.write_text(f"hidden_dim = 256\nopen({str(marker)!r}, 'w')\n")
    with pytest.raises(VMDiffInputError, match="only `name = value` lines"):
        detection.parse_literal_config(cfg)
    assert not marker.exists()
    builtin = detection.original_config(detection.BUILTIN_GDINO_CONFIG)
    assert builtin["backbone"] == "swin_T_224_1k" and builtin["hidden_dim"] == 256


# --------------------------------------------------------------------------------------------------
# safety and errors

class _Payload:
    """Unpickling this runs ``open(marker, "w")``: a real payload that leaves a file behind if executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_are_refused_without_running(models_dir, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = {"sams": "vmdiff-test-evil.pth", "grounding-dino": "vmdiff-test-evil.pth",
            "open_clip": "vmdiff-test-evil.bin"}
    paths = []
    try:
        for kind, name in evil.items():
            path = models_dir / kind / name
            torch.save({"model": {"w": torch.zeros(2)}, "payload": _Payload(marker)}, path)
            paths.append(path)
        calls_ = [lambda: VMDiffLoadSAM.execute(evil["sams"]),
                  lambda: VMDiffLoadGroundingDINO.execute(checkpoint=evil["grounding-dino"],
                                                          config=detection.BUILTIN_GDINO_CONFIG, bert=NAMES["bert"]),
                  lambda: VMDiffLoadOpenCLIP.execute(NAMES["open_clip_model"], evil["open_clip"])]
        for call in calls_:
            with pytest.raises(VMDiffInputError, match="refused to load .*pickled Python objects"):
                call()
        assert not marker.exists()
        # the payload is real: an unsafe load does create the marker
        control = tmp_path / "control_ran"
        torch.save({"payload": _Payload(control)}, tmp_path / "control.pth")
        torch.load(tmp_path / "control.pth", weights_only=False)
        assert control.exists()
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def test_missing_files_name_the_folder_the_expected_files_and_the_source(models_dir):
    msg = VMDiffLoadSAM.validate_inputs("sam_vit_h_4b8939.pth")
    assert isinstance(msg, str)
    assert os.path.join(folder_paths.models_dir, "sams") in msg and str(models_dir / "sams") in msg
    assert "sam_vit_b_01ec64.pth" in msg and "segment-anything" in msg
    msg = VMDiffLoadGroundingDINO.validate_inputs(checkpoint="groundingdino_swint_ogc.pth",
                                                  config=detection.BUILTIN_GDINO_CONFIG, bert=NAMES["bert"])
    assert "grounding-dino" in msg and "groundingdino_swint_ogc.pth" in msg and "huggingface.co" in msg
    msg = VMDiffLoadGroundingDINO.validate_inputs(checkpoint=NAMES["grounding_dino"],
                                                  config=detection.BUILTIN_GDINO_CONFIG, bert="bert-base-uncased")
    assert "bert-base-uncased" in msg and "vocab.txt" in msg
    msg = VMDiffLoadDINOv2.validate_inputs("dinov2-base")
    assert "models" in msg and "dinov2-base" in msg and "model.safetensors" in msg
    msg = VMDiffLoadOpenCLIP.validate_inputs("open_clip_model.safetensors")
    assert "open_clip" in msg and "CLIP-ViT-bigG-14" in msg
    assert VMDiffLoadSAM.validate_inputs(NAMES["sam"]) is True
    with pytest.raises(VMDiffInputError, match="sams: .*not found in .*sam_vit_h_4b8939.pth"):
        VMDiffLoadSAM.execute("sam_vit_h_4b8939.pth")


def test_wrong_files_are_named_as_wrong(models_dir):
    wrong = models_dir / "sams" / "vmdiff-test-wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"image_encoder.weight": torch.zeros(3)}, str(wrong))
    try:
        with pytest.raises(VMDiffInputError, match="not a segment-anything checkpoint.*sam_vit_h_4b8939.pth"):
            VMDiffLoadSAM.execute(wrong.name)
    finally:
        wrong.unlink()
    with pytest.raises(VMDiffInputError, match="not a .*checkpoint|does not fit"):
        VMDiffLoadOpenCLIP.execute("ViT-B-32", NAMES["open_clip"])  # a tiny file for a big architecture


# --------------------------------------------------------------------------------------------------
# scoring

def test_score_terms_are_the_cosines_of_the_encoders_features(loaded):
    scorer = make_scorer(loaded, "none")
    fused = image(3, 40, 40, batch=2)
    results = scorer.score(fused)
    views = list(score_ops.squash_resize(fused.movedim(-1, 1), 224))
    dino = loaded["dino"].encode(views)
    src = loaded["dino"].encode([image(1).movedim(-1, 1)[0], image(2, 56, 40).movedim(-1, 1)[0]])
    clip = loaded["clip"].encode_images(views)
    text = loaded["clip"].encode_texts(["['A  owl .']", "['A  jar .']"])
    for i, r in enumerate(results):
        assert set(r) >= {"score", "D1", "D2", "T1", "T2", "n1", "n2"}
        assert all(isinstance(r[k], float) and math.isfinite(r[k]) for k in ("score", "D1", "D2", "T1", "T2"))
        assert r["D1"] == pytest.approx(float(score_ops.cosine_similarity(dino[i], src[0])), abs=1e-4)
        assert r["D2"] == pytest.approx(float(score_ops.cosine_similarity(dino[i], src[1])), abs=1e-4)
        assert r["T1"] == pytest.approx(float(score_ops.cosine_similarity(clip[i], text[0])), abs=1e-4)
        assert r["n2"] == pytest.approx((r["T2"] - 0.15) / 0.30, abs=1e-6)
        assert r["score"] == pytest.approx(2 * min(r["D1"], r["D2"]) + 2 * min(r["n1"], r["n2"]), abs=1e-5)
    assert results[0]["score"] != results[1]["score"]
    # a batch gives what one-by-one scoring gives
    single = scorer.score(fused[1:2])[0]
    assert single["score"] == pytest.approx(results[1]["score"], abs=1e-4)


def test_sources_and_labels_are_encoded_once_and_each_fused_image_once(loaded, box_scorer):
    before = calls(box_scorer)
    box_scorer.score(image(5, batch=4))
    first = delta(calls(box_scorer), before)
    assert first["dino"] == {"calls": 1, "images": 4}
    assert first["clip"] == {"calls": 1, "images": 4}
    assert first["detector"] == {"calls": 1, "images": 4}
    assert first["clip_text"]["calls"] == 0
    box_scorer.score(image(6, batch=2))
    second = delta(calls(box_scorer), before)
    assert second["dino"] == {"calls": 2, "images": 6} and second["detector"]["calls"] == 2
    # making a scorer encodes the two sources in one DINO call and the two label texts in one CLIP call
    before = calls(box_scorer)
    fresh = make_scorer(loaded, "none")
    made = delta(calls(fresh), before)
    assert made["dino"] == {"calls": 1, "images": 2} and made["clip_text"]["calls"] == 1
    assert made["clip"]["calls"] == 0 and made["detector"]["calls"] == 0


def test_box_isolation_crops_to_the_top_box_scaled_to_the_real_size(loaded, box_scorer):
    detector = loaded["gdino"]
    captured = {}
    hook = detector.patcher.model.inner.register_forward_hook(lambda m, a, out: captured.update(out=out))
    try:
        for h, w in ((48, 64), (150, 90)):
            fused = image(7, h, w, batch=2)
            results = box_scorer.score(fused)
            scores = captured["out"].logits.sigmoid().max(-1).values
            for i, r in enumerate(results):
                top = int(scores[i].argmax())
                cx, cy, bw, bh = (captured["out"].pred_boxes[i, top] * torch.tensor([w, h, w, h])).tolist()
                expected = score_ops.crop_bounds([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], w, h)
                assert r["box"] == list(expected)
                assert r["box_confidence"] == pytest.approx(float(scores[i, top]), abs=1e-4)
                x0, y0, x1, y1 = expected
                assert tuple(box_scorer.last_views[i].shape) == (3, y1 - y0, x1 - x0)
                assert torch.equal(box_scorer.last_views[i], fused[i].movedim(-1, 0)[:, y0:y1, x0:x1])
    finally:
        hook.remove()
    # the sources were cropped the same way, once, when the scorer was made
    assert all(info["box"] for info in box_scorer.source_info)
    assert box_scorer.source_views[0].shape[-2:] != (48, 64)


def test_no_box_above_threshold_scores_the_whole_image(loaded):
    scorer = make_scorer(loaded, "box", box_threshold=0.99)
    fused = image(8, batch=1)
    (r,) = scorer.score(fused)
    assert r["box"] is None and r["box_confidence"] is None
    assert torch.equal(scorer.last_views[0], fused[0].movedim(-1, 0))
    assert "no box found" in scorer.describe()


def test_sam_isolation_fills_the_background_inside_the_box(loaded):
    scorer = make_scorer(loaded, "sam")
    fused = image(9, 64, 64, batch=2)
    before = calls(scorer)
    results = scorer.score(fused)
    assert delta(calls(scorer), before)["segmenter"] == {"calls": 1, "images": 2}
    x = fused.movedim(-1, 1)
    boxes = [torch.tensor(r["box"], dtype=torch.float32) if r["box"] else None for r in results]
    masks = loaded["sam"].segment(x, boxes)
    assert masks.dtype == torch.bool and masks.shape == (2, 1, 64, 64)
    for i, r in enumerate(results):
        expected = score_ops.crop_to_box(score_ops.neutral_fill(x[i], masks[i]), boxes[i])
        assert torch.equal(scorer.last_views[i], expected)
    kept = torch.cat([m.flatten() for m in masks]).float().mean()
    assert 0 < kept < 1  # the tiny SAM keeps some pixels and fills others
    filled = torch.cat([(v == 0.5).all(0).flatten() for v in scorer.last_views])
    assert filled.any()


def test_labels_as_detection_query_and_label_text_modes(loaded):
    captions = []
    detect = loaded["gdino"].detect

    def spy(images, caption, *args):
        captions.append(caption)
        return detect(images, caption, *args)

    loaded["gdino"].detect = spy
    try:
        scorer = make_scorer(loaded, "box", query="labels", label_text="reference")
        scorer.score(image(10))
    finally:
        del loaded["gdino"].detect
    assert captions == ["owl .", "jar .", "owl . jar ."]
    assert scorer.texts == ["A  owl .", "A  jar ."]
    assert make_scorer(loaded, "none", label_text="plain").texts == ["owl", "jar"]


def test_clip_vision_dinov2_is_accepted_and_other_clip_vision_refused(loaded, tmp_path):
    import comfy.clip_vision

    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "layer_norm_eps": 1e-6,
              "use_swiglu_ffn": False, "image_size": 518, "patch_size": 14, "model_type": "dinov2",
              "image_mean": list(score_ops.IMAGENET_MEAN), "image_std": list(score_ops.IMAGENET_STD)}
    (tmp_path / "dino.json").write_text(json.dumps(config))
    clip_vision = comfy.clip_vision.ClipVisionModel(str(tmp_path / "dino.json"))
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.ones_like(v) if k.endswith("lambda1") or "norm" in k and k.endswith("weight")
              else torch.randn(v.shape, generator=g) * 0.02) for k, v in clip_vision.get_sd().items()}
    clip_vision.load_sd(sd)
    scorer = SimilarityScorer(clip_vision, loaded["clip"], None, None, image(1), image(2), "owl", "jar",
                              ScoreOptions(isolation="none"))
    (r,) = scorer.score(image(11))
    fused_view = score_ops.squash_resize(image(11).movedim(-1, 1), 518)
    expected = score_ops.mean_token_feature(clip_vision.encode_image(fused_view.movedim(1, -1), crop=False)
                                            ["last_hidden_state"])
    src = score_ops.mean_token_feature(clip_vision.encode_image(
        score_ops.squash_resize(image(1).movedim(-1, 1), 518).movedim(1, -1), crop=False)["last_hidden_state"])
    assert r["D1"] == pytest.approx(float(score_ops.cosine_similarity(expected, src)), abs=1e-4)
    assert "CLIP_VISION dinov2" in scorer.describe()

    from vmdiff_cli import tiny_models

    with pytest.raises(VMDiffInputError, match="not DINOv2"):
        SimilarityScorer(tiny_models.tiny_clip_vision(), loaded["clip"], None, None, image(1), image(2), "a", "b",
                         ScoreOptions(isolation="none"))


def test_scorer_input_errors(loaded):
    with pytest.raises(VMDiffInputError, match="grounding_dino: isolation 'box' needs"):
        SimilarityScorer(loaded["dino"], loaded["clip"], None, None, image(1), image(2), "a", "b", ScoreOptions())
    with pytest.raises(VMDiffInputError, match="sam: isolation 'sam' needs"):
        SimilarityScorer(loaded["dino"], loaded["clip"], loaded["gdino"], None, image(1), image(2), "a", "b",
                         ScoreOptions(isolation="sam"))
    with pytest.raises(VMDiffInputError, match="label_2: the object label is empty"):
        make_scorer(loaded, "none").__class__(loaded["dino"], loaded["clip"], None, None, image(1), image(2), "a",
                                              "  ", ScoreOptions(isolation="none"))
    with pytest.raises(VMDiffInputError, match="image_1: got a batch of 2"):
        SimilarityScorer(loaded["dino"], loaded["clip"], None, None, image(1, batch=2), image(2), "a", "b",
                         ScoreOptions(isolation="none"))
    with pytest.raises(VMDiffInputError, match="isolation: unknown value"):
        ScoreOptions(isolation="mask").check()


def test_scorer_and_score_nodes(loaded):
    out = VMDiffScorer.execute(loaded["dino"], loaded["clip"], image(1), image(2, 56, 40), "owl", "jar",
                               isolation="none", grounding_dino=None, sam=None)
    scorer, source_views = out.result
    assert source_views.shape == (2, 224, 224, 3)
    assert "label texts: \"['A  owl .']\"" in out.ui.as_dict()["text"][0]
    fused = torch.cat([image(12, 40, 40, batch=2), torch.ones(2, 40, 40, 1)], dim=-1)  # RGBA: alpha is dropped
    res = VMDiffSimilarityScore.execute(scorer, fused)
    score, scores_json, breakdown, views = res.result
    parsed = json.loads(scores_json)
    assert len(parsed) == 2 and score == parsed[0]["score"]
    assert set(parsed[1]) >= {"score", "D1", "D2", "T1", "T2", "n1", "n2", "box"}
    assert breakdown.splitlines()[1].startswith("[1] S = ") and "n2 = " in breakdown
    assert res.ui.as_dict()["text"][0] == breakdown
    assert views.shape == (4, 224, 224, 3)
    assert VMDiffSimilarityScore.define_schema().is_output_node
    with pytest.raises(VMDiffInputError, match="scorer: expected a VMDiff Scorer"):
        VMDiffSimilarityScore.execute("not a scorer", fused)

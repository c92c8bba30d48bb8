"""The model files the shipped workflows name and where each one comes from.

The CLI (run_workflow.py) checks a ``--models-dir`` against this list; scripts/build_workflows.py writes it into
the loader nodes' ``properties.models`` (the frontend's "Missing Models" dialog); scripts/frontend_check.py and the
tests read it too.
"""

# The model file each loader widget names -> (ComfyUI model folder, download URL), written into the loader node's
# properties.models in the format of ComfyUI's own Flux Redux template ({"name", "url", "directory"}), so the
# frontend's "Missing Models" dialog offers the download. That dialog takes only .safetensors/.sft files from
# huggingface.co or civitai.com: HF-format folders (dinov2, bert-base-uncased) and .pth checkpoints (GroundingDINO,
# SAM) are listed in docs/install.md and docs/scoring.md instead.
MODEL_DOWNLOADS = {
    "flux1-krea-dev.safetensors": (
        "diffusion_models",
        "https://huggingface.co/black-forest-labs/FLUX.1-Krea-dev/resolve/main/flux1-krea-dev.safetensors"),
    "clip_l.safetensors": (
        "text_encoders", "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    "t5xxl_fp16.safetensors": (
        "text_encoders",
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors"),
    "sigclip_vision_patch14_384.safetensors": (
        "clip_vision",
        "https://huggingface.co/Comfy-Org/sigclip_vision_384/resolve/main/sigclip_vision_patch14_384.safetensors"),
    "flux1-redux-dev.safetensors": (
        "style_models", "https://huggingface.co/Comfy-Org/Flux1-Redux-Dev/resolve/main/flux1-redux-dev.safetensors"),
    "ae.safetensors": (
        "vae",
        "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"),
    "v1-5-pruned-emaonly-fp16.safetensors": (
        "checkpoints", "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                       "v1-5-pruned-emaonly-fp16.safetensors"),
    # reference-image models: the FLUX.2 [klein] and Kontext file names and addresses are those of the Comfy-Org
    # repackaged files as recalled, not checkable from here (no internet): see docs/reference_models.md
    "flux1-dev-kontext_fp8_scaled.safetensors": (
        "diffusion_models", "https://huggingface.co/Comfy-Org/flux1-kontext-dev_ComfyUI/resolve/main/split_files/"
                            "diffusion_models/flux1-dev-kontext_fp8_scaled.safetensors"),
    "flux-2-klein-4b-fp8.safetensors": (
        "diffusion_models", "https://huggingface.co/black-forest-labs/FLUX.2-klein-4b-fp8/resolve/main/"
                            "flux-2-klein-4b-fp8.safetensors"),
    "qwen_3_4b.safetensors": (
        "text_encoders", "https://huggingface.co/Comfy-Org/flux2-klein-4B/resolve/main/split_files/text_encoders/"
                         "qwen_3_4b.safetensors"),
    "flux2-vae.safetensors": (
        "vae", "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors"),
    "open_clip_model.safetensors": (
        "open_clip",
        "https://huggingface.co/laion/CLIP-ViT-bigG-14-laion2B-39B-b160k/resolve/main/open_clip_model.safetensors"),
}

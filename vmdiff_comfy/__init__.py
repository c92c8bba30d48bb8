"""The runtime below the nodes: everything that runs the paper's math (``vmdiff_ops``) inside ComfyUI but is not a
node. Node files in ``nodes/`` hold only ``define_schema`` + a short ``execute`` and import from here; nothing here
imports ``nodes``.

- ``errors``: the one input-error type every node raises.
- ``stages/``: Blending Noise, Mixing Denoise, MagicMix, the Auto-Tune renderer and search driver.
- ``scoring/``: the Similarity Score models (file checks and folders, DINO, CLIP, detection, segmentation).
"""

"""The VMDiff stages inside ComfyUI, below the node files and above ``vmdiff_ops``:

- ``sockets``: the pack's socket types and the values that travel on them (z_k, noise-space LATENTs, NOISE).
- ``checks``: input checks shared by the stages (model, token sets, image size, widget ranges).
- ``settings``: one declaration per stage setting (default, range, tooltip, spec symbol); widgets and validation
  are generated from it.
- ``flow``: running a ``vmdiff_ops`` flow program in ComfyUI's sampling machinery; the phase conditionings.
- ``blending_noise``, ``mixing_denoise``, ``magicmix``, ``tokens``: the stage runners.
- ``auto_tune``: the candidate renderer and the EAA search driver; ``presets``: the search presets' one home.
- ``provenance``: the model files behind a result (replay metadata).
"""

"""The user's command lines, shipped with the pack (ComfyUI's node loading never imports this package).

Run from the pack's folder (``ComfyUI/custom_nodes/<pack>/`` or a checkout)::

    python -m vmdiff_cli.run_workflow --tiny           # the main job: one fusion through a real ComfyUI
    python -m vmdiff_cli.folder_runner objects/ --tiny  # every ordered pair of a folder (threads, or --ray)
    python -m vmdiff_cli.workflow_convert ui.json       # a UI workflow into the API format

Modules: ``run_workflow`` (main job), ``folder_runner`` + ``folder_ray`` (folder runner, threads / Ray),
``comfy_server`` (finds ComfyUI, starts a server or talks to a running one), ``comfy_env`` (ComfyUI in-process, for
the stand-in writers), ``workflow_convert``, ``model_downloads`` (the model files the workflows name),
``tiny_models`` / ``tiny_scorers`` (the ``--tiny`` random-weight stand-ins).
"""

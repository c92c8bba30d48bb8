"""ComfyUI-VMDiff: fuse two object images into one hybrid object on FLUX.1 + Redux (VMDiff, ICLR 2026).

Import-light on purpose: ComfyUI imports this at start-up; the nodes are imported when ComfyUI asks for them.
"""

#: web/vmdiff_auto_tune.js: choosing an Auto-Tune preset sets its search widgets
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import NODES
    from .vmdiff_comfy.console import make_console_safe
    from .vmdiff_comfy.example_inputs import install_example_inputs

    make_console_safe()  # Greek in log lines on a cp1252 console: escaped there, kept in the UI
    install_example_inputs()  # the shipped workflows' photos, only where absent

    class VMDiffExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return VMDiffExtension()

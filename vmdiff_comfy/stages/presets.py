"""The search presets' one home: their values (``vmdiff_ops.PRESETS``: the EAA options), the token-mix rule each
implies, what choosing one sets on the Auto-Tune node (served at GET /vmdiff/presets for web/vmdiff_auto_tune.js),
and how a run departs from the preset it names."""
from __future__ import annotations

from dataclasses import asdict

from ...vmdiff_ops import PRESETS, SearchOptions
from .settings import SEARCH_OPTION_NAMES

#: The token-mix rule of each preset: the reference code's per-token rule, the paper's slerp.
PRESET_MIX_RULES = {"official": "official", "paper": "slerp"}
#: The Auto-Tune preset combo: the named presets, then "custom" (the widgets as they are).
PRESET_CHOICES = (*PRESETS, "custom")


def preset_widget_values() -> dict[str, dict]:
    """{preset: {widget: value}}: what choosing a preset sets on the Auto-Tune node (web/vmdiff_auto_tune.js fetches
    it from GET /vmdiff/presets) and what the log's preset_departures compares against."""
    return {name: {**{k: v for k, v in asdict(options).items() if k in SEARCH_OPTION_NAMES},
                   "mix_rule": PRESET_MIX_RULES[name]}
            for name, options in PRESETS.items()}


def preset_departures(preset: str, options: SearchOptions, mix_rule: str) -> list[str]:
    """The settings of a run that differ from the preset it names (none for "custom")."""
    if preset not in PRESETS:
        return []
    named = asdict(PRESETS[preset])
    changed = [k for k, v in asdict(options).items() if named[k] != v]
    if mix_rule != PRESET_MIX_RULES[preset]:
        changed.append("mix_rule")
    return changed


def register_routes() -> None:
    """GET /vmdiff/presets on the running ComfyUI server (nothing to do without one, e.g. in-process tests)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None or getattr(register_routes, "done", False):
        return

    @PromptServer.instance.routes.get("/vmdiff/presets")
    async def presets(request):
        return web.json_response(preset_widget_values())

    register_routes.done = True

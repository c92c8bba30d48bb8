// VMDiff Auto-Tune: choosing the "official" or "paper" preset sets the search widgets (and mix_rule) to that
// preset's values, served by the pack at GET /vmdiff/presets. Loading a saved workflow keeps its values.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

let presets = null;

async function loadPresets() {
  if (presets === null) {
    const response = await api.fetchApi("/vmdiff/presets");
    presets = response.ok ? await response.json() : {};
  }
  return presets;
}

export async function applyPreset(node, name) {
  const values = (await loadPresets())[name];
  if (!values) return [];  // "custom": leave the widgets as they are
  const changed = [];
  for (const widget of node.widgets ?? []) {
    if (widget.name in values && widget.value !== values[widget.name]) {
      widget.value = values[widget.name];
      changed.push(widget.name);
    }
  }
  node.setDirtyCanvas?.(true, true);
  return changed;
}

app.registerExtension({
  name: "VMDiff.AutoTunePresets",
  async nodeCreated(node) {
    if (node.comfyClass !== "VMDiffAutoTune") return;
    const preset = node.widgets?.find((w) => w.name === "preset");
    if (!preset) return;
    const original = preset.callback;
    preset.callback = function (value, ...rest) {
      const result = original?.apply(this, [value, ...rest]);
      node.vmdiffPresetApplied = applyPreset(node, value);
      return result;
    };
  },
});

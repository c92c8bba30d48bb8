"""The Similarity Score's models and the scorer: ``files`` (folders, safe loading), ``scorer`` (ScorerModel under
ComfyUI's model management), ``dino``, ``clip``, ``detection``, ``segmentation``, ``similarity`` (the
VMDIFF_SCORER the nodes hand to Auto-Tune)."""

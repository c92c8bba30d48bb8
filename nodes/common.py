"""Deprecated: the helpers that lived here moved to ``vmdiff_comfy/`` (errors, stages/sockets, stages/checks,
stages/flow, stages/provenance). Kept only so node files not yet migrated (the scorer nodes, issue 10) still
import; import from the new homes instead. Delete once nothing under nodes/ imports it."""
from ..vmdiff_comfy.errors import VMDiffInputError  # noqa: F401
from ..vmdiff_comfy.stages.sockets import ReduxTokens, ReduxTokensType, ScorerType  # noqa: F401

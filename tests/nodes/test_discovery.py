"""The newer Schema fields that help find nodes (vmdiff_comfy/discovery.py): ComfyUI 0.8.0's Schema has none, so the
pack's schemas stay as they are and the server loads the pack; a Schema that has them (a dataclass subclass of the
real io.Schema, as a newer ComfyUI's would be) gets the declared search aliases and Essentials category."""
import dataclasses
from dataclasses import dataclass, field

from vmdiff_cli.comfy_env import boot_comfy_inprocess

boot_comfy_inprocess()
from comfy_api.latest import io  # noqa: E402

from vmdiff_pack.nodes import NODES  # noqa: E402
from vmdiff_pack.vmdiff_comfy import discovery  # noqa: E402

NEWER_FIELDS = {"search_aliases", "essentials_category"}


@dataclass
class Schema2026(io.Schema):
    """io.Schema with the two fields later ComfyUI versions added (names and defaults as there)."""
    search_aliases: list[str] = field(default_factory=list)
    essentials_category: str | None = None


def as_2026(schema: io.Schema) -> Schema2026:
    return Schema2026(**{f.name: getattr(schema, f.name) for f in dataclasses.fields(io.Schema)})


def test_comfyui_080_has_none_of_the_newer_fields_and_the_schemas_are_unchanged():
    assert discovery.schema_fields(io.Schema) & NEWER_FIELDS == set()
    assert discovery.schema_fields(Schema2026) >= NEWER_FIELDS
    for node in NODES:
        schema = node.define_schema()
        assert discovery.supported(schema.node_id, io.Schema) == {}
        assert not any(hasattr(schema, name) for name in NEWER_FIELDS), schema.node_id
        info = node.GET_NODE_INFO_V1()  # what /object_info sends, as before
        assert "search_aliases" not in info and info["name"] == schema.node_id


def test_a_schema_that_has_the_fields_gets_the_declared_values():
    by_id = {n.define_schema().node_id: n for n in NODES}
    assert set(discovery.DISCOVERY) <= set(by_id)  # every declaration names a node of the pack
    mix = discovery.apply_discovery(as_2026(by_id["VMDiffMixingDenoise"].define_schema()))
    assert set(discovery.FUSION_ALIASES) <= set(mix.search_aliases)
    assert {"fuse", "blend", "mix objects", "hybrid", "chimera", "merge two images"} <= set(mix.search_aliases)
    assert mix.essentials_category == "generate-image"
    loader = discovery.apply_discovery(as_2026(by_id["VMDiffLoadDINOv2"].define_schema()))
    assert loader.search_aliases == [] and loader.essentials_category is None  # nothing declared: defaults kept


def test_the_node_wrapper_passes_them_through_define_schema():
    """A node whose define_schema builds the newer Schema (what every node does on a newer ComfyUI) returns it with
    the aliases set by ``with_discovery``; wrapping twice changes nothing."""
    base = next(n for n in NODES if n.define_schema().node_id == "VMDiffAutoTune")

    class NewerAutoTune(base):
        @classmethod
        def define_schema(cls):
            return as_2026(super().define_schema())

    assert NewerAutoTune.define_schema().search_aliases == []  # not wrapped yet: the plain newer schema
    wrapped = discovery.with_discovery(discovery.with_discovery(NewerAutoTune))
    schema = wrapped.define_schema()
    assert "chimera" in schema.search_aliases and "EAA" in schema.search_aliases
    assert schema.search_aliases.count("fuse") == 1
    assert schema.essentials_category == "generate-image"


def test_the_server_loads_every_node_of_the_pack(comfy_server):
    """ComfyUI 0.8.0 started with the pack lists all its nodes (the wrapper leaves 0.8.0's schemas valid)."""
    info = comfy_server.object_info()
    assert {n.define_schema().node_id for n in NODES} <= set(info)
    assert "search_aliases" not in info["VMDiffMixingDenoise"]

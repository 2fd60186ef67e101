"""keel.registry: model versions, aliases with an audit trail, tags; loading by reference."""

from keel.registry._registry import (
    ModelVersion,
    alias_history,
    check_name,
    get_version,
    list_models,
    list_versions,
    load,
    parse_ref,
    register,
    remove_alias,
    set_alias,
    set_tag,
)

__all__ = [
    "ModelVersion",
    "alias_history",
    "check_name",
    "get_version",
    "list_models",
    "list_versions",
    "load",
    "parse_ref",
    "register",
    "remove_alias",
    "set_alias",
    "set_tag",
]

"""`aini destroy`: the project's labelled Hetzner Cloud resources removed after a typed confirmation."""

from __future__ import annotations

from ..errors import InputError
from ..infra import hetzner as cloud
from ..project import Project
from . import confirm_project
from .targets import is_hetzner


def destroy(project: Project, confirm: str | None, keep_volume: bool, keep_primary_ip: bool, ask, say) -> list:
    """Remove the project's labelled Hetzner resources after a typed confirmation."""
    from hcloud import APIException  # third-party, loaded when the command runs
    from requests import RequestException

    config = project.config
    if not is_hetzner(project):
        raise InputError(f"aini destroy removes Hetzner Cloud resources; target kind '{config.target.kind}' has none")
    keep = ({"volume"} if keep_volume else set()) | ({"primary_ip"} if keep_primary_ip else set())
    try:
        client = cloud.connect()
        owned = cloud.read_owned(client, config)
        if not owned:
            say(f"Nothing labelled {cloud.selector(config)} exists; nothing to remove.")
            return []
        for item in owned:
            say(f"  {'keep  ' if item.kind in keep else 'remove'} {item.kind} {item.name}")
        confirm_project(config.project, confirm, ask, "Remove these?", "nothing was removed")
        return cloud.destroy(client, config, keep, say)
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None

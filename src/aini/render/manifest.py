"""manifest.json, typed: what a bundle holds (its groups in deploy order, each with its
content hash, services, images and post-deploy steps; the shared networks; a digest per
file), parsed once where a bundle is read. The deployed record is the same document
narrowed to the groups that came up, so it parses the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class GroupEntry:
    hash: str
    services: tuple[str, ...] = ()
    images: Mapping[str, str] = field(default_factory=dict)  # service -> image reference
    post_deploy: tuple[Mapping[str, str], ...] = ()  # container, user, workdir, script, description


@dataclass(frozen=True)
class Manifest:
    project: str
    order: tuple[str, ...]
    groups: Mapping[str, GroupEntry]
    files: Mapping[str, str]  # bundle path -> digest of its content
    networks: Mapping[str, Mapping[str, Any]]  # networks the deploy creates before the first group
    document: Mapping[str, Any]  # the JSON as written: the deployed record is built from it

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        groups = {
            name: GroupEntry(str(g.get("hash", "")), tuple(g.get("services") or ()), dict(g.get("images") or {}),
                             tuple(g.get("post_deploy") or ()))
            for name, g in (data.get("groups") or {}).items()
        }
        networks = data.get("networks")
        return cls(str(data.get("project", "")), tuple(data.get("order") or groups), groups,
                   dict(data.get("files") or {}), dict(networks) if isinstance(networks, Mapping) else {}, data)

    @classmethod
    def parse(cls, text: str) -> Manifest:
        return cls.from_dict(json.loads(text))

    def images(self, groups: Iterable[str] | None = None) -> tuple[str, ...]:
        """Every image of these groups (default: all), in deploy order, each once."""
        names = self.order if groups is None else groups
        return tuple(dict.fromkeys(image for g in names for image in self.groups[g].images.values()))

    def hashes(self) -> dict[str, str]:
        return {name: self.groups[name].hash for name in self.order if name in self.groups}

    def owners(self) -> dict[str, str]:
        """Image reference -> the service that runs it."""
        return {image: name for g in self.groups.values() for name, image in g.images.items()}

"""Each group's rollback target: the files of its last healthy deploy, copied on the site to
.rollback/<group>/ with a record of that deploy (its manifest entry and file digests) before a
changed group is written. A group whose update fails goes back to them by itself; `aini
rollback GROUP` goes back to them on request. Their images stay on the engine: AINI removes
no image, and Watchtower's cleanup is off.

A copy is taken only while the group's files on the site are the ones the deployed record
proved healthy (their digests agree): a run killed after writing new files leaves unproven
files behind, and those never replace a good target."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..render.bundle import BundleFile

if TYPE_CHECKING:
    from ..sites.base import Site

ROLLBACK = ".rollback"


@dataclass(frozen=True)
class DataBack:
    """How a group's data returns to the backup taken just before its update."""

    run: str  # the backup run
    put_back: Callable[[], None]  # with the group's old files in place: its data restored from `run`, the
    #                               group started at the old version and healthy (else AiniError)
    # A new major that cannot read its data: `set_aside` (before the new files: the group stopped,
    # the data copied aside, its volume emptied), then `move` (with them: the new major on the empty
    # volume, the dump of `run` restored into it). Each raises AiniError when it fails.
    set_aside: Callable[[], None] | None = None
    move: Callable[[], None] | None = None


@dataclass(frozen=True)
class Target:
    group: str
    entry: Mapping  # the group's entry in the deployed record: hash, services, images, post_deploy
    files: Mapping[str, BundleFile]  # bundle path -> content, as that deploy wrote it
    backup: str | None = None  # the run that saved the group's data just before it changed from this

    @property
    def digests(self) -> dict[str, str]:
        return {path: f.digest for path, f in self.files.items()}

    @property
    def images(self) -> dict[str, str]:
        return dict(self.entry.get("images") or {})

    def shown(self) -> str:
        """Its images, as messages name them: `service image, ...`."""
        return ", ".join(f"{s} {i}" for s, i in self.images.items())


def proven(deployed: Mapping | None, group: str, read: Callable[[str], str | None],
           private: Callable[[str], bool]) -> Target | None:
    """The group's files on the site, when the deployed record says they came up healthy and
    they are still exactly those; else None."""
    entry = ((deployed or {}).get("groups") or {}).get(group)
    digests = {p: d for p, d in ((deployed or {}).get("files") or {}).items() if p.startswith(group + "/")}
    if not entry or not digests:
        return None
    files = {}
    for path, digest in digests.items():
        text = read(path)
        if text is None or BundleFile(text).digest != digest:
            return None
        files[path] = BundleFile(text, private(path))
    return Target(group, dict(entry), files)


def keep(site: Site, target: Target) -> None:
    """The target copied beside the bundle; its record written last, so a copy cut short is
    never taken for a whole one (`load` checks every digest)."""
    where = f"{ROLLBACK}/{target.group}"
    site.sync(where, {f"{ROLLBACK}/{p}": f for p, f in target.files.items()}, ())
    site.write(f"{where}.json", json.dumps({"entry": target.entry, "backup": target.backup, "files": {
        p: {"digest": f.digest, "private": f.private} for p, f in target.files.items()}}, indent=2, sort_keys=True))


def load(site: Site, group: str) -> Target | None:
    """The group's rollback target, None when there is none or its copy is not whole."""
    text = site.read(f"{ROLLBACK}/{group}.json")
    try:
        record = json.loads(text) if text is not None else None
        entry, listed = record["entry"], record["files"]
    except (ValueError, KeyError, TypeError):
        return None
    files = {}
    for path, info in listed.items():
        content = site.read(f"{ROLLBACK}/{path}")
        file = BundleFile(content or "", bool(info.get("private", True)))
        if content is None or file.digest != info.get("digest"):
            return None
        files[path] = file
    return Target(group, entry, files, record.get("backup"))

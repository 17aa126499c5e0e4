"""Version changes, decided without I/O: per service, the image its container runs now (read
from the site; the deployed record where the container cannot tell) against the bundle's,
judged by the catalog's `Upgrade` rule. The plan shows each change with what happens to the
data; `aini up` refuses, before anything changes, one the data cannot take."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..catalog.model import Upgrade
from ..render.manifest import Manifest

# The version a tag starts with, ended by the tag or a variant (`-bookworm`): a content hash
# that happens to start with a digit is no version.
_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?=$|[-_+])")


def tag_of(image: str) -> str | None:
    """The tag of an image reference (digest dropped); None for a bare name or an image ID."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return tag if name and name != "sha256" and tag and "/" not in tag else None


def version_of(image: str) -> tuple[int, ...] | None:
    """The version a tag starts with: `17.11-bookworm` -> (17, 11), `v3.7.15` -> (3, 7, 15)."""
    tag = tag_of(image)
    found = _VERSION.match(tag) if tag else None
    return tuple(int(n) for n in found.group(1).split(".")) if found else None


def normal(image: str) -> str:
    """The reference as Docker resolves it: `nextcloud:34` and `docker.io/library/nextcloud:34`
    are one image (`docker ps` shows the short form)."""
    first, _, rest = image.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        image = "docker.io/" + image
    host, _, path = image.partition("/")
    if host == "docker.io" and "/" not in path.split(":", 1)[0].split("@", 1)[0]:
        image = f"docker.io/library/{path}"
    return image


@dataclass(frozen=True)
class VersionChange:
    service: str
    current: str  # the image running now
    new: str  # the bundle's
    path: str = ""  # what happens to the data, as the plan says it
    refused: str | None = None  # why `aini up` will not make this change, and the way through
    moves: bool = False  # its data moves to a new major by dump and restore (Upgrade.by_dump)
    major: bool = False  # across a major release, either way

    def line(self) -> str:
        same_repo = normal(self.current).rsplit(":", 1)[0] == normal(self.new).rsplit(":", 1)[0]
        current, new = (tag_of(self.current), tag_of(self.new)) if same_repo else (self.current, self.new)
        text = f"~ {self.service:<14} {current} → {new}"
        if self.refused:
            return f"{text}: refused ({self.path or 'see below'})"
        return f"{text}: {self.path}" if self.path else text


def _series(version: tuple[int, ...], rule: Upgrade) -> tuple[int, ...]:
    return (version + (0,) * rule.series)[: rule.series]


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def judge(service: str, current: str, new: str, rule: Upgrade | None) -> VersionChange:
    """One service's change from `current` to `new` under its rule."""
    if rule is None:
        return VersionChange(service, current, new)
    before, after = version_of(current), version_of(new)
    if before is None or after is None:
        unknown = current if before is None else new
        return VersionChange(service, current, new, "version unknown", (
            f"{service}: cannot tell the version of {unknown}, so not whether its data must be migrated; "
            f"pin a tag that starts with the version (images.overrides.{service}), as the catalog's do"))
    old_major, new_major = _series(before, rule), _series(after, rule)
    shown = f"{service} {tag_of(current)} → {tag_of(new)}"
    where = f" ({rule.source})" if rule.source else ""
    if after < before:
        if rule.downgrade == "refused" or (rule.downgrade == "within-major" and new_major != old_major):
            return VersionChange(service, current, new, "downgrade", major=new_major != old_major, refused=(
                f"{shown} is a downgrade, and {service} cannot open data a newer version wrote{where}. "
                f"Pin {tag_of(current)} again (images.overrides.{service}), or restore a backup made by "
                f"{tag_of(new)} first"))
        return VersionChange(service, current, new, major=new_major != old_major)
    if new_major == old_major:
        return VersionChange(service, current, new)
    if rule.one_major_at_a_time and new_major[0] - old_major[0] > 1:
        steps = [(m,) + (0,) * (rule.series - 1) for m in range(old_major[0] + 1, new_major[0])]
        path = " → ".join(_dotted(v) for v in (old_major, *steps, new_major))
        return VersionChange(service, current, new, path, major=True, refused=(
            f"{shown} skips a major release; {service} moves one major at a time{where}: {path}. "
            f"Deploy each in turn with images.overrides.{service}"))
    major = f"{_dotted(old_major)} → {_dotted(new_major)}: {rule.major}"
    if not rule.automatic:
        return VersionChange(service, current, new, major, major=True, refused=(
            f"{shown} needs {rule.major}{where}, which aini up does not do yet. To deploy the rest, "
            f"keep it at its version: images.overrides.{service}: {current}"))
    return VersionChange(service, current, new, major, moves=rule.by_dump, major=True)


def current_images(containers: Mapping[str, str], deployed: Manifest | None) -> dict[str, str]:
    """Service -> the image it runs now: its container's, unless that names no version (an
    image ID: the tag moved since), then the deployed record's."""
    result = {name: image for g in (deployed.groups.values() if deployed else ()) for name, image in g.images.items()}
    result |= {name: image for name, image in containers.items() if tag_of(image) is not None or name not in result}
    return result


def version_changes(current: Mapping[str, str], new: Mapping[str, str],
                    rules: Mapping[str, Upgrade | None]) -> tuple[VersionChange, ...]:
    """Every service whose image changes, in the bundle's order; a service new to the site
    has no current version and no change."""
    return tuple(judge(s, current[s], image, rules.get(s)) for s, image in new.items()
                 if s in current and normal(current[s]) != normal(image))


def refusal(changes: tuple[VersionChange, ...]) -> str | None:
    """The message `aini up` stops with, when any change is refused."""
    refused = [c.refused for c in changes if c.refused]
    if not refused:
        return None
    return "refused before anything changed:\n" + "\n".join(f"  - {r}" for r in refused)

"""What is deployed where: the bundle's manifest narrowed to the groups that came up, saved
on the site after each group, so a run that dies resumes from there."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..sites.base import Site

DEPLOYED_MANIFEST = "manifest.json"


def parse_deployed(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # damaged: every group is deployed again (compose keeps what is right)


def updated_deployed(deployed: Mapping | None, manifest: Mapping, group: str, digest: str | None) -> dict:
    """The deployed manifest after `group` came up (digest) or went down (None)."""
    if digest is None:
        return replaced(deployed, manifest, group, None, {})
    return replaced(deployed, manifest, group, dict(manifest["groups"][group], hash=digest),
                    {p: d for p, d in manifest["files"].items() if p.startswith(group + "/")})


def replaced(deployed: Mapping | None, manifest: Mapping, group: str, entry: Mapping | None,
             files: Mapping[str, str]) -> dict:
    """The deployed manifest with `group` running `entry` from `files` (path -> digest), or
    not running (None): a rollback puts back an entry that is not the bundle's."""
    result = dict(deployed or {"format": 1, "groups": {}, "files": {}})
    result.update({k: manifest[k] for k in ("project", "domain", "aini_version", "order") if k in manifest})
    groups = dict(result.get("groups", {}))
    kept = {p: d for p, d in result.get("files", {}).items() if not p.startswith(group + "/")}
    if entry is None:
        groups.pop(group, None)
    else:
        groups[group] = dict(entry)
        kept |= files
    result["groups"] = groups
    result["files"] = dict(sorted(kept.items()))
    return result


def deployed_text(deployed: Mapping) -> str:
    return json.dumps(deployed, indent=2, sort_keys=True) + "\n"


def record(site: Site, deployed: Mapping | None, manifest: Mapping, group: str, digest: str | None) -> dict:
    """Save, after each group, what is deployed: a run that dies later resumes from here."""
    result = updated_deployed(deployed, manifest, group, digest)
    site.write(DEPLOYED_MANIFEST, deployed_text(result))
    return result


def record_entry(site: Site, deployed: Mapping | None, manifest: Mapping, group: str, entry: Mapping,
                 files: Mapping[str, str]) -> dict:
    """Save that `group` runs `entry` again (a rollback target), not the bundle's."""
    result = replaced(deployed, manifest, group, entry, files)
    site.write(DEPLOYED_MANIFEST, deployed_text(result))
    return result

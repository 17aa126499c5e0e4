"""The deploy bundle: every file the host needs, with a manifest of content hashes.

`render` is pure: the same config and secrets give byte-identical files. `write` puts a
bundle on disk (env files and the users file 0600) and replaces an older bundle whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__, catalog
from ..errors import InputError
from ..project import write_private
from ..yamltext import dump
from . import compose
from .manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from ..catalog.model import Context, ServiceSpec
    from ..config import AiniConfig
    from ..store import SecretStore



@dataclass(frozen=True)
class BundleFile:
    content: str
    private: bool = False  # 0600: holds secrets (env files) or credentials (users)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


Bundle = dict[str, BundleFile]


def render(config: AiniConfig, store: SecretStore) -> Bundle:
    ctx = catalog.context(config)
    specs = catalog.enabled(config)
    files: Bundle = {}
    groups = catalog.groups(specs)
    internal = compose.internal_networks(groups)
    for group, members in groups.items():
        env_files: set[str] = set()
        for spec in members:
            env_text = _env_file(spec, ctx, store)
            if env_text:
                files[f"{group}/{spec.name}.env"] = BundleFile(env_text, private=True)
                env_files.add(spec.name)
            if spec.files:
                for path, content in spec.files.render(ctx).items():
                    files[f"{group}/{path}"] = BundleFile(content)
        if group == "traefik":
            files["traefik/users"] = BundleFile(store.admin_htpasswd(config.admin.user) + "\n", private=True)
        files[f"{group}/compose.yml"] = BundleFile(dump(compose.project(group, members, ctx, env_files, internal)))
    files[MANIFEST] = BundleFile(_manifest(config, specs, files))
    return dict(sorted(files.items()))


def _env_file(spec: ServiceSpec, ctx: Context, store: SecretStore) -> str:
    _, refs = compose.split_env(spec, ctx)
    lines = []
    for key, ref in sorted(refs.items()):
        value = store.get(ref.secret)  # type: ignore[union-attr]
        if value is not None and ref.hashed:  # type: ignore[union-attr]
            value = store.bcrypt(ref.secret)  # type: ignore[union-attr]
        if value is None:
            if ref.optional:  # type: ignore[union-attr]
                continue
            raise InputError(_missing(spec, ref.secret))  # type: ignore[union-attr]
        # Single quotes: compose reads the value literally (no ${} interpolation).
        lines.append(f"{key}='{ref.template.format(value)}'")  # type: ignore[union-attr]
    return "".join(line + "\n" for line in lines)


def _missing(spec: ServiceSpec, name: str) -> str:
    user = {s.name: s for s in spec.user_secrets}
    if name in user:
        return (
            f"{spec.name} needs the secret '{name}' ({user[name].description}): export {user[name].env_var} "
            "and run the command again; AINI keeps it in .aini/, never in aini.yml"
        )
    return f"the secret '{name}' of {spec.name} is missing from the store"


def _manifest(config: AiniConfig, specs: list[ServiceSpec], files: Bundle) -> str:
    groups = {}
    for group, members in catalog.groups(specs).items():
        ctx = catalog.context(config)
        steps = [{"container": s.container, "user": step.user, "script": step.script,
                  "description": step.description, "workdir": step.workdir}
                 for s in members for step in s.post_deploy(ctx)]
        paths = sorted(p for p in files if p.startswith(group + "/"))
        parts = [f"{p}\0{files[p].digest}\n" for p in paths]
        if steps:  # a changed step re-runs the group, as a changed file does
            parts.append(json.dumps(steps, sort_keys=True))
        digest = hashlib.sha256("".join(parts).encode()).hexdigest()
        groups[group] = {
            "hash": digest,
            "services": [s.name for s in members],
            "images": {s.name: compose.image_ref(s, ctx) for s in members},
        }
        if steps:
            groups[group]["post_deploy"] = steps
    manifest = {
        "format": 1,
        "aini_version": __version__,
        "project": config.project,
        "domain": config.domain,
        "order": list(groups),
        "groups": groups,
        "files": {p: f.digest for p, f in sorted(files.items())},
        # created by the deploy before the first group (deploy.plan)
        "networks": {g: {"name": n, "internal": True}
                     for g, n in compose.internal_networks(catalog.groups(specs)).items()},
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def write(bundle: Bundle, out: Path) -> None:
    """Write to a sibling directory, then swap it in: a crash leaves the old bundle or the
    new one, never a mix. An existing directory is replaced only if it is a bundle."""
    out = out.resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise InputError(f"{out} exists and is not an AINI bundle; choose an empty or new directory")
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o755)
    for path, file in bundle.items():
        target = staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.private:
            write_private(target, file.content)
        else:
            target.write_text(file.content, encoding="utf-8")
            os.chmod(target, 0o644)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def read_bundle(directory: Path) -> Bundle:
    """A bundle written by `aini render` (files of mode 0600 are the private ones)."""
    if not (directory / MANIFEST).is_file():
        raise InputError(f"{directory} is not an AINI bundle (no {MANIFEST}); run 'aini render'")
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        files[rel] = BundleFile(path.read_text(encoding="utf-8"), private=not path.stat().st_mode & 0o077)
    return files


def manifest_of(files: Bundle) -> Manifest:
    """The bundle's manifest, parsed (once per bundle)."""
    return Manifest.parse(files[MANIFEST].content)

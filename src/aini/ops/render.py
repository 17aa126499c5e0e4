"""`aini render`, and the secrets every render needs: generated once into the local store,
user secrets imported from AINI_SECRET_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import catalog
from ..catalog import backup as backup_catalog
from ..project import Project
from ..render import bundle
from ..store import SecretStore
from .plan import check


@dataclass(frozen=True)
class RenderResult:
    out: Path
    files: int
    groups: dict[str, str]
    generated: list[str]
    imported: list[str]


def prepare_secrets(project: Project) -> tuple[SecretStore, list[str], list[str]]:
    specs = check(project.config)
    store = SecretStore(project.aini_dir)
    config = project.config
    generated = store.ensure([*catalog.secrets_for(specs), *backup_catalog.secrets(config)])
    imported = store.import_from_env([*catalog.user_secrets_for(specs), *backup_catalog.user_secrets(config)])
    return store, generated, imported


def render_bundle(project: Project, out: Path) -> RenderResult:
    store, generated, imported = prepare_secrets(project)
    files = bundle.render(project.config, store)
    store.save()  # before the bundle: every value in it must be recoverable from the store
    bundle.write(files, out)
    groups = bundle.manifest_of(files).hashes()
    return RenderResult(out.resolve(), len(files), groups, generated, imported)

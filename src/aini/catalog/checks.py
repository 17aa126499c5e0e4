"""Validation of aini.yml that needs the catalog: the models in aini.config know the
fields, not which service answers on which subdomain."""

from __future__ import annotations

from pathlib import Path

from ..config import AiniConfig, load_config, validate_data
from ..errors import ConfigError
from . import CATALOG, routed, subdomain_of


def problems(config: AiniConfig) -> list[str]:
    """One line per problem, named by the field to change."""
    found = []
    owners: dict[str, str] = {}
    for spec in CATALOG:
        if routed(spec, config) and spec.enabled(config):
            sub = subdomain_of(spec, config)
            if sub in owners:
                found.append(f"services.{spec.group}.subdomain: '{sub}' is already used by {owners[sub]}; "
                             "choose another")
            owners.setdefault(sub, spec.group)
    return found


def validated(config: AiniConfig, source: str) -> AiniConfig:
    found = problems(config)
    if found:
        raise ConfigError(source, found)
    return config


def validate(data: dict, source: str, base_dir: Path | None = None) -> AiniConfig:
    """aini.config.validate_data, then the catalog's checks: a valid AiniConfig or ConfigError."""
    return validated(validate_data(data, source, base_dir), source)


def load(path: Path) -> AiniConfig:
    """aini.yml read, parsed and validated, the catalog's checks included."""
    return validated(load_config(path), str(path))

"""What backups need beyond the services' own entries: the pinned restic image, the
repository password AINI generates, and the credentials each kind of repository takes from
the user (AINI_SECRET_* variables, like every user secret).

Facts relied on (restic 0.18 documentation, "Preparing a new repository"; tests/harness/
images/UPSTREAM.md): restic reads the password from RESTIC_PASSWORD, S3 credentials from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and a rest-server's HTTP credentials from
RESTIC_REST_USERNAME/RESTIC_REST_PASSWORD (restic >= 0.17)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Secret, Tool, UserSecret

if TYPE_CHECKING:
    from ..config import AiniConfig

RESTIC = Tool("restic", "docker.io/restic/restic", "0.18.0")
TOOLS = (RESTIC,)

REPOSITORY_PASSWORD = Secret(
    "restic_password", 40, "alnum", rotatable=False,
    description="encrypts the backup repository: without it no backup can be read",
)

# scheme -> (user secret, the variable restic reads it from, required)
CREDENTIALS: dict[str, tuple[tuple[UserSecret, str, bool], ...]] = {
    "s3:": (
        (UserSecret("backup_s3_access_key", "S3 access key of backup.repository"), "AWS_ACCESS_KEY_ID", True),
        (UserSecret("backup_s3_secret_key", "S3 secret key of backup.repository"), "AWS_SECRET_ACCESS_KEY", True),
    ),
    "rest:": (
        (UserSecret("backup_rest_username", "rest-server user (when it checks .htpasswd)"), "RESTIC_REST_USERNAME",
         False),
        (UserSecret("backup_rest_password", "rest-server password"), "RESTIC_REST_PASSWORD", False),
    ),
}


def enabled(config: AiniConfig) -> bool:
    return config.backup.repository is not None


def scheme(repository: str) -> str:
    return next((s for s in CREDENTIALS if repository.startswith(s)), "")


def credentials(config: AiniConfig) -> tuple[tuple[UserSecret, str, bool], ...]:
    return CREDENTIALS.get(scheme(config.backup.repository or ""), ())


def secrets(config: AiniConfig) -> tuple[Secret, ...]:
    return (REPOSITORY_PASSWORD,) if enabled(config) else ()


def user_secrets(config: AiniConfig) -> tuple[UserSecret, ...]:
    return tuple(secret for secret, _, _ in credentials(config))


def vault_paths(config: AiniConfig) -> dict[str, str]:
    """Where Vault keeps them (KV paths under backup/), beside the services' secrets."""
    return {s.name: f"backup/{s.name}" for s in (*secrets(config), *user_secrets(config))}

"""The local secret store: `.aini/secrets.json` beside aini.yml, mode 0600, git-ignored.

Secrets are generated once with `secrets` and reused on every render. Nothing here prints
or logs a value; callers get names, never values, unless they render an env file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as random
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

from .catalog.model import Secret, UserSecret
from .errors import AiniError, InputError
from .project import ensure_private, write_private

STORE_FILE = "secrets.json"
_ALPHABETS = {"alnum": string.ascii_letters + string.digits, "hex": "0123456789abcdef"}
_FORBIDDEN_IN_VALUES = ("'", "\n", "\r", "\0")


def generate(secret: Secret) -> str:
    if secret.alphabet == "urlsafe":
        return random.token_urlsafe(secret.length)[: secret.length]
    if secret.alphabet == "key32":
        return base64.b64encode(random.token_bytes(32)).decode()
    alphabet = _ALPHABETS[secret.alphabet]
    return "".join(random.choice(alphabet) for _ in range(secret.length))


class SecretStore:
    """Values by name: generated ones, user-provided ones, and derived ones (a bcrypt hash)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / STORE_FILE
        self._data: dict[str, dict[str, str]] = {"generated": {}, "user": {}, "derived": {}}
        self._dirty = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InputError(f"{self.path} is readable by others (mode {mode:o}); run: chmod 600 {self.path}")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AiniError(f"{self.path} cannot be read ({type(exc).__name__}); restore it from your backup") from None
        for section in self._data:
            values = data.get(section, {})
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise AiniError(f"{self.path}: section '{section}' is damaged; restore it from your backup")
            self._data[section] = dict(values)

    # --- reading -------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        for section in ("generated", "user", "derived"):
            if name in self._data[section]:
                return self._data[section][name]
        return None

    def names(self) -> list[str]:
        return sorted({n for section in self._data.values() for n in section})

    def values(self) -> list[str]:
        """Every stored value: for tests and log scrubbing, never for display."""
        return [v for section in self._data.values() for v in section.values()]

    # --- writing -------------------------------------------------------------------
    def ensure(self, wanted: Iterable[Secret]) -> list[str]:
        """Generate the missing ones; return the names generated now."""
        created = []
        for secret in wanted:
            if secret.name not in self._data["generated"]:
                self._data["generated"][secret.name] = generate(secret)
                created.append(secret.name)
        self._dirty |= bool(created)
        return created

    def set_user(self, name: str, value: str) -> None:
        if not value or any(c in value for c in _FORBIDDEN_IN_VALUES):
            raise InputError(f"the value for {name} is empty or holds a quote or line break")
        if self._data["user"].get(name) != value:
            self._data["user"][name] = value
            self._dirty = True

    def adopt(self, name: str, value: str) -> None:
        """Take a value from elsewhere (Vault, `aini secrets set`) for a generated or user secret."""
        if not value or any(c in value for c in _FORBIDDEN_IN_VALUES):
            raise InputError(f"the value for {name} is empty or holds a quote or line break")
        section = "generated" if name in self._data["generated"] else "user"
        if self._data[section].get(name) != value:
            self._data[section][name] = value
            self._dirty = True

    def import_from_env(self, wanted: Iterable[UserSecret], environ: Mapping[str, str] = os.environ) -> list[str]:
        """Take user secrets from AINI_SECRET_<NAME> variables (never argv); return their names."""
        taken = []
        for secret in wanted:
            value = environ.get(secret.env_var)
            if value:
                self.set_user(secret.name, value)
                taken.append(secret.name)
        return taken

    def admin_htpasswd(self, user: str) -> str:
        """`user:bcrypt-hash` for Traefik."""
        return self._kept_bcrypt("admin_password", "admin_htpasswd", f"{user}:")

    def bcrypt(self, name: str) -> str:
        """The bcrypt hash of secret `name` (n8n's owner password)."""
        return self._kept_bcrypt(name, f"{name}_bcrypt")

    def _kept_bcrypt(self, name: str, key: str, prefix: str = "") -> str:
        """`prefix` + the bcrypt hash of secret `name`. Bcrypt salts each hash, so the hash is
        kept (keyed by a fingerprint of the value) to keep the bundle byte-identical between renders."""
        password = self.get(name)
        if password is None:
            raise AiniError(f"the secret {name} has not been generated yet")
        fingerprint = hashlib.sha256(f"{prefix}{password}".encode()).hexdigest()[:16]
        stored = self._data["derived"].get(key, "")
        if not stored.startswith(fingerprint + " "):
            import bcrypt

            digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
            stored = f"{fingerprint} {prefix}{digest}"
            self._data["derived"][key] = stored
            self._dirty = True
        return stored.split(" ", 1)[1]

    def save(self) -> None:
        if not self._dirty:
            return
        ensure_private(self.directory)
        write_private(self.path, json.dumps({"format": 1, **self._data}, indent=2, sort_keys=True) + "\n")
        self._dirty = False


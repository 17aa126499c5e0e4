"""The break-glass material: Vault's unseal key shares and root token, and Consul's
bootstrap token. They exist on the operator's machine only, in `.aini/breakglass.enc`
(mode 0600), encrypted with a passphrase; never on the server, never in plaintext on disk.

The file is a versioned JSON envelope: scrypt (salt and cost parameters stored with it)
derives 64 bytes from the passphrase; the first 32 are the AES-256-GCM key, the SHA-256
of the last 32 is stored as a passphrase check. So a wrong passphrase and a damaged file
give different messages, at no cost to security: testing a guess against the check costs
the same scrypt run as testing it against the cipher. Every envelope field besides the
ciphertext is authenticated as GCM associated data.

The passphrase comes from AINI_BREAKGLASS_PASSPHRASE or a hidden prompt, never from argv.
"""

from __future__ import annotations

import base64
import dataclasses
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Not a direct dependency of ours (yet): ansible-core requires it.
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import AiniError, InputError
from ..secrets import STORE_DIR, write_private

ENV_PASSPHRASE = "AINI_BREAKGLASS_PASSPHRASE"
FILE_NAME = "breakglass.enc"
FORMAT = "aini-breakglass"
VERSION = 1
MIN_PASSPHRASE = 12
# scrypt cost: 128 MiB and about half a second per derivation on a laptop. The bounds
# keep a tampered file from asking for absurd work.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_N_RANGE, _R_MAX, _P_MAX = (2**14, 2**20), 32, 16


class BreakGlassError(AiniError):
    """The break-glass file cannot be opened (exit 1)."""


@dataclass(frozen=True, repr=False)
class BreakGlass:
    vault_unseal_keys: tuple[str, ...] = ()
    vault_root_token: str | None = None
    consul_bootstrap_token: str | None = None

    def __repr__(self) -> str:
        return (f"BreakGlass(<{len(self.vault_unseal_keys)} unseal keys>, vault_root_token="
                f"{'<set>' if self.vault_root_token else None}, consul_bootstrap_token="
                f"{'<set>' if self.consul_bootstrap_token else None})")

    def replace(self, **changes: Any) -> BreakGlass:
        return dataclasses.replace(self, **changes)


def default_path(project_dir: Path) -> Path:
    """`.aini/breakglass.enc` beside aini.yml."""
    return project_dir / STORE_DIR / FILE_NAME


# ------------------------------------------------------------------------ passphrases


def passphrase_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get(ENV_PASSPHRASE) or None


def passphrase_from_prompt(*, confirm: bool, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """A hidden prompt; `confirm` asks twice (when the file is created)."""
    if prompt is getpass.getpass and not sys.stdin.isatty():
        raise InputError(f"no terminal to ask for the break-glass passphrase; set {ENV_PASSPHRASE}")
    passphrase = prompt("Break-glass passphrase: ")
    if confirm:
        check_new_passphrase(passphrase)
        if prompt("Repeat the passphrase: ") != passphrase:
            raise InputError("the two passphrases differ")
    elif not passphrase:
        raise InputError("the break-glass passphrase is empty")
    return passphrase


def check_new_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise InputError(f"the break-glass passphrase needs at least {MIN_PASSPHRASE} characters")


# -------------------------------------------------------------------- the envelope


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    out = Scrypt(salt=salt, length=64, n=n, r=r, p=p).derive(passphrase.encode())
    return out[:32], hashlib.sha256(out[32:]).digest()


def _aad(envelope: Mapping[str, Any]) -> bytes:
    header = {k: v for k, v in envelope.items() if k != "ciphertext"}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypt(material: BreakGlass, passphrase: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """The envelope, as the bytes of a JSON document."""
    check_new_passphrase(passphrase)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key, check = _derive(passphrase, salt, n, r, p)
    envelope: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt)},
        "cipher": {"name": "AES-256-GCM", "nonce": _b64(nonce)},
        "check": _b64(check),
    }
    plaintext = json.dumps({
        "vault": {"unseal_keys": list(material.vault_unseal_keys), "root_token": material.vault_root_token},
        "consul": {"bootstrap_token": material.consul_bootstrap_token},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }).encode()
    envelope["ciphertext"] = _b64(AESGCM(key).encrypt(nonce, plaintext, _aad(envelope)))
    return (json.dumps(envelope, indent=2) + "\n").encode()


def decrypt(data: bytes, passphrase: str, *, source: str = "the break-glass file") -> BreakGlass:
    damaged = BreakGlassError(f"{source} is damaged or was tampered with; restore it from your backup")
    try:
        envelope = json.loads(data)
        if envelope.get("format") != FORMAT:
            raise BreakGlassError(f"{source} is not an AINI break-glass file")
        if envelope.get("version") != VERSION:
            raise BreakGlassError(f"{source} has format version {envelope.get('version')!r}; this AINI reads "
                                  f"version {VERSION}")
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if (kdf["name"], cipher["name"]) != ("scrypt", "AES-256-GCM") or n & (n - 1) or \
                not _N_RANGE[0] <= n <= _N_RANGE[1] or not 1 <= r <= _R_MAX or not 1 <= p <= _P_MAX:
            raise damaged
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(cipher["nonce"])
        stored_check, ciphertext = base64.b64decode(envelope["check"]), base64.b64decode(envelope["ciphertext"])
    except BreakGlassError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise damaged from None
    key, check = _derive(passphrase, salt, n, r, p)
    if not hmac.compare_digest(check, stored_check):
        raise BreakGlassError(f"wrong passphrase for {source}")
    try:
        content = json.loads(AESGCM(key).decrypt(nonce, ciphertext, _aad(envelope)))
        return BreakGlass(tuple(content["vault"]["unseal_keys"]), content["vault"]["root_token"],
                          content["consul"]["bootstrap_token"])
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise damaged from None


def save(path: Path, material: BreakGlass, passphrase: str, **kdf: int) -> None:
    """Encrypt and write atomically with mode 0600 (the directory 0700)."""
    data = encrypt(material, passphrase, **kdf)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, data.decode())


def load(path: Path, passphrase: str) -> BreakGlass:
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError:
        raise BreakGlassError(f"{path} does not exist: there is no break-glass material on this machine") from None
    except OSError as exc:
        raise BreakGlassError(f"{path} cannot be read ({type(exc).__name__})") from None
    if mode & 0o077:
        raise InputError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return decrypt(data, passphrase, source=str(path))

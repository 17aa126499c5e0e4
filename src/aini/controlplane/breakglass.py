"""The break-glass material: Vault's unseal key shares and root token, and Consul's
bootstrap token. They exist on the operator's machine only (mode 0600), encrypted in one
of two forms; never on the server, never in plaintext on disk. Each form has its own file,
so one is never opened as the other:

- `.aini/breakglass.enc`, with a passphrase (the default). A versioned JSON envelope: scrypt
  (salt and cost parameters stored with it) derives 64 bytes from the passphrase; the first
  32 are the AES-256-GCM key, the SHA-256 of the last 32 is stored as a passphrase check.
  So a wrong passphrase and a damaged file give different messages, at no cost to security:
  testing a guess against the check costs the same scrypt run as testing it against the
  cipher. Every envelope field besides the ciphertext is authenticated as GCM associated
  data. The passphrase comes from AINI_BREAKGLASS_PASSPHRASE or a hidden prompt, never argv.
- `.aini/breakglass.age`, with age to the X25519 recipients of `services.vault.age_recipients`
  (ASCII-armored, so `age -d -i FILE` opens it too). Sealing needs only those public keys, so
  a deploy writes new material without asking anything; opening needs the identity file
  named by AINI_BREAKGLASS_AGE_IDENTITY.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import AiniError, InputError
from ..project import private_dir, write_private

ENV_PASSPHRASE = "AINI_BREAKGLASS_PASSPHRASE"
ENV_AGE_IDENTITY = "AINI_BREAKGLASS_AGE_IDENTITY"
FILE_NAME = "breakglass.enc"
AGE_FILE_NAME = "breakglass.age"
RECIPIENTS_FIELD = "services.vault.age_recipients"
REKEY_COMMAND = "aini vault rekey-breakglass"
FORMAT = "aini-breakglass"
VERSION = 1
MIN_PASSPHRASE = 12
# scrypt cost: 128 MiB and about half a second per derivation on a laptop. The bounds
# keep a tampered file from asking for absurd work.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_N_RANGE, _R_MAX, _P_MAX = (2**14, 2**20), 32, 16


class BreakGlassError(AiniError):
    """The break-glass file cannot be opened (exit 1)."""


KEEP_RETIRED = 3


@dataclass(frozen=True, repr=False)
class BreakGlass:
    vault_unseal_keys: tuple[str, ...] = ()
    vault_root_token: str | None = None
    consul_bootstrap_token: str | None = None
    # The keys of a Vault and the token of a Consul that were initialised anew (a new server, a
    # lost volume), oldest first: their snapshots, restored onto the new ones, need them again.
    retired_vaults: tuple[tuple[tuple[str, ...], str | None], ...] = ()
    retired_consuls: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"BreakGlass(<{len(self.vault_unseal_keys)} unseal keys>, vault_root_token="
                f"{'<set>' if self.vault_root_token else None}, consul_bootstrap_token="
                f"{'<set>' if self.consul_bootstrap_token else None}, <{len(self.retired_vaults)} retired "
                f"Vaults, {len(self.retired_consuls)} retired Consuls>)")

    def replace(self, **changes: Any) -> BreakGlass:
        """With new Vault keys or a new Consul token, the ones they replace are retired, not lost."""
        keys, token = changes.get("vault_unseal_keys"), changes.get("consul_bootstrap_token")
        if keys is not None and self.vault_unseal_keys and tuple(keys) != self.vault_unseal_keys:
            changes.setdefault("retired_vaults", (*self.retired_vaults,
                                                  (self.vault_unseal_keys, self.vault_root_token))[-KEEP_RETIRED:])
        if token is not None and self.consul_bootstrap_token and token != self.consul_bootstrap_token:
            changes.setdefault("retired_consuls", (*self.retired_consuls,
                                                   self.consul_bootstrap_token)[-KEEP_RETIRED:])
        return dataclasses.replace(self, **changes)

    def vault_back(self, index: int) -> BreakGlass:
        """A retired Vault's keys current again (its snapshot was restored), the replaced ones retired
        in its place: they open the safety backup the restore took."""
        keys, root = self.retired_vaults[index]
        rest = tuple(v for i, v in enumerate(self.retired_vaults) if i != index)
        return dataclasses.replace(self, vault_unseal_keys=keys, vault_root_token=root,
                                   retired_vaults=(*rest, (self.vault_unseal_keys, self.vault_root_token)))

    def consul_back(self, index: int) -> BreakGlass:
        rest = tuple(t for i, t in enumerate(self.retired_consuls) if i != index)
        current = (self.consul_bootstrap_token,) if self.consul_bootstrap_token else ()
        return dataclasses.replace(self, consul_bootstrap_token=self.retired_consuls[index],
                                   retired_consuls=(*rest, *current))


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


def _plaintext(material: BreakGlass) -> bytes:
    """The JSON both forms encrypt."""
    return json.dumps({
        "vault": {"unseal_keys": list(material.vault_unseal_keys), "root_token": material.vault_root_token},
        "consul": {"bootstrap_token": material.consul_bootstrap_token},
        "retired": {"vaults": [{"unseal_keys": list(keys), "root_token": root} for keys, root in material.retired_vaults],
                    "consuls": list(material.retired_consuls)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }).encode()


def _material(plaintext: bytes, source: str) -> BreakGlass:
    try:
        content = json.loads(plaintext)
        retired = content.get("retired") or {}  # absent from files written before it existed
        return BreakGlass(tuple(content["vault"]["unseal_keys"]), content["vault"]["root_token"],
                          content["consul"]["bootstrap_token"],
                          tuple((tuple(v["unseal_keys"]), v["root_token"]) for v in retired.get("vaults", ())),
                          tuple(retired.get("consuls", ())))
    except (ValueError, KeyError, TypeError):
        raise _damaged(source) from None


def _damaged(source: str) -> BreakGlassError:
    return BreakGlassError(f"{source} is damaged or was tampered with; restore it from your backup")


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
    envelope["ciphertext"] = _b64(AESGCM(key).encrypt(nonce, _plaintext(material), _aad(envelope)))
    return (json.dumps(envelope, indent=2) + "\n").encode()


def decrypt(data: bytes, passphrase: str, *, source: str = "the break-glass file") -> BreakGlass:
    damaged = _damaged(source)
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
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _aad(envelope))
    except InvalidTag:
        raise damaged from None
    return _material(plaintext, source)


def write(path: Path, data: bytes) -> None:
    """Atomically with mode 0600 (the directory 0700). Both forms are text."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, data.decode("ascii"))


def read(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError:
        raise BreakGlassError(f"{path} does not exist: there is no break-glass material on this machine") from None
    except OSError as exc:
        raise BreakGlassError(f"{path} cannot be read ({type(exc).__name__})") from None
    if mode & 0o077:
        raise InputError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return data


def save(path: Path, material: BreakGlass, passphrase: str, **kdf: int) -> None:
    """Encrypt with a passphrase and write atomically with mode 0600 (the directory 0700)."""
    write(path, encrypt(material, passphrase, **kdf))


def load(path: Path, passphrase: str) -> BreakGlass:
    return decrypt(read(path), passphrase, source=str(path))


# ----------------------------------------------------------------------------- age


def age_identities(environ: Mapping[str, str] = os.environ) -> tuple[list[pyrage.x25519.Identity], Path]:
    """The X25519 identities of the file named by AINI_BREAKGLASS_AGE_IDENTITY (age-keygen's
    format: `#` comments, one AGE-SECRET-KEY-1... a line), and that file's path."""
    value = environ.get(ENV_AGE_IDENTITY)
    if not value:
        raise InputError(f"the break-glass file is age-encrypted: set {ENV_AGE_IDENTITY} to the path of your age "
                         "identity file (age-keygen -o FILE)")
    path = Path(value).expanduser()
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InputError(f"{path} ({ENV_AGE_IDENTITY}) is readable by others (mode {mode:o}); "
                             f"run: chmod 600 {path}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{ENV_AGE_IDENTITY} names {path}, which does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} ({ENV_AGE_IDENTITY}) cannot be read ({type(exc).__name__})") from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:  # the line itself is not repeated: it may be a key
            raise InputError(f"{path} line {number} is not an age X25519 identity (AGE-SECRET-KEY-1...)") from None
    if not identities:
        raise InputError(f"{path} ({ENV_AGE_IDENTITY}) holds no age identity")
    return identities, path


def _age_recipients(recipients: tuple[str, ...]) -> list[pyrage.x25519.Recipient]:
    if not recipients:
        raise InputError(f"{RECIPIENTS_FIELD} is empty: there is no one to encrypt the break-glass file to")
    try:
        return [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except pyrage.RecipientError:
        raise InputError(f"{RECIPIENTS_FIELD}: not an age X25519 recipient (age1...)") from None


_ARMOR = ("-----BEGIN AGE ENCRYPTED FILE-----", "-----END AGE ENCRYPTED FILE-----")


def check_age_header(data: bytes, recipients: int, source: str) -> None:
    """Without an identity, what can be checked: armored age, one X25519 stanza per recipient."""
    try:
        lines = data.decode("ascii").strip().splitlines()
        if (lines[0], lines[-1]) != _ARMOR:
            raise ValueError
        header = base64.b64decode("".join(lines[1:-1]), validate=True).split(b"\n---", 1)[0].split(b"\n")
    except (ValueError, IndexError):
        raise _damaged(source) from None
    if header[0] != b"age-encryption.org/v1" or sum(line.startswith(b"-> X25519 ") for line in header) != recipients:
        raise _damaged(source)


# ------------------------------------------------------------------------------ keys


class Key(Protocol):
    """One form of the break-glass file: how it is sealed and opened, and its file name."""

    form: ClassVar[str]
    file_name: ClassVar[str]
    environ: Mapping[str, str]  # where the passphrase or the identity file's path is read from

    def ready(self, *, new: bool) -> None:
        """Ask now for what sealing will need: before anything irreversible happens."""

    def seal(self, material: BreakGlass, *, new: bool) -> bytes:
        """`new`: no file of this form exists yet."""

    def open(self, data: bytes, source: str) -> BreakGlass: ...


@dataclass
class Passphrase:
    """The break-glass passphrase, asked for at most once per command."""

    form: ClassVar[str] = "passphrase"
    file_name: ClassVar[str] = FILE_NAME

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    prompt: Callable[..., str] | None = None
    _value: str | None = field(default=None, repr=False)

    def get(self, *, new: bool) -> str:
        if self._value is None:
            value = passphrase_from_env(self.environ)
            if value is None:
                if self.prompt is None and not sys.stdin.isatty():
                    raise InputError(f"the break-glass passphrase is needed: set {ENV_PASSPHRASE} "
                                     "or run the command in a terminal")
                value = passphrase_from_prompt(confirm=new, **({"prompt": self.prompt} if self.prompt else {}))
            if new:
                check_new_passphrase(value)
            self._value = value
        return self._value

    def ready(self, *, new: bool) -> None:
        self.get(new=new)

    def seal(self, material: BreakGlass, *, new: bool) -> bytes:
        return encrypt(material, self.get(new=new))

    def open(self, data: bytes, source: str) -> BreakGlass:
        return decrypt(data, self.get(new=False), source=source)


@dataclass
class AgeKey:
    """age to `recipients`; opened with the identities of AINI_BREAKGLASS_AGE_IDENTITY."""

    form: ClassVar[str] = "age"
    file_name: ClassVar[str] = AGE_FILE_NAME

    recipients: tuple[str, ...]
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    # What this process sealed: reading it back needs no identity, so the first deploy
    # (Vault's keys, then Consul's token into the same file) asks for nothing.
    _sealed: tuple[bytes, BreakGlass] | None = field(default=None, repr=False)

    def ready(self, *, new: bool) -> None:
        _age_recipients(self.recipients)

    def seal(self, material: BreakGlass, *, new: bool = False) -> bytes:
        data = pyrage.encrypt(_plaintext(material), _age_recipients(self.recipients), armored=True)
        self._sealed = (data, material)
        return data

    def open(self, data: bytes, source: str) -> BreakGlass:
        if self._sealed is not None and self._sealed[0] == data:
            return self._sealed[1]
        return self.decrypt(data, source)

    def decrypt(self, data: bytes, source: str) -> BreakGlass:
        identities, where = age_identities(self.environ)
        try:
            plaintext = pyrage.decrypt(data, identities)
        except pyrage.DecryptError as exc:
            if str(exc) == "No matching keys found":
                raise BreakGlassError(f"no identity in {where} matches {source}; it was encrypted to other "
                                      f"recipients") from None
            raise _damaged(source) from None
        return _material(plaintext, source)

    def can_decrypt(self) -> bool:
        """An identity is at hand and one of the recipients is its public key."""
        if not self.environ.get(ENV_AGE_IDENTITY):
            return False
        identities, _ = age_identities(self.environ)
        mine = {str(i.to_public()) for i in identities}
        return any(str(r) in mine for r in _age_recipients(self.recipients))


_FORMS: dict[str, str] = {FILE_NAME: "with a passphrase", AGE_FILE_NAME: "with age"}


def material_path(project_dir: Path, key: Key) -> Path:
    """The file of `key`'s form. When only the other form's file exists, refuse: switching
    forms is an explicit re-encryption, never a second file that silently appears."""
    path = private_dir(project_dir) / key.file_name
    if not path.exists():
        for name, how in _FORMS.items():
            other = path.with_name(name)
            if name != key.file_name and other.exists():
                wanted = f"age ({RECIPIENTS_FIELD} is set)" if key.form == "age" else \
                    f"a passphrase ({RECIPIENTS_FIELD} is empty)"
                raise InputError(f"aini.yml asks for the break-glass file encrypted with {wanted}, but {other} is "
                                 f"encrypted {how}; re-encrypt it with: {REKEY_COMMAND}")
    return path


# ---------------------------------------------------------------------------- rekey


@dataclass(frozen=True)
class Rekeyed:
    old: Path
    new: Path
    decrypted: bool  # the new file was decrypted back; else (age, no identity) only its header was checked


def rekey(project_dir: Path, target: Key, *, prompt: Callable[..., str] | None = None) -> Rekeyed:
    """`aini vault rekey-breakglass`: open the file in its present form, write it in the form
    of `target`, check the new file, and only then remove the old one."""
    directory = private_dir(project_dir)
    found = [directory / name for name in _FORMS if (directory / name).exists()]
    if not found:
        raise BreakGlassError(f"there is no break-glass file in {directory} to re-encrypt")
    if len(found) > 1:
        raise InputError(f"both {found[0]} and {found[1]} exist (an interrupted re-encryption?); move away the one "
                         f"you do not want and run {REKEY_COMMAND} again")
    old = found[0]
    if old.name == FILE_NAME and target.form == "passphrase":
        raise InputError(f"{old} is already encrypted with a passphrase, as aini.yml asks; to use age instead, "
                         f"set {RECIPIENTS_FIELD}")
    source: Key = Passphrase(target.environ, prompt) if old.name == FILE_NAME else AgeKey((), target.environ)
    material = source.open(read(old), str(old))
    new = directory / target.file_name
    data = target.seal(material, new=not new.exists())
    # Checked before it replaces anything; AgeKey.decrypt, not open: open would trust its own memory.
    if isinstance(target, AgeKey) and not target.can_decrypt():
        check_age_header(data, len(target.recipients), str(new))
        decrypted = False
    else:
        opened = target.decrypt(data, str(new)) if isinstance(target, AgeKey) else target.open(data, str(new))
        if opened != material:
            raise BreakGlassError(f"the re-encrypted {new} did not decrypt to the same material; {old} is unchanged")
        decrypted = True
    write(new, data)
    if new.read_bytes() != data:
        kept = f"; {old} is kept" if new != old else "; restore it from your backup"
        raise BreakGlassError(f"{new} did not read back as written{kept}")
    if new != old:
        old.unlink()
    return Rekeyed(old, new, decrypted)

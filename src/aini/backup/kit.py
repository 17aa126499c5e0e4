"""The recovery kit as bytes: the few files that turn an empty directory back into the
project (aini.yml, the secret store, the control plane's credentials, the break-glass file),
packed as one tar. Pure: ops.recovery stores and reads it.

The tar is deterministic (no times, owners or modes from the disk), so an unchanged kit has
an unchanged fingerprint and is not stored again. Unpacking takes only the names it knows,
as regular files: a kit is data from a repository someone else may hold, never a path to
write to."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping

CONFIG = "aini.yml"
PRIVATE_DIR = ".aini"
PRIVATE = tuple(f"{PRIVATE_DIR}/{name}" for name in ("secrets.json", "controlplane.json", "breakglass.enc",
                                                   "breakglass.age"))
NAMES = (CONFIG, *PRIVATE)
MAX_BYTES = 60 * 1024  # fed through a pipe in one write (runner.fed); aini.yml and .aini/ are a few KiB


class KitError(ValueError):
    """Not a kit this AINI wrote."""


def pack(files: Mapping[str, bytes]) -> bytes:
    unknown = set(files) - set(NAMES)
    if unknown:
        raise KitError(f"not kit files: {sorted(unknown)}")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o600, 0
            tar.addfile(info, io.BytesIO(files[name]))
    data = out.getvalue()
    if len(data) > MAX_BYTES:
        raise KitError(f"the recovery kit would be {len(data)} bytes; aini.yml and .aini/ are expected to stay "
                       f"under {MAX_BYTES}")
    return data


def unpack(data: bytes) -> dict[str, bytes]:
    """name -> content; KitError for anything but regular files of known names, each once."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.name not in NAMES or not member.isreg() or member.name in files:
                    raise KitError(f"unexpected entry {member.name!r} in the recovery kit")
                handle = tar.extractfile(member)
                files[member.name] = handle.read() if handle else b""
                try:
                    files[member.name].decode()
                except UnicodeDecodeError:
                    raise KitError(f"{member.name} in the recovery kit is not text") from None
    except tarfile.TarError as exc:
        raise KitError(f"the recovery kit is not a readable tar ({exc})") from None
    if CONFIG not in files:
        raise KitError("the recovery kit holds no aini.yml")
    return files


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]

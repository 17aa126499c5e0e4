#!/usr/bin/env python3
"""TEST DOUBLE of the `vault` CLI (and OpenBao's `bao`), only the commands AINI's catalog
runs inside the container, over HTTP to the double's API like the real CLI. Never shipped.

Upstream facts it keeps (hashicorp/vault command/*.go, docs/commands):
- the address is VAULT_ADDR, default https://127.0.0.1:8200: a plain-HTTP listener is not
  reached without VAULT_ADDR=http://...; the token is VAULT_TOKEN, else ~/.vault-token.
  OpenBao's `bao` reads the same names with the BAO_ prefix (UPSTREAM.md).
- `operator raft snapshot save <file>` opens the file lazily with O_CREATE|O_WRONLY|O_TRUNC,
  0600 (operator_raft_snapshot_save.go), so /dev/stdout works; exactly one argument.
- `operator raft snapshot restore [-force] <file>` opens it with os.Open (so /dev/stdin
  works) and POSTs it to sys/storage/raft/snapshot[-force].
- `token renew` without an argument renews the calling token (auth/token/renew-self).
- exit 1 for usage errors, 2 for errors talking to Vault."""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def fail(code: int, message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def call(prefix: str, method: str, path: str, body: bytes | None = None) -> bytes:
    address = os.environ.get(f"{prefix}_ADDR", "https://127.0.0.1:8200").rstrip("/")
    token = os.environ.get(f"{prefix}_TOKEN")
    if token is None:
        stored = Path.home() / f".{prefix.lower()}-token"
        token = stored.read_text().strip() if stored.is_file() else ""
    request = urllib.request.Request(f"{address}/v1/{path}", data=body, method=method,
                                     headers={"X-Vault-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.read()
    except urllib.error.HTTPError as exc:
        fail(2, f"Error making API request.\n\nURL: {method} {address}/v1/{path}\nCode: {exc.code}. Errors:\n\n"
                f"{exc.read().decode(errors='replace').strip()}")
    except (urllib.error.URLError, OSError) as exc:
        fail(2, f"Error making API request: {exc}")
    raise AssertionError


def main(argv: list[str]) -> None:
    prefix = "BAO" if os.environ.get("AINI_DOUBLE_CLI") == "bao" else "VAULT"
    args = argv[1:]
    if args[:2] == ["token", "renew"] and len(args) == 2:
        call(prefix, "PUT", "auth/token/renew-self", b"{}")
        print("Key                  Value\n---                  -----\ntoken_renewable      true")
        return
    if args[:3] == ["operator", "raft", "snapshot"] and len(args) >= 4:
        verb, rest = args[3], args[4:]
        force = verb == "restore" and "-force" in rest
        rest = [a for a in rest if not (verb == "restore" and a == "-force")]
        if len(rest) != 1:
            fail(1, f"Incorrect arguments (expected 1, got {len(rest)})")
        path = rest[0].strip()
        if verb == "save":
            data = call(prefix, "GET", "sys/storage/raft/snapshot")
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return
        if verb == "restore":
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                fail(2, f"Error opening policy file: {exc}")
            call(prefix, "POST", "sys/storage/raft/snapshot-force" if force else "sys/storage/raft/snapshot", data)
            return
    fail(1, f"vault (test double): not implemented: {' '.join(args)}")


if __name__ == "__main__":
    main(sys.argv)

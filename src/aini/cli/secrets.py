"""`aini secrets list|get|set|rotate` and `aini vault unseal|rekey-breakglass`. Values come
in on stdin or a hidden prompt and go out only on stdout when asked; never in argv."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..errors import InputError
from .app import app, err, load, run, state

secrets_app = typer.Typer(help="Secrets in Vault: list names, read, set or rotate one (values never in argv).",
                          no_args_is_help=True)
vault_app = typer.Typer(help="Vault operations.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
app.add_typer(vault_app, name="vault")


@secrets_app.command("list")
def secrets_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Every secret of the enabled services: name, kind, the env variables that carry it, whether Vault has it."""
    from ..ops import secrets  # lazy: startup time

    def action() -> None:
        rows = secrets.listing(load())
        if as_json:
            print(json.dumps(rows, indent=2, sort_keys=True))
            return
        for r in rows:
            flags = ("" if r["rotatable"] else " never-rotate") + ("" if r["in_vault"] else " NOT-IN-VAULT")
            print(f"{r['service']:<15} {r['name']:<30} {r['kind']:<9} {','.join(r['env']) or '-'}{flags}")

    run(action)


@secrets_app.command("get")
def secrets_get(
    service: str, key: str,
    show: Annotated[bool, typer.Option(help="Print it even though stdout is a terminal.")] = False,
) -> None:
    """Print one value from Vault to stdout (for a pipe; a terminal needs --show)."""
    from ..ops import secrets  # lazy: startup time

    def action() -> None:
        if sys.stdout.isatty() and not show:
            raise InputError("stdout is a terminal: pipe it (aini secrets get S K | ...) or add --show")
        print(secrets.get(load(), service, key))

    run(action)


@secrets_app.command("set")
def secrets_set(service: str, key: str) -> None:
    """Store a value (read from stdin or a hidden prompt) in Vault, then redeploy what uses it."""
    from ..ops import secrets  # lazy: startup time

    def action() -> None:
        project = load()
        ref = secrets.resolve(project.config, service, key)
        _put_and_redeploy(project, ref, secrets.read_value(ref.name), f"Stored {ref.name} in Vault.")

    run(action)


@secrets_app.command("rotate")
def secrets_rotate(
    service: str, key: str,
    force: Annotated[bool, typer.Option(help="Rotate even a key whose loss makes data unreadable.")] = False,
) -> None:
    """Generate a new value for a generated secret, store it in Vault, redeploy what uses it."""
    from ..ops import secrets  # lazy: startup time

    def action() -> None:
        project = load()
        ref = secrets.resolve(project.config, service, key)
        value = secrets.rotate_value(project.config, ref, force)
        if force and not ref.rotatable:
            err(f"warning: {ref.name} was rotated with --force: data encrypted with the old value is unreadable")
        _put_and_redeploy(project, ref, value, f"Rotated {ref.name}.")

    run(action)


def _put_and_redeploy(project, ref, value: str, done: str) -> None:
    """Vault and the working copy first; then only the groups whose env files changed."""
    from ..ops import secrets, up  # lazy: startup time

    secrets.put(project, ref, value)
    print(done)
    result = up.redeploy(project)
    print(f"Redeployed: {', '.join(result.touched) or 'nothing needed it'}.")


@vault_app.command("unseal")
def vault_unseal() -> None:
    """Unseal Vault with the keys from the break-glass file (its passphrase, or the age identity file)."""
    from ..ops import secrets  # lazy: startup time

    def action() -> None:
        print("Vault unsealed." if secrets.unseal(load()) else "Vault was not sealed.")

    run(action)


@vault_app.command("rekey-breakglass")
def vault_rekey_breakglass() -> None:
    """Re-encrypt the break-glass file in the form aini.yml asks for: age recipients or a passphrase."""
    from ..controlplane.bootstrap import key_for  # lazy: startup time
    from ..controlplane.breakglass import rekey  # lazy: startup time

    def action() -> None:
        done = rekey(state.project_dir, key_for(load().config))
        print(f"Re-encrypted {done.new} to the recipients in aini.yml." if done.old == done.new
              else f"Re-encrypted {done.old} as {done.new} (and removed {done.old.name}).")
        if not done.decrypted:
            print("Checked that it is age-encrypted to every recipient; set AINI_BREAKGLASS_AGE_IDENTITY to the "
                  "identity of one of them to have it decrypted back as well.")

    run(action)

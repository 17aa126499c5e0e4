"""The command line: thin Typer commands, each delegating to one function.

Domain errors become exit codes here and nowhere else: 2 for bad input, 1 for a failed
operation; a traceback only with --debug. Heavy modules are imported inside commands so
that `aini --help` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(
    name="aini",
    help="Your own AI and productivity workspace: LibreChat, n8n, Nextcloud + OnlyOffice behind Traefik, "
    "with Consul, Vault, Netdata and Watchtower.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class State:
    config_path = Path("aini.yml")
    debug = False

    @property
    def project_dir(self) -> Path:
        return self.config_path.resolve().parent


state = State()


def _version(value: bool) -> None:
    if value:
        print(f"aini {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[Path, typer.Option("-c", "--config", help="The aini.yml to read.")] = Path("aini.yml"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    state.config_path = config
    state.debug = debug


def _run(action: Callable[[], int | None]) -> None:
    from .errors import AiniError, ConfigError

    try:
        code = action()
    except ConfigError as exc:
        _err(f"error: {exc.source} is not valid:")
        for problem in exc.problems:
            _err(f"  - {problem}")
        raise typer.Exit(exc.exit_code) from None
    except AiniError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # the last line of defence: no traceback, no message that could hold a secret
        if state.debug:
            raise
        _err(f"internal error ({type(exc).__name__}); run again with --debug and report it")
        raise typer.Exit(1) from None
    raise typer.Exit(code or 0)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _load():
    from .config import load_config

    return load_config(state.config_path)


@app.command()
def init(
    domain: Annotated[Optional[str], typer.Option(help="Your domain; services live on its subdomains.")] = None,
    email: Annotated[Optional[str], typer.Option(help="ACME account and admin contact.")] = None,
    target: Annotated[str, typer.Option(help="hetzner, ssh or local.")] = "hetzner",
    server_type: Annotated[str, typer.Option(help="Hetzner server type (hetzner target).")] = "cx33",
    location: Annotated[str, typer.Option(help="Hetzner location (hetzner target).")] = "fsn1",
    host: Annotated[Optional[str], typer.Option(help="Server address (ssh target).")] = None,
    ssh_user: Annotated[str, typer.Option(help="SSH user (ssh target).")] = "root",
    ssh_port: Annotated[int, typer.Option(help="SSH port (ssh target).")] = 22,
    disable: Annotated[list[str], typer.Option(help="A service to leave out; repeatable.")] = [],  # noqa: B006
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="Ask nothing; use the flags.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing aini.yml.")] = False,
) -> None:
    """Write aini.yml and generate the secrets into .aini/ (never shown)."""
    from .init import InitAnswers, init_project

    def action() -> None:
        answers = InitAnswers(domain, email, target, server_type, location, host, ssh_user, ssh_port, list(disable))
        if not non_interactive:
            answers = answers.ask(typer.prompt)
        written, generated = init_project(state.config_path, answers, force=force)
        print(f"Wrote {written}.")
        print(f"Generated {generated} secrets into {state.project_dir / '.aini'} (mode 0600; not shown).")
        print("Next: aini plan")

    _run(action)


@app.command()
def validate() -> None:
    """Check aini.yml: exit 0 when valid, 2 with one line per problem."""
    from .plan import check

    def action() -> None:
        config = _load()
        specs = check(config)
        print(f"{state.config_path} is valid: {len(specs)} containers on target '{config.target.kind}'.")

    _run(action)


@app.command()
def schema() -> None:
    """Print aini.yml's JSON Schema (for editor completion)."""
    import json

    from .config import json_schema

    _run(lambda: print(json.dumps(json_schema(), indent=2, sort_keys=True)))


@app.command()
def render(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the bundle.")] = Path(".aini/bundle"),
) -> None:
    """Write the deploy bundle: compose projects, Traefik config, 0600 env files, manifest."""
    from .commands import render_bundle

    def action() -> None:
        result = render_bundle(_load(), state.project_dir, out)
        if result.generated:
            print(f"Generated {len(result.generated)} new secrets into .aini/ (not shown).")
        if result.imported:
            print(f"Stored {', '.join(result.imported)} from the environment into .aini/.")
        print(f"Wrote {result.files} files in {len(result.groups)} groups to {result.out}:")
        for group, digest in result.groups.items():
            print(f"  {group:<12} {digest[:12]}")

    _run(action)


@app.command()
def plan(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    deployed: Annotated[bool, typer.Option(
        "--deployed", help="Also compare each group with Consul's record of the last deploy (connects to it).")] = False,
) -> None:
    """Show what `aini up` would deploy: services, URLs, secret names, memory budget."""
    from .commands import show_plan

    _run(lambda: show_plan(_load(), state.project_dir, as_json, deployed))


@app.command()
def up(
    docker_source: Annotated[
        str,
        typer.Option(help="Where Docker comes from: 'docker' (Docker's apt repository) or 'debian' "
                     "(Debian's docker.io, for servers that cannot reach download.docker.com)."),
    ] = "docker",
    compose_plugin: Annotated[
        Optional[Path], typer.Option(help="docker-compose v2 binary to install with --docker-source debian.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result and Ansible's stats as JSON.")] = False,
    host_only: Annotated[bool, typer.Option(help="Provision and configure the server; do not deploy the stack.")] = False,
    wait_timeout: Annotated[
        Optional[int], typer.Option(min=10, max=3600, help="Seconds each group may take to become healthy.")
    ] = None,
) -> None:
    """Provision (hetzner), configure the server and deploy the stack; on the local target, deploy on this Docker engine."""
    from .host import UpOptions
    from .host import up as up_host
    from .runner import ConsoleProgress

    def action() -> None:
        config = _load()
        if config.target.kind == "local":
            from .deploy import DEFAULT_WAIT, up_local

            deployed = up_local(config, state.project_dir, wait_timeout=wait_timeout or DEFAULT_WAIT)
            touched = ", ".join(deployed.touched) or "none (nothing changed)"
            print(f"Deployed on the local Docker engine in {deployed.seconds:.0f} s; groups updated: {touched}.")
            return
        options = UpOptions(docker_source, compose_plugin, deploy=not host_only, wait_timeout=wait_timeout)
        result = up_host(config, state.project_dir, options, ConsoleProgress())
        if as_json:
            import json

            print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
            return
        minutes, seconds = divmod(int(result.elapsed), 60)
        print(f"Configured {result.host}:{result.port}: {result.changed} changed, {minutes}:{seconds:02d} elapsed.")
        print(f"Admin user: {result.admin_user} (this run logged in as {result.connected_as}); "
              f"root and passwords can no longer log in over SSH.")
        if result.deployed is not None:
            touched = [g for g, info in result.deployed["groups"].items() if info["action"] != "skip"]
            print(f"Deployed in {result.deployed['seconds']:.0f} s; groups updated: "
                  f"{', '.join(touched) or 'none (nothing changed)'}.")

    _run(action)


@app.command()
def destroy(
    confirm: Annotated[Optional[str], typer.Option(help="The project name, to confirm without a prompt.")] = None,
    delete_volume: Annotated[bool, typer.Option(help="Also delete the data volume.")] = False,
    delete_primary_ip: Annotated[bool, typer.Option(help="Also release the primary IP.")] = False,
) -> None:
    """Remove the project's Hetzner Cloud resources (found by label), after a typed confirmation."""
    from .commands import destroy as destroy_cloud

    def action() -> None:
        removed = destroy_cloud(_load(), confirm, not delete_volume, not delete_primary_ip, typer.prompt, print)
        print(f"Removed {len(removed)} resources.")

    _run(action)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    connect: Annotated[
        Optional[str], typer.Option(metavar="HOST:PORT", help="Reach Traefik here for the certificate checks "
                                    "instead of the server's address on 443 (e.g. before DNS points at it).")
    ] = None,
) -> None:
    """Every service's container state, health, URL, certificate expiry and restarts; exit 1 when one is unhealthy."""
    from .status import show_status

    _run(lambda: show_status(_load(), state.project_dir, as_json, connect=connect))


secrets_app = typer.Typer(help="Secrets in Vault: list names, read, set or rotate one (values never in argv).",
                          no_args_is_help=True)
vault_app = typer.Typer(help="Vault operations.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
app.add_typer(vault_app, name="vault")


@secrets_app.command("list")
def secrets_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Every secret of the enabled services: name, kind, the env variables that carry it, whether Vault has it."""
    from . import vaultops

    def action() -> None:
        rows = vaultops.listing(_load(), state.project_dir)
        if as_json:
            import json

            print(json.dumps(rows, indent=2, sort_keys=True))
            return
        for r in rows:
            flags = ("" if r["rotatable"] else " never-rotate") + ("" if r["in_vault"] else " NOT-IN-VAULT")
            print(f"{r['service']:<15} {r['name']:<30} {r['kind']:<9} {','.join(r['env']) or '-'}{flags}")

    _run(action)


@secrets_app.command("get")
def secrets_get(
    service: str, key: str,
    show: Annotated[bool, typer.Option(help="Print it even though stdout is a terminal.")] = False,
) -> None:
    """Print one value from Vault to stdout (for a pipe; a terminal needs --show)."""
    from . import vaultops

    def action() -> None:
        from .errors import InputError

        if sys.stdout.isatty() and not show:
            raise InputError("stdout is a terminal: pipe it (aini secrets get S K | ...) or add --show")
        print(vaultops.get(_load(), state.project_dir, service, key))

    _run(action)


@secrets_app.command("set")
def secrets_set(service: str, key: str) -> None:
    """Store a value (read from stdin or a hidden prompt) in Vault, then redeploy what uses it."""
    from . import vaultops

    def action() -> None:
        config = _load()
        ref = vaultops.resolve(config, service, key)
        _put_and_redeploy(config, ref, vaultops.read_value(ref.name), f"Stored {ref.name} in Vault.")

    _run(action)


@secrets_app.command("rotate")
def secrets_rotate(
    service: str, key: str,
    force: Annotated[bool, typer.Option(help="Rotate even a key whose loss makes data unreadable.")] = False,
) -> None:
    """Generate a new value for a generated secret, store it in Vault, redeploy what uses it."""
    from . import vaultops

    def action() -> None:
        config = _load()
        ref = vaultops.resolve(config, service, key)
        value = vaultops.rotate_value(config, ref, force)
        if force and not ref.rotatable:
            _err(f"warning: {ref.name} was rotated with --force: data encrypted with the old value is unreadable")
        _put_and_redeploy(config, ref, value, f"Rotated {ref.name}.")

    _run(action)


def _put_and_redeploy(config, ref, value: str, done: str) -> None:
    """Vault and the working copy first; then only the groups whose env files changed."""
    from . import vaultops

    vaultops.put(config, state.project_dir, ref, value)
    print(done)
    if config.target.kind == "local":
        from .deploy import up_local

        result = up_local(config, state.project_dir)
    else:
        from .host import ADMIN_USER
        from .remote import deploy_server, server_access

        result = deploy_server(config, state.project_dir, server_access(config, state.project_dir), ADMIN_USER)
    print(f"Redeployed: {', '.join(result.touched) or 'nothing needed it'}.")


@vault_app.command("unseal")
def vault_unseal() -> None:
    """Unseal Vault with the keys from the break-glass file (its passphrase, or the age identity file)."""
    from . import vaultops

    def action() -> None:
        print("Vault unsealed." if vaultops.unseal(_load(), state.project_dir) else "Vault was not sealed.")

    _run(action)


@vault_app.command("rekey-breakglass")
def vault_rekey_breakglass() -> None:
    """Re-encrypt the break-glass file in the form aini.yml asks for: age recipients or a passphrase."""
    from .controlplane.bootstrap import key_for
    from .controlplane.breakglass import rekey

    def action() -> None:
        done = rekey(state.project_dir, key_for(_load()))
        print(f"Re-encrypted {done.new} to the recipients in aini.yml." if done.old == done.new
              else f"Re-encrypted {done.old} as {done.new} (and removed {done.old.name}).")
        if not done.decrypted:
            print("Checked that it is age-encrypted to every recipient; set AINI_BREAKGLASS_AGE_IDENTITY to the "
                  "identity of one of them to have it decrypted back as well.")

    _run(action)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

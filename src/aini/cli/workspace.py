"""Commands on the whole workspace: init, validate, schema, render, plan, up, rollback, destroy, status.
Each parses its flags, calls one use case in aini.ops and prints the result. The use cases
are imported inside the commands: `aini --help` must start without loading them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, load, run, state


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
    from ..ops.init import InitAnswers, init_project  # lazy: startup time

    def action() -> None:
        answers = InitAnswers(domain, email, target, server_type, location, host, ssh_user, ssh_port, list(disable))
        if not non_interactive:
            answers = answers.ask(typer.prompt)
        written, generated = init_project(state.config_path, answers, force=force)
        print(f"Wrote {written}.")
        print(f"Generated {generated} secrets into {state.project_dir / '.aini'} (mode 0600; not shown).")
        print("Next: aini plan")

    run(action)


@app.command()
def validate() -> None:
    """Check aini.yml: exit 0 when valid, 2 with one line per problem."""
    from ..ops.plan import check_project  # lazy: startup time

    def action() -> None:
        specs, where = check_project(load())
        print(f"{state.config_path} is valid: {len(specs)} containers on target '{where}'.")

    run(action)


@app.command()
def schema() -> None:
    """Print aini.yml's JSON Schema (for editor completion)."""
    from ..config import json_schema  # lazy: startup time

    run(lambda: print(json.dumps(json_schema(), indent=2, sort_keys=True)))


@app.command()
def render(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the bundle.")] = Path(".aini/bundle"),
) -> None:
    """Write the deploy bundle: compose projects, Traefik config, 0600 env files, manifest."""
    from ..ops.render import render_bundle  # lazy: startup time

    def action() -> None:
        result = render_bundle(load(), out)
        if result.generated:
            print(f"Generated {len(result.generated)} new secrets into .aini/ (not shown).")
        if result.imported:
            print(f"Stored {', '.join(result.imported)} from the environment into .aini/.")
        print(f"Wrote {result.files} files in {len(result.groups)} groups to {result.out}:")
        for group, digest in result.groups.items():
            print(f"  {group:<12} {digest[:12]}")

    run(action)


@app.command()
def plan(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    deployed: Annotated[bool, typer.Option(
        "--deployed", help="Also show what aini up would do to each running group, and compare with Consul's "
                           "record of the last deploy (connects to where the stack runs).")] = False,
) -> None:
    """Show what `aini up` would deploy: services, URLs, secret names, memory budget."""
    from dataclasses import asdict

    from ..ops import plan as plans  # lazy: startup time
    from ..store import SecretStore  # lazy: startup time

    def action() -> None:
        project = load()
        result = plans.overview(project.config, set(SecretStore(project.aini_dir).names()))
        infra = plans.cloud_plan(project)
        diff = plans.deployed_diff(project) if deployed else None
        preview = plans.deploy_preview(project) if deployed else None
        if as_json:
            extra = {"fits": result.budget.fits, "cloud": asdict(infra) if infra else None,
                     "deployed": dict(diff) if diff is not None else None,
                     "deploy_plan": preview.lines() if preview is not None else None}
            print(json.dumps(asdict(result) | extra, indent=2, sort_keys=True))
            return
        from rich.console import Console

        from ..ops.targets import is_hetzner  # lazy: startup time
        from .tables import plan_tables  # lazy: Rich loads only when a table is printed

        plan_tables(result, infra, diff, preview, is_hetzner(project), Console())

    run(action)


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
    from ..infra.ansible import ConsoleProgress  # lazy: startup time
    from ..infra.server import UpOptions, UpResult  # lazy: startup time
    from ..ops.up import up_any  # lazy: startup time

    def action() -> None:
        options = UpOptions(docker_source, compose_plugin, deploy=not host_only, wait_timeout=wait_timeout)
        project = load()
        result = up_any(project, options, ConsoleProgress())
        if not isinstance(result, UpResult):  # the local target: a deploy on this engine
            touched = ", ".join(result.touched) or "none (nothing changed)"
            print(f"Deployed on the local Docker engine in {result.seconds:.0f} s; groups updated: {touched}.")
            _sign_in(project.config)
            return
        if as_json:
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
            _sign_in(project.config)

    run(action)


@app.command()
def rollback(
    group: Annotated[str, typer.Argument(help="A group (or one of its services), e.g. nextcloud.")],
    wait_timeout: Annotated[
        Optional[int], typer.Option(min=10, max=3600, help="Seconds the group may take to become healthy.")
    ] = None,
    confirm: Annotated[Optional[str], typer.Option(
        help="The project name, to confirm without a prompt when the group's data goes back too.")] = None,
) -> None:
    """Return a group to its deploy before the last change (its previous files and images); the next up deploys aini.yml's again."""
    from rich.console import Console

    from ..ops.rollback import rollback as roll_back  # lazy: startup time

    def action() -> None:
        result = roll_back(load(), group, confirm=confirm, ask=typer.prompt, wait_timeout=wait_timeout,
                           console=Console(stderr=True))
        print(f"Rolled back {result.group} in {result.seconds:.0f} s: {result.reason}.")
        print(f"aini up deploys aini.yml's version of {result.group} again; pin the one you want in "
              "images.overrides to keep it.")

    run(action)


def _sign_in(config) -> None:
    from .. import catalog  # lazy: startup time

    rows = catalog.logins(config)
    if rows:
        print("Sign in (the passwords are AINI's; the command shows one):")
    width = max((len(url) for _, url, _, _ in rows), default=0)
    for title, url, user, command in rows:
        print(f"  {url:<{width}}  {user}  ({title}: {command})")


@app.command()
def destroy(
    confirm: Annotated[Optional[str], typer.Option(help="The project name, to confirm without a prompt.")] = None,
    delete_volume: Annotated[bool, typer.Option(help="Also delete the data volume.")] = False,
    delete_primary_ip: Annotated[bool, typer.Option(help="Also release the primary IP.")] = False,
) -> None:
    """Remove the project's Hetzner Cloud resources (found by label), after a typed confirmation."""
    from ..ops.destroy import destroy as destroy_cloud  # lazy: startup time

    def action() -> None:
        removed = destroy_cloud(load(), confirm, not delete_volume, not delete_primary_ip, typer.prompt, print)
        print(f"Removed {len(removed)} resources.")

    run(action)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    connect: Annotated[
        Optional[str], typer.Option(metavar="HOST:PORT", help="Reach Traefik here for the certificate checks "
                                    "instead of the server's address on 443 (e.g. before DNS points at it).")
    ] = None,
) -> None:
    """Every service's container state, health, URL, certificate expiry and restarts; exit 1 when one is unhealthy."""
    from ..ops.status import report  # lazy: startup time

    def action() -> int:
        result = report(load(), connect)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            from rich.console import Console

            from .tables import status_table  # lazy: Rich loads only when a table is printed

            status_table(result, Console())
        return 0 if result.ok else 1

    run(action)

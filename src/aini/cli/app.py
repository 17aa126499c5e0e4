"""The Typer app and what every command shares: the global options, loading aini.yml, and
turning domain errors into exit codes (2 bad input, 1 failed operation; a traceback only
with --debug)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import __version__
from ..errors import AiniError, ConfigError

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


def run(action: Callable[[], int | None]) -> None:
    try:
        code = action()
    except ConfigError as exc:
        err(f"error: {exc.source} is not valid:")
        for problem in exc.problems:
            err(f"  - {problem}")
        raise typer.Exit(exc.exit_code) from None
    except AiniError as exc:
        err(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err("interrupted")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # the last line of defence: no traceback, no message that could hold a secret
        if state.debug:
            raise
        err(f"internal error ({type(exc).__name__}); run again with --debug and report it")
        raise typer.Exit(1) from None
    raise typer.Exit(code or 0)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def load():
    """The project of --config (aini.yml): its validated configuration and directory."""
    from ..ops import load_project  # lazy: `aini --help` must not load the models

    return load_project(state.config_path)

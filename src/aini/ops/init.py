"""`aini init`: a commented aini.yml from a few answers, and the secrets generated beside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import catalog
from ..catalog.checks import validate
from ..config import parse_yaml
from ..errors import InputError
from ..project import private_dir
from ..store import SecretStore
from ..yamltext import dump

TOGGLEABLE = ("consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata", "watchtower")


@dataclass(frozen=True)
class InitAnswers:
    domain: str | None
    email: str | None
    target: str = "hetzner"
    server_type: str = "cx33"
    location: str = "fsn1"
    host: str | None = None
    ssh_user: str = "root"
    ssh_port: int = 22
    disable: list[str] | None = None

    def ask(self, prompt: Callable[..., str]) -> InitAnswers:
        target = prompt("Target (hetzner, ssh, local)", default=self.target)
        default_domain = "localhost" if target == "local" else None
        answers = replace(
            self,
            target=target,
            domain=self.domain or prompt("Domain (services live on its subdomains)", default=default_domain),
            email=self.email or prompt("Admin email (ACME account)"),
        )
        if target == "hetzner":
            answers = replace(
                answers,
                server_type=prompt("Hetzner server type", default=self.server_type),
                location=prompt("Hetzner location", default=self.location),
            )
        elif target == "ssh":
            answers = replace(
                answers,
                host=self.host or prompt("Server address"),
                ssh_user=prompt("SSH user", default=self.ssh_user),
            )
        return answers

    def document(self) -> dict:
        if not self.domain or not self.email:
            raise InputError("init needs --domain and --email (or answer the prompts without --non-interactive)")
        unknown = sorted(set(self.disable or ()) - set(TOGGLEABLE))
        if unknown:
            raise InputError(f"--disable: unknown service {', '.join(unknown)}; choose from {', '.join(TOGGLEABLE)}")
        if self.target == "hetzner":
            target: dict = {"kind": "hetzner", "server_type": self.server_type, "location": self.location}
        elif self.target == "ssh":
            if not self.host:
                raise InputError("the ssh target needs --host")
            target = {"kind": "ssh", "host": self.host, "port": self.ssh_port, "user": self.ssh_user}
        elif self.target == "local":
            target = {"kind": "local"}
        else:
            raise InputError(f"--target: {self.target!r} is not one of hetzner, ssh, local")
        services = {name: {"enabled": name not in (self.disable or ())} for name in TOGGLEABLE}
        return {"domain": self.domain, "email": self.email, "target": target, "services": services}


HEADER = """\
# aini.yml - what AINI deploys. Every key is documented in `aini schema`.
# Secrets are not here: they live in .aini/ beside this file (never commit it).
"""


def init_project(config_path: Path, answers: InitAnswers, force: bool = False) -> tuple[Path, int]:
    if config_path.exists() and not force:
        raise InputError(f"{config_path} exists; edit it, or pass --force to start over")
    text = HEADER + dump(answers.document())
    config = validate(parse_yaml(text, str(config_path)), "the answers")
    store = SecretStore(private_dir(config_path.resolve().parent))
    generated = store.ensure(catalog.secrets_for(catalog.enabled(config)))
    store.save()
    config_path.write_text(text, encoding="utf-8")
    return config_path, len(generated)

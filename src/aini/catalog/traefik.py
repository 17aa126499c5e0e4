"""Traefik's static and dynamic configuration, derived from the catalog's routes.

Routes use Traefik's file provider: the whole routing table is rendered here and visible
in the bundle, and Traefik needs no access to the Docker API at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..yamltext import dump
from .model import Ref, Volume, routed, subdomain_of

if TYPE_CHECKING:
    from .model import Context, EnvValue

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
RESOLVER = "le"
USERS_FILE = "/etc/traefik/users"
LOCAL_CERT = "/etc/traefik/certs/local.crt"  # written by the local CA at deploy (aini.infra.localca)
LOCAL_KEY = "/etc/traefik/certs/local.key"
# tls.acme_ca, for a private ACME server's HTTPS endpoint. lego, Traefik's ACME client, then trusts
# only the files in LEGO_CA_CERTIFICATES for talking to the ACME server (they replace the system roots).
ACME_CA = "/etc/traefik/acme-ca.pem"

# Why each middleware exists is the point of this table: it is where cross-service HTTP
# behaviour is wired.
MIDDLEWARES: dict[str, dict] = {
    # HSTS for two years (Mozilla's recommendation; Nextcloud's scan asks for six months at
    # least). No X-XSS-Protection: OWASP advises against it, and an app that sends its own keeps
    # it. Permissions: what no app here uses; camera and microphone stay for Talk and speech.
    # A backend's Server and X-Powered-By never leave.
    "security-headers": {
        "headers": {
            "stsSeconds": 63072000,
            "stsIncludeSubdomains": True,
            "forceSTSHeader": True,
            "contentTypeNosniff": True,
            "referrerPolicy": "strict-origin-when-cross-origin",
            "permissionsPolicy": "geolocation=(), payment=(), usb=(), serial=(), browsing-topics=()",
            "customResponseHeaders": {"X-Robots-Tag": "noindex, nofollow", "X-Powered-By": "", "Server": ""},
        }
    },
    # Every page may be framed by its own origin only (clickjacking), but for Route.framed_by.
    "same-origin-frames": {"headers": {"customFrameOptionsValue": "SAMEORIGIN"}},
    # The Authorization header is dropped after the check: backends never see admin credentials.
    "admin-auth": {"basicAuth": {"usersFile": USERS_FILE, "removeHeader": True, "realm": "AINI admin"}},
    # CalDAV/CardDAV clients look for /.well-known/{cal,card}dav (RFC 6764).
    "nextcloud-dav": {
        "redirectRegex": {
            "regex": "^https://([^/]+)/\\.well-known/(card|cal)dav",
            "replacement": "https://${1}/remote.php/dav/",
            "permanent": True,
        }
    },
    "dashboard-root": {
        "redirectRegex": {"regex": "^https://([^/]+)/?$", "replacement": "https://${1}/dashboard/", "permanent": False}
    },
}


# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines 5.7) in Go's names: TLS 1.2
# with ECDHE and AEAD suites only (no CBC); TLS 1.3's suites are Go's own, all AEAD. sniStrict: a
# client naming no host of ours gets no certificate, not Traefik's default one.
TLS_OPTIONS = {
    "minVersion": "VersionTLS12",
    "cipherSuites": [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ],
    "curvePreferences": ["X25519", "CurveP256", "CurveP384"],
    "sniStrict": True,
}


def static(ctx: Context) -> dict:
    config = ctx.config
    # A redirect to another port must name it, or browsers land on :443 where nothing listens.
    https = f":{config.https_port}" if config.https_port != 443 else "websecure"
    conf: dict = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "accessLog": {},
        "api": {"dashboard": True},
        "ping": {"entryPoint": "traefik"},
        "entryPoints": {
            "web": {
                "address": ":80",
                "http": {"redirections": {"entryPoint": {"to": https, "scheme": "https", "permanent": True}}},
            },
            "websecure": {
                "address": ":443",
                # The 60 s default read timeout cuts large Nextcloud uploads short.
                "transport": {"respondingTimeouts": {"readTimeout": "3600s", "writeTimeout": "3600s", "idleTimeout": "180s"}},
            },
            "traefik": {"address": ":8080"},
        },
        "providers": {"file": {"directory": "/etc/traefik/dynamic", "watch": True}},
    }
    challenge = config.tls_challenge
    if challenge != "local":
        acme: dict = {
            "email": config.email,
            "storage": "/letsencrypt/acme.json",
            "caServer": config.tls.acme_server or (LETSENCRYPT_STAGING if config.tls.staging else LETSENCRYPT),
        }
        if challenge == "http":
            acme["httpChallenge"] = {"entryPoint": "web"}
        else:
            acme["dnsChallenge"] = {"provider": "hetzner", "resolvers": ["1.1.1.1:53", "8.8.8.8:53"]}
        conf["certificatesResolvers"] = {RESOLVER: {"acme": acme}}
    return conf


def dynamic(ctx: Context) -> dict[str, dict]:
    """Two files: the shared middlewares and TLS options, and one router + service per route."""
    tls = {} if ctx.config.tls_challenge == "local" else {"certResolver": RESOLVER}
    routers: dict = {}
    services: dict = {}
    used = {"security-headers"}
    middlewares: dict = {}
    admin = ["admin-auth"]
    if ctx.config.admin.allow_from:  # refused before the password is even asked for
        admin = ["admin-allow", *admin]
        middlewares["admin-allow"] = {"ipAllowList": {"sourceRange": list(ctx.config.admin.allow_from)}}
    for spec in ctx.entries.values():
        if not ctx.on(spec.name) or not routed(spec, ctx.config) or spec.route is None:
            continue
        route = spec.route
        frames = "same-origin-frames"
        if route.framed_by:
            frames = f"{spec.name}-frames"
            middlewares[frames] = {"headers": {"contentSecurityPolicy": f"frame-ancestors 'self' {ctx.url(route.framed_by)}"}}
        chain = ["security-headers", frames, *(admin if route.admin else []), *route.middlewares]
        used.update(chain)
        routers[spec.name] = {
            "rule": f"Host(`{subdomain_of(spec, ctx.config)}.{ctx.config.domain}`)",
            "entryPoints": ["websecure"],
            "middlewares": chain,
            "service": route.service or spec.name,
            "tls": tls,
        }
        if route.service is None:
            services[spec.name] = {"loadBalancer": {"servers": [{"url": f"http://{spec.container}:{route.port}"}]}}
    middlewares = {name: middlewares.get(name) or MIDDLEWARES[name] for name in sorted(used)}
    tls_conf: dict = {"options": {"default": TLS_OPTIONS}}
    if ctx.config.tls_challenge == "local":
        pair = {"certFile": LOCAL_CERT, "keyFile": LOCAL_KEY}
        tls_conf |= {"certificates": [pair], "stores": {"default": {"defaultCertificate": pair}}}
    return {
        "middlewares.yml": {"http": {"middlewares": middlewares}, "tls": tls_conf},
        "routes.yml": {"http": {"routers": routers, "services": services}},
    }


def _acme_ca(ctx: Context) -> str | None:
    """The PEM read from tls.acme_ca when aini.yml was loaded; only an ACME resolver uses it."""
    return ctx.config.tls.acme_ca_pem if ctx.config.tls_challenge != "local" else None


def files(ctx: Context) -> dict[str, str]:
    rendered = {"traefik.yml": dump(static(ctx))}
    for name, content in dynamic(ctx).items():
        rendered[f"dynamic/{name}"] = dump(content)
    ca = _acme_ca(ctx)
    if ca:
        rendered["acme-ca.pem"] = ca
    return rendered


def mounts(ctx: Context) -> tuple:
    base = (
        Volume("./traefik.yml", "/etc/traefik/traefik.yml", read_only=True),
        Volume("./dynamic", "/etc/traefik/dynamic", read_only=True),
        Volume("./users", USERS_FILE, read_only=True),
    )
    if ctx.config.tls_challenge == "local":
        return (*base, Volume("./certs", "/etc/traefik/certs", read_only=True))
    if _acme_ca(ctx):
        return (*base, Volume("./acme-ca.pem", ACME_CA, read_only=True))
    return base


def env(ctx: Context) -> dict[str, EnvValue]:
    env: dict[str, EnvValue] = {}
    if ctx.config.tls_challenge == "dns":
        # lego's `hetzner` provider speaks the Hetzner Cloud DNS API with this variable.
        env["HETZNER_API_TOKEN"] = Ref("hetzner_dns_token")
    if _acme_ca(ctx):
        env["LEGO_CA_CERTIFICATES"] = ACME_CA
    return env

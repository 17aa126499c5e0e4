#!/bin/bash
# Per-service pieces of a TEST DOUBLE image: the executables the catalog's health checks
# and entrypoints call, where the upstream image provides them.
set -euo pipefail
service=$1

# The tools the catalog's health checks may call: exactly those of the upstream image
# (UPSTREAM.md, "tools"), busybox applets for an Alpine-based image, curl where upstream
# installs it. A check that calls a tool upstream lacks then fails here too.
busybox_tools() { for t in "$@"; do ln -sf /bin/busybox "/usr/local/bin/$t"; done; }
with_curl() { ln -sf /opt/aini-double/bin/curl /usr/local/bin/curl; }
case "$service" in
  consul)       busybox_tools wget; with_curl ;;   # alpine + curl
  vault)        busybox_tools wget ;;              # alpine (vault, openbao)
  librechat)    busybox_tools wget ;;              # node:alpine
  meilisearch)  busybox_tools wget; with_curl ;;   # alpine + curl
  socket-proxy) ;;                                 # FROM scratch: /healthcheck only (below)
  nextcloud)    with_curl ;;                       # php:apache (Debian), curl only
  onlyoffice)   with_curl ;;                       # Ubuntu, curl
  mongodb|watchtower) ;;                           # neither wget nor curl
  *) echo "install-double.sh: unknown service $service" >&2; exit 2 ;;
esac

# The image's user and the directories its Dockerfile creates for it (UPSTREAM.md): the
# double's start-up (hashicorp_start.py) applies the entrypoint's ownership rules to them.
image_user() {  # name, then the directories it owns
  local name=$1; shift
  groupadd -g 1000 "$name" && useradd -u 100 -g 1000 -M -d /nonexistent -s /sbin/nologin "$name"
  mkdir -p "$@" && chown "$name:$name" "$@"
}
case "$service${2:+-$2}" in
  consul)        image_user consul /consul/data /consul/config ;;
  vault)         image_user vault /vault/config /vault/logs /vault/file ;;
  vault-openbao) image_user openbao /openbao/config /openbao/logs /openbao/file ;;
esac

# The CLI the catalog's Vault backup runs in the container (vault_cli.py): `vault` in
# hashicorp/vault, `/usr/bin/bao` with a `vault` symlink in openbao/openbao (UPSTREAM.md).
case "$service${2:+-$2}" in
  vault)         printf '#!/bin/sh\nexec python3 /opt/aini-double/vault_cli.py "$@"\n' > /usr/local/bin/vault ;;
  vault-openbao) printf '#!/bin/sh\nAINI_DOUBLE_CLI=bao exec python3 /opt/aini-double/vault_cli.py "$@"\n' > /usr/local/bin/bao
                 ln -sf bao /usr/local/bin/vault ;;
esac
chmod 0755 /usr/local/bin/vault /usr/local/bin/bao 2>/dev/null || true

case "$service" in
  mongodb)
    # docker-library/mongo 8.0/Dockerfile: mongodb is UID/GID 999 and owns /data/db and
    # /data/configdb (so a fresh named volume there starts mongodb-owned, as upstream's).
    groupadd --gid 999 --system mongodb
    useradd --uid 999 --system --gid mongodb --home-dir /data/db mongodb
    mkdir -p /data/db /data/configdb && chown -R mongodb:mongodb /data/db /data/configdb
    # mongosh for the catalog's `mongosh --quiet --eval "db.adminCommand('ping').ok"`: a
    # real ping over the double's protocol (mongodb_double.py), not a bare TCP connect.
    printf '#!/bin/sh\nexec python3 /opt/aini-double/mongodb_double.py mongosh "$@"\n' > /usr/local/bin/mongosh
    # mongodump/mongorestore for the backups (aini.catalog's MongoDB Backup entry).
    for tool in mongodump mongorestore; do
      printf '#!/bin/sh\nexec python3 /opt/aini-double/mongodb_double.py %s "$@"\n' "$tool" > /usr/local/bin/$tool
    done
    chmod 0755 /usr/local/bin/mongosh /usr/local/bin/mongodump /usr/local/bin/mongorestore ;;
  librechat)
    # LibreChat's Dockerfile: node:alpine's node (UID/GID 1000) owns /app, and
    # `mkdir -p /app/client/public/images /app/logs /app/uploads` runs as node. /app/data is
    # not in that list (a volume there starts root-owned); librechat_double.py runs as node.
    groupadd --gid 1000 node && useradd --uid 1000 --gid node -M -d /home/node -s /sbin/nologin node
    mkdir -p /app/client/public/images /app/logs /app/uploads /app/api /app/config && chown -R node:node /app
    # node:alpine's node, for `node config/create-user.js` (librechat_double.py)
    printf '#!/bin/sh\nexec python3 /opt/aini-double/librechat_double.py "$@"\n' > /usr/local/bin/node
    chmod 0755 /usr/local/bin/node ;;
  socket-proxy)
    # wollomatic/socket-proxy: /healthcheck asks the health listener (socket_proxy_double.py).
    printf '#!/usr/bin/python3\nimport sys\nsys.path.insert(0, "/opt/aini-double")\nimport socket_proxy_double\nsocket_proxy_double.healthcheck()\n' > /healthcheck
    chmod 0755 /healthcheck ;;
  watchtower) ;;  # FROM scratch: nothing but the binary; it runs as root for the socket
  nextcloud)
    # Upstream's layout (/usr/src/nextcloud, /var/www owned www-data:root, the www-data
    # crontab) and its entrypoint, `php occ`, cron.php and /cron.sh: nextcloud_double.py.
    # /var/www/html/config is NOT created here: on a fresh volume only the entrypoint (or
    # the runtime, for a file mounted inside it) creates it, as upstream.
    python3 /opt/aini-double/nextcloud_double.py build
    printf '#!/bin/sh\nexec python3 /opt/aini-double/nextcloud_double.py php "$@"\n' > /usr/local/bin/php
    chmod 0755 /usr/local/bin/php
    # nextcloud-cron runs the same image with `entrypoint: /cron.sh`; upstream's runs
    # `busybox crond -f -L /dev/stdout`, and the catalog's check greps PID 1's command line for crond.
    printf '#!/bin/sh\nexport AINI_DOUBLE=nextcloud-cron\nexec python3 /opt/aini-double/double.py crond\n' > /cron.sh
    chmod 0755 /cron.sh ;;
esac

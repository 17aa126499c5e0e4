#!/bin/bash
# Per-service pieces of a TEST DOUBLE image: the executables the catalog's health checks
# and entrypoints call, where the upstream image provides them.
set -euo pipefail
service=$1
case "$service" in
  mongodb)
    # The catalog checks MongoDB with `mongosh --quiet --eval "db.adminCommand('ping').ok"`.
    cat > /usr/local/bin/mongosh <<'SH'
#!/bin/bash
# mongosh of the MongoDB TEST DOUBLE: answers only the ping evaluation, by checking that
# the double's port accepts a TCP connection.
case "$*" in
  *ping*) if exec 3<>/dev/tcp/127.0.0.1/27017; then echo 1; exit 0; fi; exit 1 ;;
  *) echo "mongosh (AINI test double): only the ping evaluation is supported" >&2; exit 2 ;;
esac
SH
    chmod 0755 /usr/local/bin/mongosh ;;
  nextcloud)
    # nextcloud-cron runs the same image with `entrypoint: /cron.sh`; upstream's runs
    # `busybox crond`, and the catalog's check greps PID 1's command line for crond.
    cat > /cron.sh <<'SH'
#!/bin/sh
export AINI_DOUBLE=nextcloud-cron
exec python3 /opt/aini-double/double.py crond
SH
    chmod 0755 /cron.sh ;;
esac

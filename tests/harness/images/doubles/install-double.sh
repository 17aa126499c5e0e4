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
    chmod 0755 /cron.sh
    # `php occ` of the Nextcloud TEST DOUBLE: only the app commands AINI's post-deploy step
    # uses (app:list --output=json, app:install, app:enable), with upstream's exit codes
    # (install of an installed app fails), state kept in the html volume like upstream's
    # apps/ directory. Every call is appended to a log, so tests can see what ran.
    cat > /usr/local/bin/php <<'PY'
#!/usr/bin/python3
import json, os, sys
STATE = "/var/www/html/.aini-double-apps.json"
args = sys.argv[1:]
if args[:1] != ["occ"] or os.getcwd() != "/var/www/html":
    sys.exit("php (AINI test double): only `php occ ...` in /var/www/html is supported")
if os.geteuid() != 33:
    sys.exit("Console has to be executed with the user that owns the file config/config.php")
apps = json.load(open(STATE)) if os.path.exists(STATE) else {"enabled": {}, "disabled": {}}
with open("/var/www/html/.aini-double-occ.log", "a") as log:
    log.write(" ".join(args[1:]) + "\n")
cmd, rest = (args[1:2] or [""])[0], args[2:]
if cmd == "app:list" and "--output=json" in rest:
    print(json.dumps(apps))
elif cmd == "app:install" and rest:
    if rest[0] in apps["enabled"] or rest[0] in apps["disabled"]:
        sys.exit(f"{rest[0]} already installed")
    apps["enabled"][rest[0]] = "9.11.0"
    print(f"{rest[0]} 9.11.0 installed\n{rest[0]} enabled")
elif cmd == "app:enable" and rest:
    if rest[0] in apps["enabled"]:
        print(f"{rest[0]} already enabled")
    elif rest[0] in apps["disabled"]:
        apps["enabled"][rest[0]] = apps["disabled"].pop(rest[0])
        print(f"{rest[0]} enabled")
    else:
        sys.exit(f"App not found: {rest[0]}")
else:
    sys.exit(f"occ (AINI test double): {cmd} is not supported")
json.dump(apps, open(STATE, "w"))
PY
    chmod 0755 /usr/local/bin/php
    mkdir -p /var/www/html/config && chown -R www-data:www-data /var/www/html ;;
esac

#!/bin/bash
# The --connect and --innodb_initialized tests of MariaDB's healthcheck.sh, with the
# healthcheck user the entrypoint created (its password is in the data directory, 0600).
set -eo pipefail
cnf=/var/lib/mysql/.my-healthcheck.cnf
[ -r "$cnf" ] || { echo "healthcheck: $cnf missing (not initialised yet)" >&2; exit 1; }
q() { mariadb --defaults-extra-file="$cnf" --protocol=tcp -h 127.0.0.1 -N -s -e "$1"; }
[ $# -gt 0 ] || set -- --connect
for test in "$@"; do
  case "$test" in
    --connect) q "SELECT 1" >/dev/null ;;
    --innodb_initialized)
      [ "$(q "SELECT 1 FROM information_schema.ENGINES WHERE engine='innodb' AND support IN ('YES','DEFAULT','ENABLED')")" = 1 ] ;;
    *) echo "healthcheck: unsupported test $test" >&2; exit 2 ;;
  esac
done

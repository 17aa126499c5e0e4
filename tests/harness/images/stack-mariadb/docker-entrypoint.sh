#!/bin/bash
# The part of MariaDB's official docker-entrypoint.sh that AINI depends on: on an empty
# data directory, create the root password, one database and one user from the
# environment (values go to the server on stdin, never on a command line); on the data
# directory of an older series, with MARIADB_AUTO_UPGRADE, save the system schema and run
# mariadb-upgrade (as upstream's docker_mariadb_upgrade); then run the server with the
# container's command-line arguments.
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
shift
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
install -d -o mysql -g mysql /run/mysqld "$datadir"

server_version() { mariadbd --version | sed -n 's/.*Ver \([0-9][0-9.]*\).*/\1/p'; }
# Upstream's _check_if_upgrade_is_needed: no upgrade record (mariadb_upgrade_info; 10.x wrote
# mysql_upgrade_info) counts as needed, else an older major.minor than the server's.
old_version=
upgrade_needed() {
  local info
  for info in "$datadir/mariadb_upgrade_info" "$datadir/mysql_upgrade_info"; do
    [ -f "$info" ] && { IFS= read -r old_version < "$info" || true; break; }
  done
  [ -n "$old_version" ] || return 0
  local old new
  IFS='.-' read -ra old <<< "$old_version"
  IFS='.-' read -ra new <<< "$(server_version)"
  [ "${#old[@]}" -lt 2 ] || [ "${#new[@]}" -lt 2 ] || [ "${old[0]}" -lt "${new[0]}" ] \
    || { [ "${old[0]}" -eq "${new[0]}" ] && [ "${old[1]}" -lt "${new[1]}" ]; }
}
sql_string() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\\\'}"; }
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

if [ ! -d "$datadir/mysql" ]; then
  : "${MARIADB_ROOT_PASSWORD:?one of the root password variables is required: MARIADB_ROOT_PASSWORD}"
  echo "entrypoint: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
      --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" "$@" &
  pid=$!
  for _ in $(seq 60); do mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
  hc_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$MARIADB_ROOT_PASSWORD");"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$MARIADB_ROOT_PASSWORD");"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    for host in localhost 127.0.0.1 ::1; do
      echo "CREATE USER 'healthcheck'@'$host' IDENTIFIED BY '$hc_password';"
      echo "GRANT USAGE ON *.* TO 'healthcheck'@'$host';"
    done
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MARIADB_DATABASE");"
    fi
    if [ -n "${MARIADB_USER:-}" ] && [ -n "${MARIADB_PASSWORD:-}" ]; then
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "$MARIADB_PASSWORD");"
      if [ -n "${MARIADB_DATABASE:-}" ]; then
        echo "GRANT ALL ON $(sql_ident "$MARIADB_DATABASE").* TO $(sql_string "$MARIADB_USER")@'%';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$socket" -uroot --binary-mode
  (umask 077; printf '[mariadb-client]\nport=3306\nsocket=%s\nuser=healthcheck\npassword=%s\n' \
      "$socket" "$hc_password" > "$datadir/.my-healthcheck.cnf")
  chown mysql:mysql "$datadir/.my-healthcheck.cnf"
  # As mysql, as upstream's entrypoint (re-executed by gosu) does: root would need CAP_KILL.
  setpriv --reuid=mysql --regid=mysql --init-groups kill "$pid"; wait "$pid" || true
  echo "entrypoint: initialised (database ${MARIADB_DATABASE:-none}, user ${MARIADB_USER:-none})"
elif upgrade_needed; then
  if [ -z "${MARIADB_AUTO_UPGRADE:-}" ] || [ "$MARIADB_AUTO_UPGRADE" = 0 ]; then
    echo "entrypoint: MariaDB upgrade (mariadb-upgrade) required, but skipped due to \$MARIADB_AUTO_UPGRADE setting"
  else
    echo "entrypoint: upgrading $datadir from ${old_version:-an unknown version} to $(server_version)"
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" --skip-grant-tables \
        --loose-innodb_buffer_pool_dump_at_shutdown=0 "$@" &
    pid=$!
    for _ in $(seq 60); do mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
    if [ "${MARIADB_DISABLE_UPGRADE_BACKUP:-}" != 1 ]; then
      backup="$datadir/system_mysql_backup_${old_version:-unknown_version}.sql.zst"
      mariadb-dump --socket="$socket" -uroot --skip-lock-tables --replace --databases mysql | zstd -q > "$backup"
      chown mysql:mysql "$backup"
      echo "entrypoint: system schema saved to $backup"
    fi
    mariadb-upgrade --socket="$socket" -uroot --upgrade-system-tables >/dev/null
    setpriv --reuid=mysql --regid=mysql --init-groups kill "$pid"; wait "$pid" || true
    echo "entrypoint: mariadb-upgrade finished"
  fi
fi
exec mariadbd --user=mysql --datadir="$datadir" --socket="$socket" "$@"

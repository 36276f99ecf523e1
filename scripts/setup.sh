#!/usr/bin/env bash
# Brings this machine to the point where the broker can run and its tests can pass:
#   1. Node.js 20 or newer
#   2. PostgreSQL (with PostGIS), RabbitMQ and an MQTT broker, installed and answering; influxd
#      installed (the InfluxDB writer's tests run their own); prometheus and promtool likewise
#   3. node_modules (npm ci when package-lock.json changed), then `npm run build`
#   4. the $PGDATABASE database, created if missing and migrated (skipped when SETUP_SKIP_DB=1)
#   5. Debian's chromium, which the web app's browser tests drive (skipped when SETUP_SKIP_BROWSER=1)
#
# Idempotent and quick when everything is already in place: services that already answer are
# reused as they are, and apt-get runs only when something is missing. Written for Debian 12
# (run as root, or with sudo available); other systems need the services started by hand.
#
# Environment: the broker's own variables (PG*, RABBITMQ_*, AMQP_URL, MQTT_URL; see .env.example)
# decide which servers are checked. A server on another host is only checked, never installed.
#   SETUP_SKIP_DB=1   skip creating and migrating the database (the tests make their own)
#   SETUP_SKIP_BROWSER=1  skip installing chromium (a machine that only runs the broker)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '[setup] %s\n' "$*"; }
fail() {
  printf '[setup] ERROR: %s\n' "$*" >&2
  exit 1
}

# shellcheck source=scripts/dotenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/dotenv.sh"
load_dotenv

PGHOST="${PGHOST:-localhost}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
PGDATABASE="${PGDATABASE:-broker}"
export PGHOST PGPORT PGUSER PGDATABASE

# host:port of RabbitMQ and of the MQTT broker, from AMQP_URL / MQTT_URL when given.
url_host_port() { # url default_port -> "host port"
  local rest="${1#*://}" hostport host port
  rest="${rest%%/*}"
  hostport="${rest##*@}"
  if [[ $hostport =~ ^\[(.*)\](:([0-9]+))?$ ]]; then
    host="${BASH_REMATCH[1]}" port="${BASH_REMATCH[3]}"
  else
    host="${hostport%%:*}"
    port=""
    [[ $hostport == *:* ]] && port="${hostport##*:}"
  fi
  printf '%s %s\n' "${host:-localhost}" "${port:-$2}"
}
if [[ -n ${AMQP_URL:-} ]]; then
  read -r MQ_HOST MQ_PORT < <(url_host_port "$AMQP_URL" 5672)
else
  MQ_HOST="${RABBITMQ_HOST:-localhost}" MQ_PORT="${RABBITMQ_PORT:-5672}"
fi
read -r MQTT_HOST MQTT_PORT < <(url_host_port "${MQTT_URL:-mqtt://localhost:1883}" 1883)

is_local() { [[ $1 == localhost || $1 == 127.* || $1 == ::1 || $1 == /* || $1 == "$(hostname)" ]]; }
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
have() { command -v "$1" >/dev/null 2>&1; }
with_systemd() { [[ -d /run/systemd/system ]]; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif have sudo; then
    sudo "$@"
  else
    fail "need root (or sudo) to run: $*"
  fi
}

APT_UPDATED=0
apt_update() {
  have apt-get || fail "something is missing and there is no apt-get here: install it by hand"
  if [[ $APT_UPDATED -eq 0 ]]; then
    step "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
}
apt_install() {
  apt_update
  step "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- 1. Node.js -----------------------------------------------------------------------------
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if ! have node || [[ $(node_major) -lt 20 ]]; then
  step "node.js 20+ missing (found: $(node --version 2>/dev/null || echo none)); installing"
  apt_update
  candidate="$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ ${candidate%%.*} =~ ^[0-9]+$ && ${candidate%%.*} -ge 20 ]]; then
    apt_install nodejs
  else
    # Debian 12 ships Node 18. The npm registry carries Node itself (package "node", which
    # installs the matching node-linux-* binary package), so no other download site is needed.
    apt_install nodejs npm
    step "npm install -g node@20 (Node.js 20 from the npm registry)"
    as_root npm install -g --no-fund --no-audit node@20
  fi
  hash -r
  [[ $(node_major) -ge 20 ]] || fail "Node.js 20 or newer is required, found $(node --version 2>/dev/null || echo none)"
fi
if ! have npm; then
  apt_install npm
  hash -r
fi
step "node $(node --version), npm $(npm --version 2>/dev/null)"

# --- 2. Services ----------------------------------------------------------------------------
PG_INSTALLED_NOW=0

pg_up() {
  if have pg_isready; then
    pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 3 >/dev/null 2>&1
  else
    [[ $PGHOST != /* ]] && tcp_open "$PGHOST" "$PGPORT"
  fi
}
pg_versions() { { ls /usr/lib/postgresql 2>/dev/null || true; } | sort -n; }
pg_version() { pg_versions | tail -n 1; }

# Packages for every local service that does not answer and is not installed.
missing=()
if ! pg_up; then
  if is_local "$PGHOST"; then
    { have pg_isready && [[ -n $(pg_version) ]]; } || missing+=(postgresql)
  fi
fi
if ! tcp_open "$MQ_HOST" "$MQ_PORT" && is_local "$MQ_HOST" && ! have rabbitmq-server; then
  missing+=(rabbitmq-server)
fi
if ! tcp_open "$MQTT_HOST" "$MQTT_PORT" && is_local "$MQTT_HOST" && ! have mosquitto; then
  missing+=(mosquitto)
fi
# InfluxDB 1.x: the influxdb writer's tests start their own influxd (own config, port and data
# directory under /tmp); the packaged service itself is not needed and not started here.
if ! have influxd; then
  missing+=(influxdb)
fi
# Prometheus: the dashboards test starts its own prometheus (own config, port and data directory
# under /tmp) and checks the alert rules with promtool; the packaged service is not started here.
if ! have prometheus || ! have promtool; then
  missing+=(prometheus)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ " ${missing[*]} " == *" postgresql "* ]] && PG_INSTALLED_NOW=1
  apt_install "${missing[@]}"
  hash -r
fi

# PostgreSQL
if pg_up; then
  step "postgresql answers on $PGHOST:$PGPORT (reused)"
elif ! is_local "$PGHOST"; then
  fail "postgresql does not answer on $PGHOST:$PGPORT (not local, so not started here)"
else
  ver="$(pg_version)"
  [[ -n $ver ]] || fail "no PostgreSQL server installed under /usr/lib/postgresql"
  cluster="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p {print $1 " " $2; exit}')"
  if [[ -z $cluster ]]; then
    # "main" unless a cluster of that name already exists (on another port).
    name=main
    [[ -z $(pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main"') ]] || name=broker
    step "creating PostgreSQL $ver cluster '$name' on port $PGPORT (trust auth on this machine)"
    as_root pg_createcluster "$ver" "$name" -p "$PGPORT" --start -- --auth-local=trust --auth-host=trust >/dev/null
  else
    step "starting PostgreSQL cluster $cluster"
    # shellcheck disable=SC2086 # "$cluster" is "<version> <name>"
    if with_systemd; then
      as_root pg_ctlcluster $cluster start
    else
      as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
    fi
  fi
  for _ in $(seq 1 30); do pg_up && break || sleep 1; done
  pg_up || fail "postgresql did not come up on $PGHOST:$PGPORT"
  step "postgresql answers on $PGHOST:$PGPORT"
fi

psql_q() { psql -X -w -q -t -A -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -c "$1"; }

# A cluster that apt-get created just now uses password auth over TCP; the broker's defaults
# (user postgres, empty PGPASSWORD) need trust on 127.0.0.1 and ::1. Only a cluster installed by
# this script (or already marked by it) is changed; anyone else's authentication is left alone.
HBA_MARK="# added by iota-router scripts/setup.sh"
if have psql && ! psql_q 'select 1' >/dev/null 2>&1; then
  # The local cluster that listens on $PGPORT: "<version> <name>".
  read -r hba_ver hba_name < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p {print $1, $2; exit}') || true
  hba=""
  [[ -n ${hba_ver:-} ]] && hba="/etc/postgresql/$hba_ver/$hba_name/pg_hba.conf"
  if is_local "$PGHOST" && [[ -z ${PGPASSWORD:-} && -n $hba && -f $hba ]] &&
    { [[ $PG_INSTALLED_NOW -eq 1 ]] || grep -qF "$HBA_MARK" "$hba"; }; then
    if ! grep -qF "$HBA_MARK" "$hba"; then
      step "allowing trust auth from 127.0.0.1 and ::1 in $hba (fresh cluster)"
      tmp="$(mktemp)"
      {
        echo "$HBA_MARK"
        echo "host    all    all    127.0.0.1/32    trust"
        echo "host    all    all    ::1/128         trust"
        cat "$hba"
      } >"$tmp"
      as_root install -o postgres -g postgres -m 0640 "$tmp" "$hba"
      rm -f "$tmp"
    fi
    step "reloading PostgreSQL cluster $hba_ver $hba_name"
    if with_systemd; then
      as_root pg_ctlcluster "$hba_ver" "$hba_name" reload
    else
      as_root pg_ctlcluster --skip-systemctl-redirect "$hba_ver" "$hba_name" reload
    fi
    sleep 1
  fi
  psql_q 'select 1' >/dev/null 2>&1 ||
    fail "cannot log in to postgresql as $PGUSER on $PGHOST:$PGPORT: set PGUSER/PGPASSWORD (see .env.example) or allow trust auth in pg_hba.conf"
fi

# PostGIS (the IoTa schema stores device locations as PostGIS points).
if have psql; then
  if [[ $(psql_q "select count(*) from pg_available_extensions where name = 'postgis'") == 0 ]]; then
    is_local "$PGHOST" || fail "the PostgreSQL server on $PGHOST has no PostGIS extension available"
    server_major="$(psql_q 'show server_version_num')"
    server_major="$((server_major / 10000))"
    apt_install "postgresql-${server_major}-postgis-3"
  fi
  step "postgis available"
else
  step "no psql client here: not checking for PostGIS (the migration will say if it is missing)"
fi

# RabbitMQ
rabbit_ready() { tcp_open "$MQ_HOST" "$MQ_PORT"; }
if rabbit_ready; then
  step "rabbitmq answers on $MQ_HOST:$MQ_PORT (reused)"
elif ! is_local "$MQ_HOST"; then
  fail "rabbitmq does not answer on $MQ_HOST:$MQ_PORT (not local, so not started here)"
else
  if with_systemd; then
    step "starting rabbitmq-server (systemctl)"
    as_root systemctl start rabbitmq-server
  elif timeout 15 rabbitmqctl -q status >/dev/null 2>&1; then
    step "rabbitmq node is running but not listening yet; waiting for it"
  else
    step "starting rabbitmq-server (detached)"
    as_root rabbitmq-server -detached
  fi
  # await_startup fails at once until the node has registered: retry for about a minute.
  deadline=$((SECONDS + 60))
  until timeout 20 rabbitmqctl -q await_startup >/dev/null 2>&1 && rabbit_ready; do
    [[ $SECONDS -lt $deadline ]] || fail "rabbitmq did not come up on $MQ_HOST:$MQ_PORT within 60 s"
    sleep 2
  done
  step "rabbitmq answers on $MQ_HOST:$MQ_PORT"
fi

# MQTT broker (Mosquitto, or anything else already on the port, e.g. RabbitMQ's MQTT plugin)
if tcp_open "$MQTT_HOST" "$MQTT_PORT"; then
  step "mqtt broker answers on $MQTT_HOST:$MQTT_PORT (reused)"
elif ! is_local "$MQTT_HOST"; then
  step "WARNING: no mqtt broker answers on $MQTT_HOST:$MQTT_PORT (not local, so not started here)"
else
  step "starting mosquitto"
  if with_systemd; then
    as_root systemctl start mosquitto
  else
    as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto 2>/dev/null || true
    as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
  fi
  for _ in $(seq 1 15); do tcp_open "$MQTT_HOST" "$MQTT_PORT" && break || sleep 1; done
  tcp_open "$MQTT_HOST" "$MQTT_PORT" || fail "mosquitto did not come up on $MQTT_HOST:$MQTT_PORT"
  step "mqtt broker answers on $MQTT_HOST:$MQTT_PORT"
fi

# --- 3. Node dependencies and build ---------------------------------------------------------
# npm may print 'Unknown user config "nodedir"' on some machines: a harmless warning.
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  step "npm ci"
  npm ci --no-audit --no-fund
else
  step "node_modules up to date (reused)"
fi

step "npm run build"
npm run --silent build

# --- 4. Database ----------------------------------------------------------------------------
if [[ ${SETUP_SKIP_DB:-0} == 1 ]]; then
  step "SETUP_SKIP_DB=1: not creating or migrating database $PGDATABASE"
else
  # Uses the pg driver from node_modules, so no psql is needed when PostgreSQL is remote.
  created="$(
    node --input-type=module -e '
      import pg from "pg";
      const name = process.env.PGDATABASE;
      const client = new pg.Client({ database: "postgres" });
      await client.connect();
      try {
        const found = await client.query("select 1 from pg_database where datname = $1", [name]);
        if (found.rowCount === 0) {
          await client.query(`create database ${client.escapeIdentifier(name)}`);
          console.log("created");
        } else {
          console.log("exists");
        }
      } finally {
        await client.end();
      }
    '
  )"
  if [[ $created == created ]]; then
    step "created database $PGDATABASE"
  else
    step "database $PGDATABASE exists (reused)"
  fi
  step "broker migrate"
  node dist/src/cli/main.js migrate
fi

# --- 5. Browser for the web app's tests --------------------------------------------------------
# playwright-core drives the system's chromium; its own browser download is never used.
if [[ ${SETUP_SKIP_BROWSER:-0} == 1 ]]; then
  step "SETUP_SKIP_BROWSER=1: not checking for chromium"
elif [[ -x ${CHROMIUM_PATH:-/usr/bin/chromium} ]]; then
  step "chromium present (${CHROMIUM_PATH:-/usr/bin/chromium})"
else
  apt_install chromium
  [[ -x /usr/bin/chromium ]] || fail "chromium did not install to /usr/bin/chromium"
fi

step "done"

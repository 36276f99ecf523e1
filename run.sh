#!/usr/bin/env bash
# The one entry point: set up this machine and run the broker, or run its tests.
#
#   ./run.sh [local [component...]]  set up, then run the whole system (or the named components)
#                                    as local processes in the foreground
#   ./run.sh production              Docker Compose, project "iota-router-production", with
#                                    BROKER_ENV=production (the webhook needs credentials)
#   ./run.sh test                    Docker Compose, project "iota-router-test"
#                                    (both fall back to local processes when no Docker engine answers)
#   ./run.sh check                   set up, run every test, end with "N passed, N failed"
#   ./run.sh help
#
# Variables in ./.env (see .env.example) are loaded when the file exists; variables already set
# in the environment win over it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

say() { printf '[run] %s\n' "$*"; }

usage() {
  cat <<'EOF'
Usage: ./run.sh [mode]

  local [component...]  (default) install what is missing, build, create and migrate the
                        database, then run the system as local processes in the foreground:
                        `broker run all` (ttn-webhook, mapper, frred, event-relay, api, web), or only
                        the components named (also ydoc, wombat, dragino, ict-mqtt, greenbrain,
                        eagleio, axistech; `all wombat` adds one to the default set).
                        Stop with Ctrl-C (SIGINT) or SIGTERM.
  production            Docker Compose with compose/docker-compose.yml + compose/production.yml
                        (ports bound to 127.0.0.1, named volumes); without a Docker engine,
                        falls back to local processes. Sets BROKER_ENV=production: the TTN
                        webhook refuses to start without TTN_WEBHOOK_SECRET or Basic
                        credentials unless TTN_WEBHOOK_AUTH=none (doc/operations.md).
  test                  Docker Compose with compose/docker-compose.yml + compose/test.yml
                        (anonymous volumes, no published ports); same fallback.
  check                 install what is missing and build, then run the whole test suite
                        (vitest) and print "N passed, N failed" as the last line.
  help                  this text.

Configuration: environment variables, or a .env file in the repository root (see .env.example).
EOF
}

# shellcheck source=scripts/dotenv.sh
source "$ROOT/scripts/dotenv.sh"

run_local() {
  ./scripts/setup.sh
  # The FRRED writer needs its DataBolt directory; a local run keeps it under ./var by default.
  if [[ -z ${FRRED_DIR:-} && -z ${DATABOLT_SHARED_DIR:-} ]]; then
    export DATABOLT_SHARED_DIR="$ROOT/var/databolt"
    say "DATABOLT_SHARED_DIR not set: FRRED files go to $DATABOLT_SHARED_DIR/raw_data"
  fi
  mkdir -p "${FRRED_DIR:-$DATABOLT_SHARED_DIR/raw_data}"
  local components=("$@")
  [[ ${#components[@]} -gt 0 ]] || components=(all)
  say "running as local processes: broker run ${components[*]} (Ctrl-C or SIGTERM stops it)"
  exec node dist/src/cli/main.js run "${components[@]}"
}

docker_answers() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

run_compose() {
  local mode="$1"
  if ! docker_answers; then
    say "no Docker engine answered (docker info failed): running '$mode' as local processes on this machine instead"
    run_local
  fi
  if ! docker compose version >/dev/null 2>&1; then
    say "a Docker engine answers but the Docker Compose v2 plugin ('docker compose') is missing;" >&2
    say "install docker-compose-plugin (v2.24 or newer), or run './run.sh local'" >&2
    exit 1
  fi
  # IoTa starts the ttn profile by default; frred only makes sense with a DataBolt directory.
  if [[ -z ${COMPOSE_PROFILES:-} ]]; then
    COMPOSE_PROFILES=ttn
    [[ -n ${DATABOLT_SHARED_DIR:-} ]] && COMPOSE_PROFILES+=",frred"
    export COMPOSE_PROFILES
  fi
  local project="${COMPOSE_PROJECT_NAME:-iota-router-$mode}"
  local dc=(docker compose -p "$project" -f compose/docker-compose.yml -f "compose/$mode.yml")
  say "Docker engine answered: running '$mode' with Docker Compose (project $project, profiles $COMPOSE_PROFILES)"
  "${dc[@]}" down --remove-orphans
  "${dc[@]}" build
  "${dc[@]}" up -d
  say "started; following logs (Ctrl-C stops following, the containers keep running;"
  say "stop them with: ${dc[*]} down)"
  exec "${dc[@]}" logs -f
}

run_check() {
  # The suite makes its own databases, so only the services, node_modules and the build are needed.
  if ! SETUP_SKIP_DB=1 ./scripts/setup.sh; then
    say "setup failed: no tests were run (counted as 1 failure)" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  mkdir -p test-results
  rm -f test-results/vitest.json
  say "npx vitest run"
  local vitest_rc=0 summary_rc=0
  npx vitest run --reporter=default --reporter=json --outputFile=test-results/vitest.json </dev/null ||
    vitest_rc=$?
  node scripts/test-summary.mjs test-results/vitest.json || summary_rc=$?
  if [[ $vitest_rc -ne 0 || $summary_rc -ne 0 ]]; then
    exit 1
  fi
}

mode="${1:-local}"
[[ $# -gt 0 ]] && shift
case "$mode" in
  help | -h | --help) usage ;;
  local) load_dotenv && run_local "$@" ;;
  production)
    # Wins over .env and the environment: this mode is production by name.
    load_dotenv && export BROKER_ENV=production && run_compose "$mode"
    ;;
  test) load_dotenv && run_compose "$mode" ;;
  check) load_dotenv && run_check ;;
  *)
    usage >&2
    echo >&2
    echo "run.sh: unknown mode '$mode'" >&2
    exit 2
    ;;
esac

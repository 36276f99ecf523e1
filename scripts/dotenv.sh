# shellcheck shell=bash
# Loads ./.env (KEY=value lines) without overriding variables already set in the environment.
# Sourced by run.sh and scripts/setup.sh (which must also work on its own).
load_dotenv() {
  [[ -f .env ]] || return 0
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    line="${line%$'\r'}"
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key="${BASH_REMATCH[2]}"
    value="${BASH_REMATCH[3]}"
    if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value="${BASH_REMATCH[1]}"
    else # unquoted: " #" starts a comment, surrounding blanks are dropped
      value="${value%%[[:space:]]#*}"
      value="${value%"${value##*[![:space:]]}"}"
      value="${value#"${value%%[![:space:]]*}"}"
    fi
    [[ -n ${!key+set} ]] || export "$key=$value"
  done <.env
}

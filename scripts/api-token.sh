# Sourced by stack.sh and demo.sh. api_token: the first token of API_TOKENS_FILE (lines that are
# blank or start with # skipped), which the scripts send to an API started with that file; empty
# when the variable is unset, an error when the file holds no token.
api_token() {
  [ -n "${API_TOKENS_FILE:-}" ] || return 0
  local token
  token="$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$API_TOKENS_FILE" 2>/dev/null | head -n 1 | tr -d '[:space:]')" || true
  [ -n "$token" ] || { printf 'error: no token to read in API_TOKENS_FILE=%s\n' "$API_TOKENS_FILE" >&2; return 1; }
  printf '%s' "$token"
}

#!/usr/bin/env bash
# CLI round trip, as a script would do it: create a token with the CLI, call the API with it,
# revoke it with the CLI, and see the API refuse it. Run by the integration suite
# (tests/api/process.rs) with MCPGATE_BIN set; DATABASE_URL selects the database.
set -euo pipefail

BIN=${MCPGATE_BIN:?set MCPGATE_BIN to the mcpgate binary}
DATA=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

export MCPGATE_DATA_DIR=$DATA
export MCPGATE_ADMIN_EMAIL=ops@example.com
export MCPGATE_ADMIN_PASSWORD=ops-password-123
export MCPGATE_LOG=warn

"$BIN" serve --listen 127.0.0.1:0 >"$DATA/stdout" 2>"$DATA/stderr" &
PID=$!
PORT=
for _ in $(seq 1 300); do
    PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$DATA/stdout")
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start"; cat "$DATA/stderr"; exit 1; }
API=http://127.0.0.1:$PORT/api/v1

status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "${@:2}"; }
expect() { [ "$1" = "$2" ] || { echo "FAIL: $3: expected $2, got $1"; exit 1; }; }

# A personal access token: only the token is printed, so $(…) captures it.
TOKEN=$("$BIN" token create --user ops@example.com --name cli-roundtrip --expires 1d)
[[ $TOKEN == mgw_pat_* ]] || { echo "FAIL: unexpected output: $TOKEN"; exit 1; }
expect "$(status "$TOKEN" "$API/me")" 200 "the CLI token works on the API"

# The script drives the API with it: a tenant and a virtual account.
curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"slug":"acme","display_name":"Acme"}' "$API/tenants" >/dev/null
curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"ci","tenant_role":"admin"}' "$API/tenants/acme/virtual-accounts" >/dev/null

VA_TOKEN=$("$BIN" token create --tenant acme --virtual-account ci)
[[ $VA_TOKEN == mgw_va_* ]] || { echo "FAIL: unexpected output: $VA_TOKEN"; exit 1; }
expect "$(status "$VA_TOKEN" "$API/tenants/acme/servers")" 200 "the virtual-account token works"

# Revoke both with the CLI; the API refuses them.
PAT_ID=$("$BIN" token list --user ops@example.com | awk '$4 == "active" || $3 == "active" {print $1; exit}')
"$BIN" token revoke --user ops@example.com "$PAT_ID"
expect "$(status "$TOKEN" "$API/me")" 401 "a revoked token is refused"
VA_ID=$("$BIN" token list --tenant acme --virtual-account ci | awk 'NR == 2 {print $1}')
"$BIN" token revoke --tenant acme --virtual-account ci "$VA_ID"
expect "$(status "$VA_TOKEN" "$API/tenants/acme/servers")" 401 "a revoked virtual-account token is refused"
"$BIN" token list --user ops@example.com | grep -q revoked || { echo "FAIL: list does not show the revocation"; exit 1; }

# Snapshots: fetch with the proxy key, verify offline, and refuse a tampered copy.
PROXY_KEY=$("$BIN" proxy-key)
curl -sf -H "Authorization: Bearer $PROXY_KEY" "$API/policy/snapshot" >"$DATA/snapshot.jws"
curl -sf "$API/policy/keys" >"$DATA/keys.json"
"$BIN" snapshot verify "$DATA/snapshot.jws" --keys "$DATA/keys.json" | grep -q '^valid: version' \
    || { echo "FAIL: snapshot did not verify"; exit 1; }
# Flip one character of the payload.
awk -F. '{ p = $2; c = substr(p, 10, 1); r = (c == "A") ? "B" : "A"; print $1 "." substr(p, 1, 9) r substr(p, 11) "." $3 }' \
    "$DATA/snapshot.jws" >"$DATA/tampered.jws"
if "$BIN" snapshot verify "$DATA/tampered.jws" --keys "$DATA/keys.json" 2>/dev/null; then
    echo "FAIL: a tampered snapshot verified"; exit 1
fi
"$BIN" keys rotate | grep -q "new signing key" || { echo "FAIL: keys rotate"; exit 1; }

echo "cli round trip: ok"

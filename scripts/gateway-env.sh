# Shared by .ci/conformance and bench/load: start the rmcp fixture upstream and a gateway
# (per-identity rate limit off: one token drives all the load),
# register the fixture as server acme/fixture and mint a token for it. Source it, then call
# `start_stack debug|release|dist` (dist: the shipped build, see Cargo.toml); it sets FIXTURE_URL, FIXTURE_PID, GATEWAY_PORT, GATEWAY_PID, DATA_DIR, TOKEN.
# Processes started here are killed by `stop_stack` (installed as the EXIT trap).

STACK_WORK=$(mktemp -d)
STACK_PIDS=()
stop_stack() {
    for p in "${STACK_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$STACK_WORK"
}
trap stop_stack EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 150); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.2
    done
    echo "nothing is listening on port $1" >&2
    return 1
}

start_stack() {
    local profile=$1 flag=
    case $profile in
        release) flag=--release ;;
        dist) flag="--profile dist" ;;
    esac
    # PREBUILT=DIR runs binaries built elsewhere (another commit's, for a before/after).
    if [ -n "${PREBUILT:-}" ]; then
        BIN=$PREBUILT
    else
        cargo build -q $flag --bin mcpgate --example conformance_upstream --example loadgen
        BIN=$PWD/target/$profile
    fi

    local fixture_port
    fixture_port=$(free_port)
    GATEWAY_PORT=$(free_port)
    DATA_DIR=$STACK_WORK/data
    "$BIN/examples/conformance_upstream" "$fixture_port" ${FIXTURE_ARGS:-} >"$STACK_WORK/fixture.log" 2>&1 &
    FIXTURE_PID=$!
    STACK_PIDS+=($FIXTURE_PID)
    MCPGATE_ADMIN_EMAIL=admin@example.com MCPGATE_ADMIN_PASSWORD=stack-admin-password \
        MCPGATE_DATA_DIR="$DATA_DIR" MCPGATE_LISTEN="127.0.0.1:$GATEWAY_PORT" MCPGATE_LOG=warn \
        MCPGATE_PROXY_RATE_LIMIT_PER_MINUTE=0 MCPGATE_UPSTREAM_ALLOW_PRIVATE=true \
        "$BIN/mcpgate" serve >"$STACK_WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    STACK_PIDS+=($GATEWAY_PID)
    wait_port "$fixture_port"
    wait_port "$GATEWAY_PORT"
    FIXTURE_URL=http://127.0.0.1:$fixture_port/mcp

    # The admin's cookie jar and CSRF token stay set, for api_call after the stack is up.
    local api=http://127.0.0.1:$GATEWAY_PORT/api/v1
    jar=$STACK_WORK/cookies
    csrf=$(curl -sf -c "$jar" -H 'content-type: application/json' \
        -d '{"email":"admin@example.com","password":"stack-admin-password"}' "$api/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
    api_call() { curl -sf -b "$jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' "$@"; }
    api_call -d '{"slug":"acme","display_name":"Acme"}' "$api/tenants" >/dev/null
    api_call -d "{\"slug\":\"fixture\",\"display_name\":\"Fixture\",\"kind\":\"remote\",\"url\":\"$FIXTURE_URL\"}" \
        "$api/tenants/acme/servers" >/dev/null
    TOKEN=$(api_call -d '{"name":"stack"}' "$api/me/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
}

# Waits until the MCP route at $1 accepts $TOKEN (the proxy holds a snapshot that has it).
wait_authorized() {
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $TOKEN" \
            -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
            -d '{"jsonrpc":"2.0","id":0,"method":"ping"}' "$1")
        case $code in 401 | 503 | 000) sleep 0.1 ;; *) return 0 ;; esac
    done
    echo "$1 never accepted the token" >&2
    return 1
}

#!/usr/bin/env bash
# kith demo: three nodes (alice, bob, carol) on loopback, each in its own home in a
# temporary folder. They connect, follow, subscribe and post, and the script checks that
# the posts arrive by gossip; then alice sends bob (a mutual connection) an end-to-end
# encrypted direct message. Everything is cleaned up on exit, pass or fail.
#
#   bash scripts/demo.sh [--keep]
#
# With --keep the three nodes keep running after the demo, and the script prints each
# one's web interface address (with a sign-in token) to open in a browser; Ctrl-C stops
# them and cleans up.
#
# Environment: KITH_BIN=/path/to/kith skips the build and uses that binary;
# KITH_DEMO_TIMEOUT (seconds, default 20) bounds every wait.
set -euo pipefail

cd "$(dirname "$0")/.."

KEEP=0
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    *)
        echo "usage: bash scripts/demo.sh [--keep]" >&2
        exit 2
        ;;
    esac
done

TIMEOUT="${KITH_DEMO_TIMEOUT:-20}"
NAMES=(alice bob carol)
say() { printf '\n==> %s\n' "$*"; }
# Failures go to the script's own stderr (fd 3), even from inside a silenced poll.
exec 3>&2
die() {
    printf '\ndemo FAILED: %s\n' "$*" >&3
    exit 1
}

# --- build --------------------------------------------------------------------------

if [[ -n "${KITH_BIN:-}" ]]; then
    say "using $KITH_BIN"
else
    say "building kith (cargo build -p kith)"
    # Cargo names the binary it built (wherever the target folder is).
    KITH_BIN=$(cargo build -p kith --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and msg["target"]["name"] == "kith":
        print(msg["executable"])')
fi
[[ -x "$KITH_BIN" ]] || die "no kith binary at $KITH_BIN"
START_NS=$(date +%s%N)

# --- homes and cleanup --------------------------------------------------------------

# A short path: the control socket path must fit in 107 bytes.
DEMO_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kith-demo.XXXXXX")"
declare -A PIDS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        local name
        for name in "${NAMES[@]}"; do
            if [[ -s "$DEMO_DIR/$name.log" ]]; then
                printf '\n--- last lines of %s.log ---\n' "$name" >&3
                tail -n 20 "$DEMO_DIR/$name.log" >&3 || true
            fi
        done
    fi
    rm -rf "$DEMO_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One command per person: `alice post "hi"` runs `kith --home <alice's home> post "hi"`.
alice() { "$KITH_BIN" --home "$DEMO_DIR/alice" "$@"; }
bob() { "$KITH_BIN" --home "$DEMO_DIR/bob" "$@"; }
carol() { "$KITH_BIN" --home "$DEMO_DIR/carol" "$@"; }

# json_field FIELD: prints FIELD of the JSON object on stdin.
json_field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# loopback_addr: prints the /ip4/127.0.0.1/tcp/... address from `kith --json id` on stdin.
loopback_addr() {
    python3 -c '
import json, sys
addrs = [a for a in json.load(sys.stdin)["addrs"] if a.startswith("/ip4/127.0.0.1/tcp/")]
if not addrs:
    sys.exit("no /ip4/127.0.0.1/tcp address")
print(addrs[0])'
}

# feed_has PERSON TEXT: true when TEXT is in PERSON's feed.
feed_has() {
    "$1" --json feed --limit 100 | python3 -c '
import json, sys
want = sys.argv[1]
sys.exit(0 if any(json.loads(l)["text"] == want for l in sys.stdin if l.strip()) else 1)' "$2"
}

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds, or
# fails the demo after SECONDS.
wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}

# --- start three nodes --------------------------------------------------------------

say "creating homes in $DEMO_DIR"
alice init --name Alice
bob init --name Bob
carol init --name Carol

say "starting three daemons on 127.0.0.1 (logs in $DEMO_DIR/<name>.log)"
for name in "${NAMES[@]}"; do
    NO_COLOR=1 "$KITH_BIN" --home "$DEMO_DIR/$name" \
        daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns >"$DEMO_DIR/$name.log" 2>&1 &
    PIDS[$name]=$!
done

# ready PERSON: the daemon answers and has a loopback address.
ready() {
    kill -0 "${PIDS[$1]}" 2>/dev/null || die "the $1 daemon exited"
    "$1" --json id | loopback_addr
}
for name in "${NAMES[@]}"; do
    wait_until "$TIMEOUT" "the $name daemon to answer" ready "$name"
done

ALICE_ID=$(alice --json id | json_field id)
BOB_ID=$(bob --json id | json_field id)
CAROL_ID=$(carol --json id | json_field id)
ALICE_ADDR=$(alice --json id | loopback_addr)
CAROL_ADDR=$(carol --json id | loopback_addr)
echo "alice $ALICE_ID"
echo "bob   $BOB_ID"
echo "carol $CAROL_ID"

# --- connect, follow, subscribe -----------------------------------------------------

say "alice and bob add each other with invite links (connect, follow, petname)"
ALICE_LINK=$(alice --json invite | json_field link)
BOB_LINK=$(bob --json invite | json_field link)
bob add "$ALICE_LINK" --as alice
alice add "$BOB_LINK" --as bob

say "carol connects to alice by address and subscribes to #rust"
carol dial "$ALICE_ADDR"
alice dial "$CAROL_ADDR"
carol subscribe rust

# status_at_least PERSON FIELD N: PERSON's `kith --json status` has FIELD >= N.
status_at_least() {
    "$1" --json status | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)[sys.argv[1]] >= int(sys.argv[2]) else 1)' "$2" "$3"
}

say "waiting for the gossip mesh"
wait_until "$TIMEOUT" "alice to have 2 peers" status_at_least alice peers 2
# Gossip reaches only subscribers the publisher has heard of: give the subscriptions a
# few seconds to spread (alice's mesh gains bob once his follow is known). Not fatal.
mesh_deadline=$((SECONDS + 5))
until status_at_least alice mesh_peers 1; do
    if ((SECONDS >= mesh_deadline)); then
        echo "(alice has no mesh peer yet; posting anyway)"
        break
    fi
    sleep 0.2
done

# --- post and check delivery --------------------------------------------------------

ALICE_POST="hello from alice #rust"
BOB_POST="bob here #p2p"
CAROL_POST="carol says hi #rust"

say "posting"
alice post "$ALICE_POST"
bob post "$BOB_POST"
carol post "$CAROL_POST"

say "waiting for the posts to arrive"
wait_until "$TIMEOUT" "alice's post in bob's feed (bob follows alice)" \
    feed_has bob "$ALICE_POST"
wait_until "$TIMEOUT" "alice's #rust post in carol's feed (carol subscribes to #rust)" \
    feed_has carol "$ALICE_POST"
wait_until "$TIMEOUT" "bob's post in alice's feed (alice follows bob)" \
    feed_has alice "$BOB_POST"
echo "delivered"

# --- direct messages ----------------------------------------------------------------

# mutual PERSON ID: PERSON's `kith --json following` lists ID with "mutual": true.
mutual() {
    "$1" --json following | python3 -c '
import json, sys
want = sys.argv[1]
entries = [json.loads(l) for l in sys.stdin if l.strip()]
sys.exit(0 if any(e["id"] == want and e["mutual"] for e in entries) else 1)' "$2"
}

# inbox_has PERSON PEER TEXT: PERSON's inbox has a conversation with PEER whose latest
# message is TEXT (reading the inbox does not mark anything read).
inbox_has() {
    "$1" --json msg inbox | python3 -c '
import json, sys
peer, text = sys.argv[1], sys.argv[2]
entries = [json.loads(l) for l in sys.stdin if l.strip()]
sys.exit(0 if any(e["peer"] == peer and e["last_text"] == text for e in entries) else 1)' \
        "$2" "$3"
}

DM_TEXT="hi bob, this is end-to-end encrypted"

say "direct message: alice -> bob (they follow each other)"
# Messages go only between mutual connections: alice's node must have seen bob's follow.
wait_until "$TIMEOUT" "alice to see bob as a mutual connection" mutual alice "$BOB_ID"
alice msg send bob "$DM_TEXT"
# "queued" is fine too: the outbox retries until bob's node has it.
wait_until "$TIMEOUT" "alice's message in bob's inbox" inbox_has bob "$ALICE_ID" "$DM_TEXT"

say "bob's direct messages"
bob msg inbox
echo
bob msg thread alice

# --- a conversation: reply, reaction, repost, notifications -------------------------

# thread_has PERSON ID TEXT: PERSON's thread of ID contains TEXT.
thread_has() {
    "$1" --json thread "$2" | python3 -c '
import json, sys
text = sys.argv[1]
sys.exit(0 if any(json.loads(l)["text"] == text for l in sys.stdin if l.strip()) else 1)' "$3"
}

# notified PERSON KIND: PERSON has a notification of KIND (listing does not need to be new).
notified() {
    "$1" --json notifications | python3 -c '
import json, sys
sys.exit(0 if any(json.loads(l)["kind"] == sys.argv[1] for l in sys.stdin if l.strip()) else 1)' "$2"
}

say "a conversation: bob replies to alice and reacts"
ALICE_POST_ID=$(alice --json feed --author "$ALICE_ID" --limit 1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["id"])')
REPLY="welcome, alice!"
bob post "$REPLY" --reply-to "$ALICE_POST_ID"
bob react "$ALICE_POST_ID" "👍"
wait_until "$TIMEOUT" "bob's reply in alice's thread" thread_has alice "$ALICE_POST_ID" "$REPLY"
wait_until "$TIMEOUT" "alice to be notified of the reaction" notified alice reaction

say "alice's thread"
alice thread "$ALICE_POST_ID"
say "alice's notifications"
alice notifications

# --- show the feeds -----------------------------------------------------------------

for name in "${NAMES[@]}"; do
    say "$name's feed"
    "$name" feed
done

elapsed_ms=$((($(date +%s%N) - START_NS) / 1000000))
elapsed=$(printf '%d.%03d' $((elapsed_ms / 1000)) $((elapsed_ms % 1000)))
say "demo passed in $elapsed s (not counting the build)"

if ((KEEP)); then
    say "the three nodes keep running; open each in a browser (each address signs in once):"
    for name in "${NAMES[@]}"; do
        printf '  %-6s %s\n' "$name" "$("$name" web)"
    done
    echo
    echo "kith web gives a new address any time, e.g.:"
    echo "  $KITH_BIN --home $DEMO_DIR/alice web --open"
    echo "Press Ctrl-C to stop the nodes (their homes are then removed)."
    # Ctrl-C ends the wait; the cleanup stops the daemons. That is a normal end here.
    trap 'exit 0' INT
    wait "${PIDS[@]}" || true
    die "a daemon exited"
fi

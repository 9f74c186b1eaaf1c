#!/usr/bin/env bash
# Runs the test suite against real services, starting what is missing:
#   1. RabbitMQ on 127.0.0.1:5672: used if it answers; otherwise Debian's rabbitmq-server is
#      installed (once) and started bound to loopback;
#   2. s3s-fs, an S3-compatible server, installed once under .test-env/ (gitignored) and started
#      on a free loopback port with a temporary data folder, fresh credentials and one bucket;
#   3. cargo test over the workspace, with the DISPR_TEST_* variables the end-to-end tests read;
#   4. the extra checks: deploy/check.sh and every executable scripts/checks/*.sh.
# Everything it started is stopped on exit. Safe to run twice, and twice at once.
#
# Usage: scripts/test.sh                      the whole suite (what CI runs)
#        scripts/test.sh -p dispr-tests ...   only `cargo test <these arguments>`, same services
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
ENV_DIR="$REPO/.test-env"
S3S_VERSION=0.14.1
S3S_BIN="$ENV_DIR/bin/s3s-fs"
AMQP_HOST=127.0.0.1
AMQP_PORT=5672

SCRIPT_START=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - SCRIPT_START))" "$*"; }
die() {
    printf 'test.sh: %s\n' "$*" >&2
    exit 1
}
# Whether something accepts TCP connections at host $1, port $2 (bash's /dev/tcp: no netcat needed).
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# Waits up to $3 seconds for port_open $1 $2; fails early if process $4 (when given) exits.
wait_for_port() {
    local deadline=$((SECONDS + $3))
    until port_open "$1" "$2"; do
        if [[ -n "${4:-}" ]] && ! kill -0 "$4" 2>/dev/null; then return 1; fi
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 0.2
    done
}
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is missing: run as root, or start RabbitMQ on 127.0.0.1:5672 first"
    fi
}

mkdir -p "$ENV_DIR"
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dispr-test-env.XXXXXX")
S3S_PID=""
STARTED_RABBITMQ=""
cleanup() {
    local status=$?
    if [[ -n "$S3S_PID" ]]; then
        kill "$S3S_PID" 2>/dev/null || true
        wait "$S3S_PID" 2>/dev/null || true
    fi
    if [[ -n "$STARTED_RABBITMQ" ]]; then
        echo "stopping the RabbitMQ this script started"
        as_root rabbitmqctl stop >/dev/null 2>&1 || true
    fi
    rm -rf "$RUN_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. RabbitMQ -------------------------------------------------------------------------------
step "RabbitMQ"
if port_open "$AMQP_HOST" "$AMQP_PORT"; then
    echo "using the RabbitMQ that answers on $AMQP_HOST:$AMQP_PORT"
else
    if ! command -v rabbitmq-server >/dev/null; then
        echo "nothing answers on $AMQP_HOST:$AMQP_PORT and rabbitmq-server is not installed: installing it"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
    fi
    # The package may have started the service itself.
    if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
        echo "starting rabbitmq-server on $AMQP_HOST:$AMQP_PORT"
        as_root env RABBITMQ_NODE_IP_ADDRESS="$AMQP_HOST" ERL_EPMD_ADDRESS="$AMQP_HOST" \
            rabbitmq-server -detached
        STARTED_RABBITMQ=1
        wait_for_port "$AMQP_HOST" "$AMQP_PORT" 120 ||
            die "RabbitMQ did not answer on $AMQP_HOST:$AMQP_PORT within 120 s; see /var/log/rabbitmq/"
    fi
    echo "RabbitMQ answers on $AMQP_HOST:$AMQP_PORT"
fi

# --- 2. s3s-fs ---------------------------------------------------------------------------------
step "s3s-fs $S3S_VERSION"
# One install at a time: two runs at once share .test-env/.
(
    flock 9
    if ! "$S3S_BIN" --version 2>/dev/null | grep -qF "$S3S_VERSION"; then
        echo "installing s3s-fs $S3S_VERSION into .test-env/ (compiles once, a few minutes)"
        # Optimised lightly: it compiles in about half the time of a full release build and is
        # still far faster than the tests need.
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
            cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --root "$ENV_DIR"
    fi
) 9>"$ENV_DIR/install.lock"

S3_DATA="$RUN_DIR/s3-data"
S3_BUCKET=dispr-test
S3_ACCESS_KEY="dispr-test-$(random_hex 4)"
S3_SECRET_KEY=$(random_hex 20)
S3_REGION=us-east-1
S3_LOG="$RUN_DIR/s3s-fs.log"
# s3s-fs maps each bucket to a folder of its data root.
mkdir -p "$S3_DATA/$S3_BUCKET"
# A free port: a random one nothing answers on; a lost race with another program shows as
# s3s-fs exiting, and the next try picks another port.
for _attempt in 1 2 3 4 5; do
    S3_PORT=$((20000 + RANDOM % 30000))
    if port_open 127.0.0.1 "$S3_PORT"; then continue; fi
    "$S3S_BIN" --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$S3_DATA" >"$S3_LOG" 2>&1 &
    S3S_PID=$!
    if wait_for_port 127.0.0.1 "$S3_PORT" 30 "$S3S_PID"; then break; fi
    kill "$S3S_PID" 2>/dev/null || true
    wait "$S3S_PID" 2>/dev/null || true
    S3S_PID=""
done
if [[ -z "$S3S_PID" ]]; then
    cat "$S3_LOG" >&2 || true
    die "s3s-fs did not start (its log is above)"
fi
echo "s3s-fs answers on http://127.0.0.1:$S3_PORT (bucket $S3_BUCKET, data in $S3_DATA)"

export DISPR_TEST_AMQP_URL="amqp://guest:guest@$AMQP_HOST:$AMQP_PORT/%2f"
export DISPR_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export DISPR_TEST_S3_ACCESS_KEY="$S3_ACCESS_KEY"
export DISPR_TEST_S3_SECRET_KEY="$S3_SECRET_KEY"
export DISPR_TEST_S3_REGION="$S3_REGION"
export DISPR_TEST_S3_BUCKET="$S3_BUCKET"

# Python references some tests compare against (tifffile reads our TIFFs, see shape/tests;
# pandas and pyarrow read features.parquet and the output tables, tests/python/check_*.py).
step "Python test-time references (numpy, tifffile, pandas, pyarrow)"
python3 -m pip install --quiet --disable-pip-version-check numpy tifffile pandas pyarrow

# --- 3. cargo test -----------------------------------------------------------------------------
if (($# > 0)); then
    step "cargo test $*"
    cargo test "$@"
    step "done"
    exit 0
fi
step "cargo test --workspace --all-targets"
cargo test --workspace --all-targets

# --- 4. Extra checks ---------------------------------------------------------------------------
# Checks that are not cargo tests (deployment files, Python reference comparisons, ...) go in
# scripts/checks/ as executable *.sh files; they run in name order with the same environment,
# and any failure fails the run.
checks=()
if [[ -f deploy/check.sh ]]; then checks+=(deploy/check.sh); fi
for check in scripts/checks/*.sh; do
    if [[ -x "$check" ]]; then checks+=("$check"); fi
done
for check in "${checks[@]}"; do
    step "$check"
    bash "$check"
done

step "all tests passed"

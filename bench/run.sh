# bench/run.sh: the body of `./dev bench [quick|full]`, sourced by ./dev (it uses its helpers:
# pg, init_cluster, start_cluster, free_port, build, say).
#
# Every engine figure is a ratio against a baseline of ../shared/bench measured in the same run
# on the same cluster with the same pgbench settings (-M prepared, 8 clients, 2 threads).
# Results are printed as one table and appended to bench/RESULTS.md.

# errexit inside command substitutions too: a failing statement in $(ride_round) and the like
# stops the run instead of leaving an empty figure behind
shopt -s inherit_errexit

BENCH_TMP=
# (runs under set -e: every step must succeed or say || true; the soak's pgbench, a child of
# runuser, ends with the cluster's immediate stop)
bench_cleanup() {
    local pid
    for pid in "${BENCH_PID:-}" "${SOAK_PID:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ -n "$BENCH_TMP" ] || return 0
    pg "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -m immediate stop >/dev/null 2>&1 || true
    bench_slow_statements
    rm -rf "$BENCH_TMP"
}

# Statements that ran over auto_explain's 5 s or into a timeout during the run (a stalled sweep
# once held a TRUNCATE for minutes): counted, and the cluster's log kept for their plans.
bench_slow_statements() {
    local log="$BENCH_TMP/postgres.log" slow keep=/tmp/rydes-bench-postgres.log
    [ -f "$log" ] || return 0
    slow=$(grep -c -E "duration: [0-9.]+ ms  plan:|canceling statement due to statement timeout" \
        "$log" || true)
    [ "$slow" -gt 0 ] || return 0
    cp "$log" "$keep" || keep="(not kept: cp failed)"
    say "warning: $slow statements ran over 5 s or timed out; their plans are in $keep"
}

bench_sql() { pg psql -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d bench -qAt -v ON_ERROR_STOP=1 "$@"; }

# The session settings of the gateway's pool (src/db/pool.c), given to every pgbench run, the
# baselines' too: the same settings for both sides of a ratio.
export PGOPTIONS="-c enable_seqscan=off -c enable_bitmapscan=off -c jit=off -c plan_cache_mode=force_generic_plan -c default_transaction_isolation=read\\ committed"

# The rows SCRIPT leaves in its table (messages it sent and did not delete).
left_of() {
    local table
    case "$1" in */naive_*) table="naive_queue" ;; */limit_*) table="limit_rows" ;;
                 *) table="messages WHERE queue_id = $QID" ;; esac
    bench_sql -c "SELECT count(*) FROM $table"
}

# pgb SCRIPT SECONDS [pgbench options...]: prints "tps claim_latency_ms rows_left_by_warm_up"
# (the latency "-" for a script without a claim). Dies when pgbench printed no rate.
pgb() {
    local script=$1 secs=$2; shift 2
    local out="$BENCH_TMP/pgbench.out"
    pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared -c 8 -j 2 \
        -T "$WARMUP" -D qid="$QID" -D hint=0 "$@" -f "$script" bench >/dev/null 2>&1 || true
    local left0 tps lat
    left0=$(left_of "$script")
    pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared -c 8 -j 2 \
        -T "$secs" -r -D qid="$QID" -D hint=0 "$@" -f "$script" bench > "$out" 2>&1 \
        || { cat "$out" >&2; die "pgbench $script failed"; }
    tps=$(awk '/^tps = /{print $3}' "$out")
    lat=$(awk '/WITH c AS/{print $1; exit}' "$out")
    [ -n "$tps" ] || { cat "$out" >&2; die "pgbench $script printed no rate"; }
    echo "$tps ${lat:--} $left0"
}

reset_tables() {
    bench_sql -c "TRUNCATE messages, naive_queue, limit_rows" -c "VACUUM ANALYZE messages" \
        -c "VACUUM ANALYZE naive_queue" -c "VACUUM ANALYZE limit_rows"
}

# a / b to two places; "n/a" when b is not a positive number (a figure that is missing must
# not read as a ratio that meets its target)
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a ~ /^[0-9.]+$/) printf "%.2f", a / b;
                                     else printf "n/a" }'
}

# done_per_s SCRIPT TPS BATCH LEFT0: the messages a pgbench run of SCRIPT (on freshly reset
# tables) completed per second: those its transactions sent (TPS × BATCH) less those it left in
# the table (the rows there afterwards less the LEFT0 its warm-up left). pgbench counts a
# transaction whose claim came back short or empty as well.
done_per_s() {
    local left
    left=$(left_of "$1")
    awk -v t="$2" -v b="$3" -v l="$left" -v l0="$4" -v s="$SECS" \
        'BEGIN { printf "%.1f", t * b - (l - l0) / s }'
}

# The median of the numbers given (one per round).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# "median [lowest–highest]" of the per-round ratios given.
spread() {
    local lo hi
    lo=$(printf '%s\n' "$@" | sort -g | head -1)
    hi=$(printf '%s\n' "$@" | sort -g | tail -1)
    echo "$(median "$@") [$lo–$hi]"
}

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }

# Each ratio pairs a figure with its baseline measured next to it, ROUNDS times over, and reports
# the median of the per-round ratios with their range: on a shared 2-core machine a baseline
# alone swings by half between runs minutes apart, and measuring it once at the start would
# divide every later figure by whatever the machine did then. Every other round runs in the
# reverse order, so that no side always runs first. Figures are messages completed per second
# (done_per_s).
sql_figure() {
    local b=$ROOT/../shared/bench e=$ROOT/bench r
    case $1 in
        lim) reset_tables; r=($(pgb "$b/limit_cycle.sql" "$SECS")); lim+=("$(done_per_s "$b/limit_cycle.sql" "${r[0]}" 1 "${r[2]}")") ;;
        cyc) reset_tables; r=($(pgb "$e/engine_cycle.sql" "$SECS")); cyc+=("$(done_per_s "$e/engine_cycle.sql" "${r[0]}" 1 "${r[2]}")") ;;
        nai) reset_tables; r=($(pgb "$b/naive_cycle.sql" "$SECS")); nai+=("$(done_per_s "$b/naive_cycle.sql" "${r[0]}" 1 "${r[2]}")") ;;
        n10) reset_tables; r=($(pgb "$b/naive_cycle10.sql" "$SECS")); n10+=("$(done_per_s "$b/naive_cycle10.sql" "${r[0]}" 10 "${r[2]}")") ;;
        c10) reset_tables; r=($(pgb "$e/engine_cycle10.sql" "$SECS")); c10+=("$(done_per_s "$e/engine_cycle10.sql" "${r[0]}" 10 "${r[2]}")") ;;
    esac
}

bench_sql_figures() {
    local i f order lim=() nai=() n10=() cyc=() c10=() rl=() rn=() r10=()
    for i in $(seq "$ROUNDS"); do
        say "round $i of $ROUNDS"
        order="lim cyc nai n10 c10"
        [ $((i % 2)) = 0 ] && order="c10 n10 nai cyc lim"
        for f in $order; do sql_figure "$f"; done
        rl+=("$(ratio "${cyc[-1]}" "${lim[-1]}")")
        rn+=("$(ratio "${cyc[-1]}" "${nai[-1]}")")
        r10+=("$(ratio "${c10[-1]}" "${n10[-1]}")")
    done
    ECYCLE=$(median "${cyc[@]}")
    row "cycle, batch 1 (msg/s)" "$ECYCLE" "limit_cycle $(median "${lim[@]}")" "$(spread "${rl[@]}") (≥ 0.8)"
    row "cycle, batch 1 (msg/s)" "$ECYCLE" "naive_cycle $(median "${nai[@]}")" "$(spread "${rn[@]}") (≥ 3)"
    row "cycle, batch 10 (msg/s)" "$(median "${c10[@]}")" "naive_cycle10 $(median "${n10[@]}")" "$(spread "${r10[@]}") (≥ 2.5)"
}

# Receive latency (pgbench's mean of the claim statement) with a deep backlog and after churn,
# each against an empty queue's measured right before it, ROUNDS times (the backlog made anew
# and the churn run anew each round), as medians of the per-round ratios.
bench_backlog() {
    local e=$ROOT/bench r i empty=() back=() empty2=() churn=() rb=() rc=()
    for i in $(seq "$ROUNDS"); do
        reset_tables; r=($(pgb "$e/engine_cycle.sql" "$SECS")); empty+=("${r[1]}")
        say "backlog: $BACKLOG visible messages (round $i of $ROUNDS)"
        reset_tables
        # the fill itself takes seconds: not one of the statements the end-of-run warning is for
        bench_sql -c "SET auto_explain.log_min_duration = -1" \
            -c "INSERT INTO messages (queue_id, visible_at, message_id, body)
                      SELECT $QID, now(), gen_random_uuid(), '{\"ride\":' || g || '}'
                      FROM generate_series(1, $BACKLOG) g" -c "VACUUM ANALYZE messages"
        r=($(pgb "$e/engine_cycle.sql" "$SECS")); back+=("${r[1]}")
        reset_tables; r=($(pgb "$e/engine_cycle.sql" "$SECS")); empty2+=("${r[1]}")
        say "churn: $BACKLOG messages through an empty queue (round $i of $ROUNDS)"
        reset_tables
        pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared -c 8 -j 2 \
            -t $((BACKLOG / 8)) -D qid="$QID" -D hint=0 -f "$e/engine_cycle.sql" bench >/dev/null 2>&1
        r=($(pgb "$e/engine_cycle.sql" "$SECS")); churn+=("${r[1]}")
        rb+=("$(ratio "${back[-1]}" "${empty[-1]}")")
        rc+=("$(ratio "${churn[-1]}" "${empty2[-1]}")")
    done
    row "receive latency, ${BACKLOG} waiting (ms)" "$(median "${back[@]}")" "empty queue $(median "${empty[@]}")" "$(spread "${rb[@]}") (≤ 1.3)"
    row "receive latency, after ${BACKLOG} churned (ms)" "$(median "${churn[@]}")" "empty queue $(median "${empty2[@]}")" "$(spread "${rc[@]}") (≤ 1.3)"
}

field() { echo "$1" | sed "s/.*\"$2\":\([0-9.]*\).*/\1/"; }
per_second() { echo "$1" | sed 's/.*"per_second":\([0-9.]*\).*/\1/'; }
# ", N errors" when loadgen's output $1 counted failed operations (they are not in its rate).
errors_of() { local n; n=$(field "$1" errors); [ "${n:-0}" = 0 ] || echo ", $n errors"; }

# start_gateway LOG WORKERS [VAR=VALUE...]: serves the bench database on a free port with a
# new admin token (GW_BASE, GW_TOKEN; the process in BENCH_PID), with the workers and settings
# given. Dies when it is not ready within 10 s.
start_gateway() {
    local log=$BENCH_TMP/$1 workers=$2 port; shift 2
    port=$(free_port)
    GW_TOKEN="rydes_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    GW_BASE="http://127.0.0.1:$port"
    env DATABASE_URL="postgresql://postgres@127.0.0.1:$BENCH_PORT/bench" RYDES_PORT="$port" \
        RYDES_ADMIN_TOKEN="$GW_TOKEN" RYDES_LOG_LEVEL=warn RYDES_DB_POOL_SIZE=16 \
        RYDES_WORKERS="$workers" "$@" "$ROOT/build-bench/rydes" serve > "$log" 2>&1 &
    BENCH_PID=$!
    for _ in $(seq 100); do
        curl -sf "$GW_BASE/readyz" >/dev/null && return 0
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    die "the gateway did not become ready ($log)"
}

stop_gateway() { kill "$BENCH_PID"; wait "$BENCH_PID" 2>/dev/null || true; BENCH_PID=; }

# wait_zero SQL SECONDS: polls SQL (a count) until it says 0 (returns 0) or SECONDS have passed
# (returns 1). Dies when the query fails: a broken poll must not pass for a slow drain.
wait_zero() {
    local n end=$(($(date +%s) + $2))
    while :; do
        n=$(bench_sql -c "$1") || die "bench: $1 failed"
        [ "$n" = 0 ] && return 0
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# loadgen NAME MODE CONNS SECONDS against the running gateway; prints its JSON line.
lg() { "$ROOT/build-bench/loadgen" "$GW_BASE" "$GW_TOKEN" "$@"; }

bench_http() {
    local out i e=$ROOT/bench r hs=() hc=() es=() ec=() p99=() rs=() rc=() serrs="" cerrs=""
    reset_tables
    start_gateway rydes.log none
    # the engine's SQL runs right before its HTTP counterpart, the gateway idle meanwhile; each
    # HTTP figure after a warm-up of its own
    for i in $(seq "$ROUNDS"); do
        say "round $i of $ROUNDS"
        reset_tables; r=($(pgb "$e/engine_send.sql" "$SECS")); es+=("${r[0]}")
        reset_tables; lg bench send 8 "$WARMUP" >/dev/null
        reset_tables; out=$(lg bench send 8 "$SECS"); hs+=("$(per_second "$out")")
        p99+=("$(field "$out" p99_ms)"); serrs+=$(errors_of "$out")
        reset_tables; r=($(pgb "$e/engine_cycle.sql" "$SECS")); ec+=("$(done_per_s "$e/engine_cycle.sql" "${r[0]}" 1 "${r[2]}")")
        reset_tables; lg bench cycle 8 "$WARMUP" >/dev/null
        reset_tables; out=$(lg bench cycle 8 "$SECS"); hc+=("$(per_second "$out")"); cerrs+=$(errors_of "$out")
        rs+=("$(ratio "${hs[-1]}" "${es[-1]}")")
        rc+=("$(ratio "${hc[-1]}" "${ec[-1]}")")
    done
    bench_publish
    bench_rides
    stop_gateway
    row "HTTP send, 8 connections (msg/s, p99 $(median "${p99[@]}") ms${serrs})" "$(median "${hs[@]}")" \
        "engine SQL send $(median "${es[@]}")" "$(spread "${rs[@]}") (≥ 0.6)"
    row "HTTP cycle, 8 connections (msg/s${cerrs})" "$(median "${hc[@]}")" \
        "engine SQL cycle $(median "${ec[@]}")" "$(spread "${rc[@]}") (≥ 0.6)"
}

# Publish to a topic with 5 queue subscriptions (envelope delivery; one filtered, matching)
# against a single send of the same message to one queue, both through HTTP on the running
# gateway, ROUNDS times (every other round the send first), each after a warm-up. Cost ratios:
# send rate / publish rate (≤ 2), and against five sends (≤ 0.4): medians of the rounds'.
bench_publish() {
    local i m out auth="Authorization: Bearer $GW_TOKEN" json="Content-Type: application/json"
    local pub=() snd=() cost=() cost5=() errs=""
    curl -sf -X PUT "$GW_BASE/topics/bench-t" -H "$auth" >/dev/null
    for i in 1 2 3 4 5; do
        curl -sf -X PUT "$GW_BASE/queues/bench-p$i" -H "$auth" >/dev/null
        local sub="{\"queue\": \"bench-p$i\"}"
        [ "$i" = 5 ] && sub="{\"queue\": \"bench-p5\", \"filter_policy\": {\"fare\": [{\"numeric\": [\">=\", 100]}], \"city\": [\"Berlin\", \"Paris\"]}}"
        curl -sf -X PUT "$GW_BASE/topics/bench-t/subscriptions/s$i" -H "$auth" -H "$json" -d "$sub" >/dev/null
    done
    for i in $(seq "$ROUNDS"); do
        local order="publish sendattr"
        [ $((i % 2)) = 0 ] && order="sendattr publish"
        for m in $order; do
            local name=bench; [ "$m" = publish ] && name=bench-t
            reset_tables; lg "$name" "$m" 8 "$WARMUP" >/dev/null
            reset_tables; bench_sql -c "TRUNCATE payloads"
            out=$(lg "$name" "$m" 8 "$SECS"); errs+=$(errors_of "$out")
            if [ "$m" = publish ]; then pub+=("$(per_second "$out")"); else snd+=("$(per_second "$out")"); fi
        done
        cost+=("$(ratio "${snd[-1]}" "${pub[-1]}")")
        cost5+=("$(ratio "${snd[-1]}" "$(awk -v p="${pub[-1]}" 'BEGIN { print 5 * p }')")")
    done
    row "HTTP publish, 5 subscriptions, 1 filtered (publishes/s${errs})" "$(median "${pub[@]}")" \
        "HTTP send $(median "${snd[@]}")/s" "cost $(spread "${cost[@]}")× a send (≤ 2)"
    row "HTTP publish vs five sends (cost)" "$(median "${cost5[@]}")" "5 × send" "$(spread "${cost5[@]}") (≤ 0.4)"
}

# One round of POST /rides at c connections on the running gateway: prints "rate drain p50 p99
# note", the rate counting a ride once its five messages are in their queues (the bench's ride
# passes the extraordinary-rides filter): the rides delivered over the run plus the time the
# outbox took to drain after it. Rides whose fan-out failed or never finished do not count.
ride_round() {
    local c=$1 out t0 drain delivered failed rate note
    lg bench ride "$c" "$WARMUP" >/dev/null
    wait_zero "SELECT count(*) FROM publish_outbox" 60 || true
    reset_tables; bench_sql -c "TRUNCATE rides, payloads, publish_outbox"
    out=$(lg bench ride "$c" "$SECS")
    t0=$(date +%s.%N)
    wait_zero "SELECT count(*) FROM publish_outbox WHERE failed_at IS NULL" 60 || true
    drain=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    delivered=$(bench_sql -c "SELECT count(*) FROM messages")
    failed=$(bench_sql -c "SELECT count(*) FROM publish_outbox")
    rate=$(awk -v n="$(field "$out" ops)" -v m="$delivered" -v s="$(field "$out" seconds)" \
        -v d="$drain" 'BEGIN { r = m / 5; if (r > n) r = n; printf "%.1f", r / (s + d) }')
    note=$(errors_of "$out")
    [ "$failed" = 0 ] || note="$note, $failed not delivered"
    echo "$rate $drain $(field "$out" p50_ms) $(field "$out" p99_ms) ${note// /_}"
}

# POST /rides (store + publish to five queues, one filtered, in one transaction) next to a
# plain send of one message, at 1, 16 and 64 connections, ROUNDS times each (every other round
# the send first). The services are off (RYDES_WORKERS=none); the fan-out of the publish outbox
# runs as always. Target: a ride costs ≤ 1.5 × a send (median of the rounds' ratios).
bench_rides() {
    local c i m r nt out rides sends costs drains p50 p99 sp50 sp99 notes
    for c in 1 16 64; do
        rides=() sends=() costs=() drains=() p50=() p99=() sp50=() sp99=() notes=""
        for i in $(seq "$ROUNDS"); do
            local order="ride send"
            [ $((i % 2)) = 0 ] && order="send ride"
            for m in $order; do
                if [ "$m" = ride ]; then
                    r=($(ride_round "$c")); rides+=("${r[0]}"); drains+=("${r[1]}")
                    p50+=("${r[2]}"); p99+=("${r[3]}"); nt=${r[4]:-}; notes+=${nt//_/ }
                else
                    reset_tables; lg bench send "$c" "$WARMUP" >/dev/null
                    reset_tables; out=$(lg bench send "$c" "$SECS")
                    sends+=("$(per_second "$out")"); sp50+=("$(field "$out" p50_ms)")
                    sp99+=("$(field "$out" p99_ms)"); notes+=$(errors_of "$out")
                fi
            done
            costs+=("$(ratio "${sends[-1]}" "${rides[-1]}")")
        done
        row "POST /rides, $c conn (rides/s delivered, outbox drained ≤ $(printf '%s\n' "${drains[@]}" | sort -g | tail -1)s after; p50/p99 ms $(median "${p50[@]}")/$(median "${p99[@]}")${notes})" \
            "$(median "${rides[@]}")" \
            "send $(median "${sends[@]}")/s, p50/p99 $(median "${sp50[@]}")/$(median "${sp99[@]}")" \
            "cost $(spread "${costs[@]}")× a send (≤ 1.5)"
    done
}

# A prebooking campaign: CAMPAIGN submissions as fast as 16 connections go, against a gateway
# that runs the prebooking workers (default concurrency) at the same time. Reports the accept
# rate and latency and the time until every task is final.
bench_campaign() {
    local out t0 t1
    bench_sql -c "TRUNCATE tasks, prebookings, prebooking_submissions, messages, payloads"
    start_gateway campaign.log prebooking-processing,prebooking-datalake
    say "campaign: $CAMPAIGN prebookings"
    t0=$(date +%s.%N)
    out=$(LOADGEN_MAX_OPS=$CAMPAIGN lg x prebook 16 600)
    wait_zero "SELECT count(*) FROM tasks WHERE status IN ('pending', 'processing')" 600 \
        || die "campaign: tasks still open after 600 s"
    t1=$(date +%s.%N)
    stop_gateway
    row "campaign: $CAMPAIGN prebookings accepted (202/s, 16 conn$(errors_of "$out"))" "$(per_second "$out")" \
        "p50/p99 $(field "$out" p50_ms)/$(field "$out" p99_ms) ms while the workers drain" \
        "all final after $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
}

# RFQS requests for quotes submitted at once against the simulated fleet (5 unicorns, 80% answer
# after 0.2-2 s): time from submit to done per RFQ, p50/p99, from the rfqs table.
bench_rfqs() {
    local out
    bench_sql -c "TRUNCATE rfqs, rfq_quotes, messages, payloads CASCADE"
    start_gateway rfqs.log rfq-aggregator,unicorn-fleet
    say "rfqs: $RFQS requests for quotes"
    out=$(LOADGEN_MAX_OPS=$RFQS lg x rfq 16 120)
    wait_zero "SELECT count(*) FROM rfqs WHERE status = 'running'" 90 \
        || die "rfqs: requests still running after 90 s"
    stop_gateway
    local stats
    stats=$(bench_sql -c "SELECT 'all answered: ' || count(*) FILTER (WHERE r = 'all_answered')
        || ', p50/p99 ' || coalesce(round((percentile_cont(0.5) WITHIN GROUP (ORDER BY s)
                FILTER (WHERE r = 'all_answered'))::numeric, 2), 0)
        || '/' || coalesce(round((percentile_cont(0.99) WITHIN GROUP (ORDER BY s)
                FILTER (WHERE r = 'all_answered'))::numeric, 2), 0)
        || ' s; at eta (30 s): ' || count(*) FILTER (WHERE r = 'timeout')
        FROM (SELECT extract(epoch FROM completed_at - submitted_at) s, completion_reason r
              FROM rfqs) x")
    row "RFQs: $RFQS submitted at once (submit → done)" "$stats" \
        "accepted $(per_second "$out")/s, p99 $(field "$out" p99_ms) ms$(errors_of "$out")" "5 unicorns, 80% answer"
}

# Fare sagas against the payment simulator: SAGAS fares started at once (by SQL, as the
# customer-accounting worker would), run by one gateway's executors (RYDES_SAGA_CONCURRENCY 4);
# sagas finished per second with 0% and with 20% of them declined at the charge (compensated).
bench_sagas() {
    local fail t0 t1 rates=()
    for fail in 0 20; do
        bench_sql -c "TRUNCATE fares, saga_steps, payment_ledger, messages, payloads CASCADE" \
            -c "SELECT count(saga_start('bench-' || g, NULL,
                   CASE WHEN g % 100 < $fail THEN 'cust-' || g || '_fail_charge'
                        ELSE 'cust-' || g END,
                   20, '1111', NULL,
                   '{register,preauthorize,charge,credit_account,complete,publish}', NULL, NULL))
                FROM generate_series(1, $SAGAS) g" >/dev/null
        t0=$(date +%s.%N)
        start_gateway sagas.log fare-saga RYDES_SAGA_CONCURRENCY=4 RYDES_LOG_LEVEL=error
        wait_zero "SELECT count(*) FROM fares WHERE status IN ('pending', 'running')" 300 \
            || die "sagas: fares still open after 300 s"
        t1=$(date +%s.%N)
        stop_gateway
        rates+=("$(awk -v n="$SAGAS" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')")
    done
    local unbalanced
    unbalanced=$(bench_sql -c "SELECT count(*) FROM fare_ledger WHERE NOT balanced")
    row "fare sagas, simulator (sagas/s)" "${rates[0]} (0% fail)" "${rates[1]} (20% fail, compensated)" \
        "ledger unbalanced: $unbalanced"
}

# Matching one message against 200 compiled filter policies (pure C, one core).
bench_filter() {
    local out ns us
    out=$("$ROOT/build-bench/filterbench" "$SECS")
    ns=$(echo "$out" | sed 's/.*"ns_per_match":\([0-9.]*\).*/\1/')
    us=$(echo "$out" | sed 's/.*"us_per_message":\([0-9.]*\).*/\1/')
    row "filter: one message vs 200 policies (µs)" "$us" "ns per policy match: $ns" "microseconds"
}

# A steady-rate soak at half the measured cycle rate: per-minute throughput (held by pgbench's
# rate limit, so it drifts only if the engine cannot keep up), per-minute mean latency (what
# would show the engine slowing down as tables or indexes grow) and table sizes.
bench_soak() {
    local e=$ROOT/bench minutes=$SOAK_MINUTES rate sizes=() tps=() lat=()
    rate=$(awk -v t="$ECYCLE" 'BEGIN{printf "%d", t * 0.5}')
    say "soak: $minutes min at $rate cycles/s (after a checkpoint and a 1-minute warm-up)"
    reset_tables
    bench_sql -c "CHECKPOINT"
    pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared -c 8 -j 2 \
        -T 60 -R "$rate" -D qid="$QID" -D hint=0 -f "$e/engine_cycle.sql" bench >/dev/null 2>&1
    pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared -c 8 -j 2 \
        -T $((minutes * 60)) -R "$rate" -P 60 -D qid="$QID" -D hint=0 -f "$e/engine_cycle.sql" bench \
        > "$BENCH_TMP/soak.out" 2>&1 &
    SOAK_PID=$!
    for i in $(seq "$minutes"); do
        sleep 60
        sizes+=("$(bench_sql -c "SELECT pg_total_relation_size('messages')")")
    done
    wait "$SOAK_PID" || { cat "$BENCH_TMP/soak.out" >&2; die "soak: pgbench failed"; }
    SOAK_PID=
    mapfile -t tps < <(awk '/^progress:/{print $4}' "$BENCH_TMP/soak.out")
    [ "${#tps[@]}" -ge 2 ] || { cat "$BENCH_TMP/soak.out" >&2; die "soak: pgbench printed no progress"; }
    mapfile -t lat < <(awk '/^progress:/{for (i = 1; i < NF; i++) if ($i == "lat") print $(i + 1)}' "$BENCH_TMP/soak.out")
    local drift ldrift
    drift=$(printf '%s\n' "${tps[@]}" | awk 'NR==1{min=max=$1} {s+=$1; if($1<min)min=$1; if($1>max)max=$1} END{printf "%.1f", (NR ? (max-min)/(s/NR)*100 : 0)}')
    ldrift=$(printf '%s\n' "${lat[@]}" | awk '{v[NR]=$1} END{printf "%.1f", (NR > 1 && v[1] > 0 ? (v[NR]-v[1])/v[1]*100 : 0)}')
    row "soak ${minutes} min: throughput drift (%, rate-limited)" "$drift" "per-minute tps ${tps[*]}" "≤ 10"
    row "soak: latency, last minute vs first (%)" "$ldrift" "per-minute mean ms ${lat[*]}" "steady"
    row "soak: messages table size per minute (bytes)" "${sizes[-1]}" "${sizes[*]}" "bounded"
}

bench_main() {
    local mode=${1:-quick}
    # CAMPAIGN 0: no campaign, RFQ and saga figures
    case "$mode" in
        # issues 3 and 5's figures once each, briefly: a first look (about 2 minutes)
        quick) SECS=2; WARMUP=1; ROUNDS=1; BACKLOG=100000; SOAK_MINUTES=0; CAMPAIGN=0 ;;
        # every figure, three rounds each (about 15 minutes)
        standard) SECS=5; WARMUP=2; ROUNDS=3; BACKLOG=100000; SOAK_MINUTES=0; CAMPAIGN=5000; RFQS=1000; SAGAS=2000 ;;
        # what the issues' targets are judged on: 20 s figures, 1,000,000 messages, the soak
        full) SECS=20; WARMUP=5; ROUNDS=3; BACKLOG=1000000; SOAK_MINUTES=10; CAMPAIGN=20000; RFQS=1000; SAGAS=10000 ;;
        # the Wild Rydes figures alone, at full size (a few minutes)
        wildrydes) SECS=10; WARMUP=2; ROUNDS=1; SOAK_MINUTES=0; CAMPAIGN=20000; RFQS=1000; SAGAS=10000 ;;
        *) die "usage: ./dev bench [quick|standard|full|wildrydes]" ;;
    esac
    install_packages
    # what the binary is built from, read now: the report's own lines in bench/RESULTS.md would
    # count as a change by the time it is written
    BENCH_TREE="$(git -C "$ROOT" rev-parse --short HEAD)$([ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] || echo " (with uncommitted changes)")"
    say "release build (build-bench/)"
    build build-bench -Dbuildtype=release -Db_ndebug=true
    BENCH_TMP=$(mktemp -d /tmp/rydes-bench.XXXXXX)
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM # the EXIT trap cleans up
    chmod 755 "$BENCH_TMP"
    BENCH_PORT=$(free_port)
    init_cluster "$BENCH_TMP/data" "$BENCH_PORT" "$BENCH_TMP" "synchronous_commit = off" \
        "shared_buffers = 512MB" "max_wal_size = 4GB" "checkpoint_timeout = 15min" \
        "shared_preload_libraries = 'auto_explain'" "auto_explain.log_min_duration = '5s'" \
        "auto_explain.log_nested_statements = on"
    start_cluster "$BENCH_TMP/data" "$BENCH_TMP/postgres.log" "$BENCH_PORT"
    pg psql -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -qc "CREATE DATABASE bench"
    DATABASE_URL="postgresql://postgres@127.0.0.1:$BENCH_PORT/bench" RYDES_LOG_LEVEL=warn \
        "$ROOT/build-bench/rydes" migrate
    bench_sql -f "$ROOT/../shared/bench/naive_schema.sql" 2>/dev/null
    QID=$(bench_sql -c "INSERT INTO queues (name) VALUES ('bench') RETURNING id")
    if [ "$mode" != wildrydes ]; then
        say "pgbench: baselines and the engine's SQL (${SECS}s each)"
        bench_sql_figures
        bench_backlog
        say "HTTP (loadgen, ${SECS}s each)"
        bench_http
        bench_filter
    else
        start_gateway rydes.log none
        bench_rides
        stop_gateway
    fi
    if [ "$CAMPAIGN" -gt 0 ]; then
        bench_campaign
        bench_rfqs
        bench_sagas
    fi
    [ "$SOAK_MINUTES" -gt 0 ] && bench_soak
    bench_report "$mode"
}

bench_report() {
    local mode=$1 cpu mem
    cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
    local table
    table=$(printf '| figure | Rydes | baseline | ratio (target) |\n|---|---|---|---|\n'; printf '%s\n' "${ROWS[@]}")
    echo
    echo "$table"
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $mode, $(nproc) cores ($cpu), $mem, $BENCH_TREE"
        echo
        if [ "$mode" = wildrydes ]; then
            echo "PostgreSQL 15, synchronous_commit=off, shared_buffers=512MB; the Wild Rydes figures alone, one run each."
        else
            echo "PostgreSQL 15, synchronous_commit=off, shared_buffers=512MB, max_wal_size=4GB, checkpoint_timeout=15min, autovacuum_naptime=10s, the pool's session settings for every pgbench run; pgbench -M prepared -c 8 -j 2, ${SECS}s after ${WARMUP}s warm-up. Throughputs in messages completed (sent less those left over). Ratios: median of $ROUNDS round(s) [lowest–highest], each figure next to its baseline, every other round in reverse order. HTTP figures are the gateway as shipped: it combines concurrent requests' statements (RYDES_COMBINE), which its SQL baseline (one client per statement) does not. loadgen is a closed loop, its latencies include failed requests.$([ "$mode" = full ] || echo " A $mode run: indicative; the issues' targets are judged on full runs (20 s figures, 1,000,000 messages, the soak).")"
        fi
        echo
        echo "$table"
    } >> "$ROOT/bench/RESULTS.md"
    say "appended to bench/RESULTS.md"
}

#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions are run from traps and as "scenario_$name"
# bench/run.sh -- wrk against sluice and nginx in one run; prints ratios.
#
#   bench/run.sh [scenario...]     default: proxy
#   bench/run.sh --list            the scenarios and what each compares
#
# Each scenario starts its contenders on free loopback ports, registers them
# as targets (the first one is the reference, nginx), and the harness runs wrk
# against every target in turn -- reference, sluice, reference, sluice, ... --
# for BENCH_ROUNDS rounds, so slow drift of the machine hits both alike.
# The table goes to stdout and to bench/results/<timestamp>.txt.
#
# Environment (defaults in brackets):
#   SLUICE_BIN          the gateway binary [build/sluice]
#   BENCH_SECONDS       one measured wrk run [10]
#   BENCH_WARMUP        unmeasured wrk seconds per target before round 1 [2]
#   BENCH_ROUNDS        alternating rounds [2]
#   BENCH_CONNECTIONS   wrk -c [64]
#   BENCH_THREADS       wrk -t [1]
#   BENCH_CPU_GATEWAY   core of the gateways under test [0]
#   BENCH_CPU_UPSTREAM  core of the nginx upstream [1]
#   BENCH_CPU_WRK       core of wrk [1]
#                       (a taskset list such as "0,1", or "none": no pinning)
#   BENCH_KEEP=1        keep the temp dir (configs, logs, raw wrk output)
#   BENCH_SYSCALLS=1    after the measured rounds, count each target's system
#                       calls per request under strace -c (a short wrk run of
#                       BENCH_SYSCALL_SECONDS [3]; strace slows the server, so
#                       these runs are not timed)
#   BENCH_PERF=1        after the measured rounds, record each target with
#                       perf record -g during a short wrk run; the flat
#                       profile (top symbols) is written next to the results
#
# Exit status: 0 when every run completed, whatever the ratio; 1 when the
# harness could not do its job (a server would not start, a target did not
# answer its preflight request, wrk failed). Ctrl-C: 130.
set -euo pipefail
export LC_ALL=C # wrk and printf agree on the decimal point

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
SECONDS_RUN=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}

# ---------------------------------------------------------------- plumbing

WORK=""
PIDS=()   # every process we started, in start order
PNAMES=() # its name, for messages
USED_PORTS=" "

say() { printf '%s\n' "$*" >&2; }
die() {
    say "bench: error: $*"
    exit 1
}

# Stop the processes registered at index <from> and later, newest first (the
# gateways before the upstream they talk to): SIGTERM, up to 5 s, then SIGKILL.
stop_procs() {
    local from=$1 i pid t kids
    for ((i = ${#PIDS[@]} - 1; i >= from; i--)); do
        pid=${PIDS[i]}
        # Its children (nginx workers), in case it ignores SIGTERM and has
        # to be killed: then it cannot take them down itself.
        kids=$(pgrep -P "$pid" 2>/dev/null || true)
        kill -TERM "$pid" 2>/dev/null || true
        for ((t = 0; t < 50; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "bench: ${PNAMES[i]} (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            for t in $kids; do
                kill -KILL "$t" 2>/dev/null || true
            done
        fi
        wait "$pid" 2>/dev/null || true
        unset 'PIDS[i]' 'PNAMES[i]'
    done
    PIDS=("${PIDS[@]}")
    PNAMES=("${PNAMES[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_procs 0
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        # Kept after a harness failure (to see why) or on request.
        if [[ $rc -eq 1 || -n "${BENCH_KEEP:-}" ]]; then
            say "bench: configs, logs and raw wrk output kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

# Start "<cmd...>" in the background on cores <cpu> ("none": unpinned),
# output to <log>, and register it under <name> so cleanup stops it.
start_bg() {
    local name=$1 cpu=$2 log=$3
    shift 3
    if [[ $cpu == none ]]; then
        "$@" >"$log" 2>&1 </dev/null &
    else
        taskset -c "$cpu" "$@" >"$log" 2>&1 </dev/null &
    fi
    PIDS+=("$!")
    PNAMES+=("$name")
}

# Set variable <var> to a free loopback TCP port, distinct from the ports
# this run already handed out. The port is released before it is used, so a
# race with another program is possible but harmless: the server fails to
# bind and the harness stops with its log.
free_port() {
    local var=$1 p n
    for ((n = 0; n < 20; n++)); do
        p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
        if [[ $USED_PORTS != *" $p "* ]]; then
            USED_PORTS+="$p "
            printf -v "$var" '%s' "$p"
            return 0
        fi
    done
    die "could not find a free loopback port"
}

# Wait until <url> answers with any HTTP status while process <pid> (the
# newest registered one by default) is alive; up to 10 s.
wait_http() {
    local url=$1 name=$2 log=$3 pid=${PIDS[${#PIDS[@]} - 1]} t
    for ((t = 0; t < 200; t++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "bench: $name exited during start-up; last lines of $log:"
            tail -n 20 "$log" >&2 || true
            die "$name did not start"
        fi
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$log" >&2 || true
    die "$name did not answer $url within 10 s"
}

# Render template <tpl> to <out>, replacing each @KEY@ by VAL for the
# KEY=VAL arguments; a token left over is an error.
render() {
    local tpl=$1 out=$2 kv val
    shift 2
    local args=()
    for kv in "$@"; do
        val=${kv#*=}
        val=${val//\\/\\\\}
        val=${val//|/\\|}
        val=${val//&/\\&}
        args+=(-e "s|@${kv%%=*}@|${val}|g")
    done
    sed "${args[@]}" "$tpl" >"$out"
    if grep -q '@[A-Z_][A-Z_]*@' "$out"; then
        die "$out: unrendered token $(grep -o '@[A-Z_][A-Z_]*@' "$out" | head -n 1)"
    fi
}

# nginx runs from its own prefix <WORK>/<name>: config, pid, error log and
# temp files all live there (-e keeps it off /var/log/nginx before the config
# is read). When we are root the workers run as root too, because the prefix
# is a 0700 directory that "nobody" could not enter (proxy_cache, temp files).
NGINX_USER_LINE="# not root: workers run as the invoking user"
if [[ $(id -u) -eq 0 ]]; then
    NGINX_USER_LINE="user root $(id -gn);"
fi

# start_nginx <name> <template> <cpu> <port> [KEY=VAL...]
start_nginx() {
    local name=$1 tpl=$2 cpu=$3 port=$4
    shift 4
    local dir=$WORK/$name
    mkdir -p "$dir/tmp"
    render "$BENCH_DIR/nginx/$tpl" "$dir/nginx.conf" \
        DIR="$dir" PORT="$port" USER_LINE="$NGINX_USER_LINE" "$@"
    local nginx=(nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf")
    if ! "${nginx[@]}" -t -q >"$dir/check.log" 2>&1; then
        cat "$dir/check.log" >&2
        die "$name: nginx rejected $dir/nginx.conf"
    fi
    start_bg "$name" "$cpu" "$dir/stdout.log" "${nginx[@]}"
    PORT_PID[$port]=$!
    wait_http "http://127.0.0.1:$port/" "$name" "$dir/error.log"
}

# start_sluice <name> <cpu> <port> <yaml>: serve <yaml> and wait for health.
start_sluice() {
    local name=$1 cpu=$2 port=$3 yaml=$4
    local dir=$WORK/$name
    [[ -x "$SLUICE_BIN" ]] ||
        die "no sluice binary at $SLUICE_BIN (run make build, or make bench; or set SLUICE_BIN)"
    mkdir -p "$dir"
    printf '%s\n' "$yaml" >"$dir/sluice.yaml"
    start_bg "$name" "$cpu" "$dir/sluice.log" "$SLUICE_BIN" serve -c "$dir/sluice.yaml"
    PORT_PID[$port]=$!
    wait_http "http://127.0.0.1:$port/_sluice/health" "$name" "$dir/sluice.log"
}

# ------------------------------------------------------------------ targets

T_NAMES=()  # T_NAMES[0] is the reference every other target is divided by
T_URLS=()
T_EXPECT=() # HTTP status the preflight request must get
T_ARGS=()   # extra wrk arguments (one string, split on spaces: e.g. "-s f.lua")
T_HEADER=() # one request header for preflight and wrk ("X-API-Key: sk_..."), or ""
T_PID=()    # the server process answering the target's port (with its children)
declare -A PORT_PID # port -> pid of the server started on it

# target <name> <url> [expected status [extra wrk args [header]]]
target() {
    T_NAMES+=("$1")
    T_URLS+=("$2")
    T_EXPECT+=("${3:-200}")
    T_ARGS+=("${4:-}")
    T_HEADER+=("${5:-}")
    local port=${2#http://127.0.0.1:}
    port=${port%%/*}
    T_PID+=("${PORT_PID[$port]:-}")
}

# user+system clock ticks of process <pid> and its children (nginx's
# workers): what serving the requests cost, whatever its req/s.
proc_ticks() {
    local p pids=("$1")
    # shellcheck disable=SC2207 # pids are words
    pids+=($(pgrep -P "$1" || true))
    for p in "${pids[@]}"; do
        sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
    done | awk '{ n += $1 } END { print n + 0 }'
}

# Run wrk for <secs> seconds against target <i>, raw output to <out>.
run_wrk() {
    local i=$1 secs=$2 out=$3
    local cmd=(wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency)
    local extra
    read -r -a extra <<<"${T_ARGS[i]}"
    [[ -z ${T_HEADER[i]} ]] || cmd+=(-H "${T_HEADER[i]}")
    cmd+=("${extra[@]}" "${T_URLS[i]}")
    [[ $CPU_WRK == none ]] || cmd=(taskset -c "$CPU_WRK" "${cmd[@]}")
    "${cmd[@]}" >"$out" 2>&1 || {
        cat "$out" >&2
        die "wrk failed against ${T_NAMES[i]} (${T_URLS[i]})"
    }
}

# Print "req/s p50_ms p99_ms non2xx socket_errors requests" from wrk output <file>.
parse_wrk() {
    awk '
        function ms(v,  n, u) {
            n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") n /= 1000; else if (u == "s") n *= 1000
            else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000
            return n
        }
        /^Requests\/sec:/        { rps = $2 }
        / requests in /          { reqs = $1 }
        $1 == "50%"              { p50 = ms($2) }
        $1 == "99%"              { p99 = ms($2) }
        /Non-2xx or 3xx/         { n2 = $NF }
        /Socket errors:/         { gsub(",", ""); se = $4 + $6 + $8 + $10 }
        END {
            if (rps == "" || p50 == "" || p99 == "") exit 1
            printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, n2, se, reqs
        }' "$1"
}

# Per-core busy and total jiffies, "cpuN busy total" per line, from /proc/stat.
cpu_snap() {
    awk '/^cpu[0-9]/ { busy = $2 + $3 + $4 + $7 + $8 + $9; print $1, busy, busy + $5 + $6 }' /proc/stat
}

# Busy share of each core between two cpu_snap outputs: "0:99% 1:71%".
cpu_busy() {
    awk 'NR == FNR { b[$1] = $2; t[$1] = $3; next }
        { dt = $3 - t[$1]; sub(/^cpu/, "", $1)
          printf "%s%s:%d%%", sep, $1, (dt > 0 ? 100 * ($2 - b["cpu" $1]) / dt : 0); sep = " " }
        END { print "" }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# "task_jiffies total_jiffies": user+nice+system time of the whole machine
# (irq and softirq excluded: the kernel accounts those apart from tasks), and
# the elapsed jiffies of one core.
machine_snap() {
    awk '/^cpu / { print $2 + $3 + $4, ($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9) / (NCPU) }' NCPU="$NCPU" /proc/stat
}

# user+system jiffies of everything this run started: each registered server
# with its children (nginx workers), and this shell with its reaped children
# (wrk, curl, awk).
our_jiffies() {
    local p pids=()
    for p in "${PIDS[@]}"; do
        pids+=("$p")
        # shellcheck disable=SC2207 # pids are words
        pids+=($(pgrep -P "$p" || true))
    done
    {
        for p in "${pids[@]}"; do
            sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
        done
        sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }'
    } | awk '{ n += $1 } END { print n + 0 }'
}

# Per cent of one core used by programs this run did not start, between
# snapshots "<machine_snap> <our_jiffies>" <a> and <b>.
foreign_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        el = y[2] - x[2]; f = (y[1] - x[1]) - (y[3] - x[3]); if (f < 0) f = 0
        printf "%d", (el > 0 ? 100 * f / el : 0) }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

max() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# Count the system calls of target <i> (its process, threads and children)
# per request during a short wrk run under strace -c; append "name calls/req
# top-calls" to $SYSCALLS_REPORT.
count_syscalls() {
    local s=$1 i=$2 pid=${T_PID[$2]} out=$WORK/strace-$1-$2.txt f=$WORK/wrk/$1-$2-strace.txt
    local args=() p
    for p in "$pid" $(pgrep -P "$pid" || true); do args+=(-p "$p"); done
    strace -f -c -o "$out" "${args[@]}" 2>/dev/null &
    local st=$!
    sleep 0.5 # strace has attached
    run_wrk "$i" "${BENCH_SYSCALL_SECONDS:-3}" "$f"
    kill -INT "$st" 2>/dev/null || true
    wait "$st" 2>/dev/null || true
    local nreq
    nreq=$(parse_wrk "$f" | awk '{ print $6 }')
    awk -v n="$nreq" -v s="$s" -v t="${T_NAMES[i]}" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { c[$NF] = $4; tot += $4 }
        END {
            if (n <= 0) exit
            printf "%-10s %-11s %6.2f syscalls/req:", s, t, tot / n
            m = 0
            for (k in c) order[++m] = k
            for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (c[order[b]] > c[order[a]]) { x = order[a]; order[a] = order[b]; order[b] = x }
            for (a = 1; a <= m && a <= 8; a++) printf " %s %.2f", order[a], c[order[a]] / n
            printf "\n"
        }' "$out" >>"$SYSCALLS_REPORT"
}

# Profile target <i> with perf during a short wrk run; its flat profile
# (self time, top symbols) goes to $PERF_REPORT.
profile_target() {
    local s=$1 i=$2 pid=${T_PID[$2]} data=$WORK/perf-$1-$2.data
    local f=$WORK/wrk/$1-$2-perf.txt p list=$pid
    for p in $(pgrep -P "$pid" || true); do list+=",$p"; done
    perf record -q -g -o "$data" -p "$list" >/dev/null 2>&1 &
    local pr=$!
    sleep 0.5
    run_wrk "$i" "${BENCH_PERF_SECONDS:-5}" "$f"
    kill -INT "$pr" 2>/dev/null || true
    wait "$pr" 2>/dev/null || true
    {
        printf '== %s / %s (self time, symbols above 0.5%%)\n' "$s" "${T_NAMES[i]}"
        perf report -i "$data" --no-children --stdio --percent-limit 0.5 -g none \
            --sort dso,symbol 2>/dev/null | grep -v '^#' | sed '/^$/d'
        printf '\n'
    } >>"$PERF_REPORT"
}

# Measure every registered target of scenario <s>, alternating, and append
# its table to $REPORT and its per-run lines to $DETAILS.
measure() {
    local s=$1 n=${#T_NAMES[@]} i r code f
    ((n >= 2)) || die "scenario $s registered ${n} target(s); it needs a reference and at least one more"

    for ((i = 0; i < n; i++)); do
        local hdr=()
        [[ -z ${T_HEADER[i]} ]] || hdr=(-H "${T_HEADER[i]}")
        code=$(curl -s "${hdr[@]}" -o "$WORK/preflight.out" -w '%{http_code}' --max-time 5 "${T_URLS[i]}" || true)
        [[ $code == "${T_EXPECT[i]}" ]] ||
            die "$s/${T_NAMES[i]}: preflight GET ${T_URLS[i]} got HTTP ${code:-none}, expected ${T_EXPECT[i]}: $(head -c 200 "$WORK/preflight.out" 2>/dev/null)"
    done

    if ((WARMUP > 0)); then
        for ((i = 0; i < n; i++)); do
            say "[$s] warm-up ${T_NAMES[i]} (${WARMUP}s)"
            run_wrk "$i" "$WARMUP" "$WORK/wrk/$s-${T_NAMES[i]}-warmup.txt"
        done
    fi

    declare -A RPS P50 P99 N2 SE CPU LOAD_BOUND
    local rps p50 p99 n2 se nreq before busy idle_busy fbefore foreign t0 cpu
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((i = 0; i < n; i++)); do
            f=$WORK/wrk/$s-${T_NAMES[i]}-$r.txt
            # Between runs everything we started is idle: a busy core now
            # means another program is competing, and this run is suspect.
            before=$(cpu_snap)
            sleep 0.5
            idle_busy=$(cpu_busy "$before" "$(cpu_snap)")
            before=$(cpu_snap)
            fbefore="$(machine_snap) $(our_jiffies)"
            t0=$(proc_ticks "${T_PID[i]}")
            run_wrk "$i" "$SECONDS_RUN" "$f"
            cpu=$(($(proc_ticks "${T_PID[i]}") - t0))
            foreign=$(foreign_pct "$fbefore" "$(machine_snap) $(our_jiffies)")
            busy=$(cpu_busy "$before" "$(cpu_snap)")
            read -r rps p50 p99 n2 se nreq < <(parse_wrk "$f") || true
            [[ -n "${rps:-}" ]] || {
                cat "$f" >&2
                die "could not read wrk output $f"
            }
            # The server's CPU microseconds per request served (its ticks
            # are 1/CLK_TCK s: 10 ms, against several seconds per run).
            CPU[$i.$r]=$(awk -v t="$cpu" -v n="$nreq" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }')
            RPS[$i.$r]=$rps P50[$i.$r]=$p50 P99[$i.$r]=$p99 N2[$i.$r]=$n2 SE[$i.$r]=$se
            local line
            line=$(printf '%-10s %d/%d %-10s %8.0f req/s  %6.2f cpu-us/req  p50 %7.3f ms  p99 %7.3f ms  non-2xx %d  sock err %d  cpu busy %s  others %d%%' \
                "$s" "$r" "$ROUNDS" "${T_NAMES[i]}" "$rps" "${CPU[$i.$r]}" "$p50" "$p99" "$n2" "$se" "$busy" "$foreign")
            # With the gateway alone on its core, that core short of full
            # while the load core is full means wrk + upstream set the pace.
            # (A target that is the upstream itself has no gateway.)
            if [[ $CPU_GATEWAY =~ ^[0-9]+$ && $CPU_WRK =~ ^[0-9]+$ && $CPU_GATEWAY != "$CPU_WRK" ]] &&
                [[ ${T_URLS[i]} != "http://127.0.0.1:$UPSTREAM_PORT/"* ]] &&
                awk -v l="$busy" -v g="$CPU_GATEWAY" -v w="$CPU_WRK" 'BEGIN { n = split(l, a, /[ :%]+/)
                    for (k = 1; k < n; k += 2) u[a[k]] = a[k + 1]
                    exit !(u[g] < 90 && u[w] >= 95) }'; then
                line+="  [load-bound: wrk's core was full, the gateway's was not]"
                LOAD_BOUND[$i]=$((${LOAD_BOUND[$i]:-0} + 1))
            fi
            if ((foreign >= 10)) ||
                awk -v l="$idle_busy" 'BEGIN { n = split(l, a, /[ :%]+/); for (k = 2; k <= n; k += 2) if (a[k] > 15) exit 0; exit 1 }'; then
                line+="  [SUSPECT: other programs used the CPU; cores busy just before: $idle_busy]"
                BUSY_RUNS=$((BUSY_RUNS + 1))
            fi
            say "$line"
            printf '%s\n' "$line" >>"$DETAILS"
        done
    done

    local best=() med=() vals p50s p99s cpus errs notes=()
    for ((i = 0; i < n; i++)); do
        vals=() p50s=() p99s=() cpus=() errs=0
        for ((r = 1; r <= ROUNDS; r++)); do
            vals+=("${RPS[$i.$r]}")
            cpus+=("${CPU[$i.$r]}")
            p50s+=("${P50[$i.$r]}")
            p99s+=("${P99[$i.$r]}")
            errs=$((errs + ${N2[$i.$r]} + ${SE[$i.$r]}))
        done
        best[i]=$(max "${vals[@]}")
        med[i]=$(median "${vals[@]}")
        # The median ratio pairs each run with the reference's run of the
        # same round (seconds apart), so drift of the machine over the
        # whole invocation cancels out.
        local ratio_b ratio_m ratio_c pairs=() cpairs=()
        for ((r = 1; r <= ROUNDS; r++)); do
            pairs+=("$(awk -v a="${RPS[$i.$r]}" -v b="${RPS[0.$r]}" 'BEGIN { printf "%.2f", a / b }')")
            # CPU ratio as reference/target: above 1 the target costs less.
            cpairs+=("$(awk -v a="${CPU[$i.$r]}" -v b="${CPU[0.$r]}" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')")
        done
        ratio_c=$(awk -v m="$(median "${cpairs[@]}")" 'BEGIN { printf "%.2f", m }')
        ratio_b=$(awk -v a="${best[i]}" -v b="${best[0]}" 'BEGIN { printf "%.2f", a / b }')
        ratio_m=$(awk -v m="$(median "${pairs[@]}")" 'BEGIN { printf "%.2f", m }')
        printf '%-10s %-11s %9.2f %7s %12.0f %12.0f %9.3f %9.3f %8d %7s %7s\n' \
            "$s" "${T_NAMES[i]}" "$(median "${cpus[@]}")" "$ratio_c" "${best[i]}" "${med[i]}" \
            "$(median "${p50s[@]}")" "$(median "${p99s[@]}")" "$errs" \
            "$ratio_b" "$ratio_m" >>"$REPORT"
        if ((${LOAD_BOUND[$i]:-0} > 0)); then
            notes+=("note: $s/${T_NAMES[i]}: ${LOAD_BOUND[$i]} run(s) were limited by wrk + upstream, not by the gateway; its req/s is a lower bound")
        fi
        if ((errs > 0)) && [[ ${T_EXPECT[i]} == 2* ]]; then
            notes+=("note: $s/${T_NAMES[i]} had $errs non-2xx/3xx responses or socket errors; its req/s is not comparable")
        fi
        if ((i > 0)); then
            RATIOS+=("$s: ${T_NAMES[i]} vs ${T_NAMES[0]}: CPU per request ${ratio_c}x (${T_NAMES[0]}'s/${T_NAMES[i]}'s, median of rounds: ${cpairs[*]}); req/s $ratio_b (best), $ratio_m (median of rounds: ${pairs[*]})")
        fi
    done
    for f in "${notes[@]+"${notes[@]}"}"; do
        RATIOS+=("$f")
    done
    if [[ ${BENCH_SYSCALLS:-0} == 1 ]]; then
        for ((i = 0; i < n; i++)); do
            [[ -z ${T_PID[i]} ]] || count_syscalls "$s" "$i"
        done
    fi
    if [[ ${BENCH_PERF:-0} == 1 ]]; then
        for ((i = 0; i < n; i++)); do
            [[ -z ${T_PID[i]} ]] || profile_target "$s" "$i"
        done
    fi
}

# --------------------------------------------------------------- scenarios
#
# A scenario is a function scenario_<name> that starts what it needs beyond
# the shared upstream (UPSTREAM_PORT, started once per run) and registers
# targets with `target`, reference first. Whatever it starts is stopped when
# it is measured. Gateways under test go on $CPU_GATEWAY.
# Planned: redis (sluice Redis store vs memory store).

declare -A SCENARIO_HELP

SCENARIO_HELP[proxy]="sluice proxying to the upstream vs nginx proxy_pass; 1 worker each, keep-alive 64"
scenario_proxy() {
    local nport sport
    free_port nport
    free_port sport
    start_nginx nginx-proxy proxy.conf.in "$CPU_GATEWAY" "$nport" UPORT="$UPSTREAM_PORT"
    start_sluice sluice-proxy "$CPU_GATEWAY" "$sport" "$(sluice_yaml_proxy "$sport")"
    target nginx "http://127.0.0.1:$nport/"
    target sluice "http://127.0.0.1:$sport/"
}

sluice_yaml_proxy() {
    cat <<EOF
server:
  listen: ["127.0.0.1:$1"]
  workers: 1
  access_log: false
upstreams:
  app:
    servers: ["127.0.0.1:$UPSTREAM_PORT"]
    keepalive: 64
routes:
  - prefix: /
    upstream: app
EOF
}

SCENARIO_HELP[upload]="chunked 16 KiB uploads: sluice (request_buffering: auto, sent with Content-Length) vs nginx's default (proxy_request_buffering on)"
scenario_upload() {
    local nport sport
    free_port nport
    free_port sport
    start_nginx nginx-upload proxy.conf.in "$CPU_GATEWAY" "$nport" UPORT="$UPSTREAM_PORT"
    start_sluice sluice-upload "$CPU_GATEWAY" "$sport" "$(sluice_yaml_proxy "$sport")"
    target nginx "http://127.0.0.1:$nport/" 200 "-s $BENCH_DIR/upload.lua"
    target sluice "http://127.0.0.1:$sport/" 200 "-s $BENCH_DIR/upload.lua"
}

SCENARIO_HELP[limit]="a rate-limited route: sluice (sliding window per client) vs nginx limit_req, both never rejecting"
scenario_limit() {
    local nport sport
    free_port nport
    free_port sport
    start_nginx nginx-limit limit.conf.in "$CPU_GATEWAY" "$nport" UPORT="$UPSTREAM_PORT"
    start_sluice sluice-limit "$CPU_GATEWAY" "$sport" "$(sluice_yaml_limit "$sport")"
    target nginx "http://127.0.0.1:$nport/"
    target sluice "http://127.0.0.1:$sport/"
}

# The proxy of sluice_yaml_proxy with a per-client limit wrk never reaches:
# every request is counted, none rejected, like nginx's limit_req above.
sluice_yaml_limit() {
    sluice_yaml_proxy "$1" | sed 's|^    upstream: app$|    upstream: app\n    limits: {anonymous: ["4000000000/h"]}|'
}

SCENARIO_HELP[cache]="cache hits: sluice's response cache vs nginx proxy_cache (proxy_cache_lock on), both warmed before measuring"
scenario_cache() {
    local nport sport
    free_port nport
    free_port sport
    start_nginx nginx-cache cache.conf.in "$CPU_GATEWAY" "$nport" UPORT="$UPSTREAM_PORT"
    start_sluice sluice-cache "$CPU_GATEWAY" "$sport" "$(sluice_yaml_cache "$sport")"
    # Fill both caches, then make sure the next answer is a hit: otherwise
    # the run would measure proxying, and the ratio would mean nothing.
    warm_cache nginx "http://127.0.0.1:$nport/" X-Cache-Status
    warm_cache sluice "http://127.0.0.1:$sport/" X-Cache
    target nginx "http://127.0.0.1:$nport/"
    target sluice "http://127.0.0.1:$sport/"
}

# The proxy of sluice_yaml_proxy with the route cached for 10 minutes (as
# nginx's proxy_cache_valid) and the store's defaults written out.
sluice_yaml_cache() {
    sluice_yaml_proxy "$1" | sed 's|^    upstream: app$|    upstream: app\n    cache: {ttl: 600s}|'
    printf 'cache:\n  max_memory: 256m\n  max_object_size: 8m\n'
}

# warm_cache <name> <url> <header>: request <url> until its <header> says
# HIT (up to 10 tries), or stop the run.
warm_cache() {
    local name=$1 url=$2 header=$3 t got=""
    for ((t = 0; t < 10; t++)); do
        got=$(curl -s -o /dev/null -D - --max-time 5 "$url" |
            awk -v h="$header" 'BEGIN { h = tolower(h) ":" }
                tolower($1) == h { sub(/\r$/, "", $2); print $2 }')
        [[ $got == HIT ]] && return 0
    done
    die "$name: $url not served from its cache after 10 requests ($header: ${got:-none})"
}

SCENARIO_HELP[auth]="one sluice, one limited route: requests with an API key vs the same requests anonymous"
scenario_auth() {
    local sport secret
    free_port sport
    start_sluice sluice-auth "$CPU_GATEWAY" "$sport" "$(sluice_yaml_auth "$sport")"
    secret=$("$SLUICE_BIN" keys create -c "$WORK/sluice-auth/sluice.yaml" --tier pro --json |
        sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
    [[ $secret == sk_* ]] || die "auth: could not create an API key"
    # Anonymous requests carry a header of the same size under another name,
    # so both sides move the same bytes and the ratio is the cost of
    # identifying the key.
    target anonymous "http://127.0.0.1:$sport/" 200 "" "X-Padding: ${secret//?/x}"
    # The route requires a key, so the preflight proves the key is accepted.
    target api-key "http://127.0.0.1:$sport/keyed/" 200 "" "X-API-Key: $secret"
}

# The limited proxy of sluice_yaml_limit, and a route that only keys may
# use. Both sides count the same: one tier limit and one route limit that
# wrk never exhausts, so the difference is what identifying a key costs.
sluice_yaml_auth() {
    sluice_yaml_proxy "$1" | sed 's|^routes:$|routes:\n  - prefix: /keyed/\n    auth: required\n    limits: {"*": ["4000000000/h"]}|; s|^    upstream: app$|    upstream: app\n    limits: {anonymous: ["4000000000/h"]}|'
    printf 'tiers:\n  anonymous: {limits: ["4000000000/h"]}\n  pro: {limits: ["4000000000/h"]}\n'
    printf 'store:\n  data_dir: %s\n' "$WORK/sluice-auth/var"
}

SCENARIO_HELP[quota]="an API key on a limited route: nginx limit_req vs sluice with key + limits (usage off), and sluice with key + limits + quota + usage"
scenario_quota() {
    local nport lport qport lsecret qsecret
    free_port nport
    free_port lport
    free_port qport
    start_nginx nginx-limit limit.conf.in "$CPU_GATEWAY" "$nport" UPORT="$UPSTREAM_PORT"
    start_sluice sluice-keyed "$CPU_GATEWAY" "$lport" "$(sluice_yaml_keyed "$lport" sluice-keyed)"
    start_sluice sluice-quota "$CPU_GATEWAY" "$qport" "$(sluice_yaml_quota "$qport" sluice-quota)"
    lsecret=$(bench_key sluice-keyed)
    qsecret=$(bench_key sluice-quota)
    target nginx "http://127.0.0.1:$nport/"
    target keyed "http://127.0.0.1:$lport/" 200 "" "X-API-Key: $lsecret"
    # The preflight proves the key and the quota answer (X-Quota-* on a 200).
    target keyed+quota "http://127.0.0.1:$qport/" 200 "" "X-API-Key: $qsecret"
}

# A pro key of the gateway <name>'s store, printed.
bench_key() {
    local secret
    secret=$("$SLUICE_BIN" keys create -c "$WORK/$1/sluice.yaml" --tier pro --json |
        sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
    [[ $secret == sk_* ]] || die "$1: could not create an API key"
    printf '%s' "$secret"
}

# One route for keys, a tier limit and a route limit wrk never exhausts;
# usage metering off unless <3> (tier keys) says otherwise.
sluice_yaml_keyed() {
    sluice_yaml_proxy "$1" | sed 's|^    upstream: app$|    upstream: app\n    auth: required\n    limits: {"*": ["4000000000/h"]}|'
    printf 'tiers:\n  pro: {limits: ["4000000000/h"]%s}\n' "${3:-}"
    printf 'store:\n  data_dir: %s\n' "$WORK/$2/var"
    printf 'usage:\n  enabled: %s\n' "${4:-false}"
}

# The same with a monthly and a daily quota wrk never exhausts, counted
# (and written behind to SQLite) on every request, and usage metering with
# a price.
sluice_yaml_quota() {
    sluice_yaml_keyed "$1" "$2" ', quota: {daily: 1000000000000, monthly: 1000000000000}, price_per_1k: 0.5' true
}

SCENARIO_HELP[redis]="a rate-limited route: sluice with the Redis store vs the same sluice config on the memory store (redis-server on the upstream's core)"
scenario_redis() {
    local mport rport
    free_port mport
    free_port rport
    free_port REDIS_PORT
    start_bg redis "${BENCH_CPU_REDIS:-$CPU_UPSTREAM}" "$WORK/redis.log" redis-server --port "$REDIS_PORT" \
        --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
    local t
    for ((t = 0; t < 50; t++)); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    start_sluice sluice-memory "$CPU_GATEWAY" "$mport" "$(sluice_yaml_limit "$mport")"
    start_sluice sluice-redis "$CPU_GATEWAY" "$rport" "$(sluice_yaml_redis "$rport")"
    target memory "http://127.0.0.1:$mport/"
    target redis "http://127.0.0.1:$rport/"
}

# The limited route of sluice_yaml_limit, counted in Redis.
sluice_yaml_redis() {
    sluice_yaml_limit "$1"
    printf 'store:\n  backend: redis\n  redis: {url: "redis://127.0.0.1:%s/0", timeout: 50ms}\n' "$REDIS_PORT"
}

# After scenario redis: Redis commands per request of the redis target,
# from Redis's own counters and wrk's request counts; and redis-server's
# own CPU per command (user + system since it started: warm-ups included),
# which the gateway's CPU per request does not contain.
after_redis() {
    local calls reqs cpu
    calls=$(redis-cli -p "$REDIS_PORT" info commandstats |
        awk -F'[=,:]' '/^cmdstat_(evalsha|eval):/ { n += $3 } END { print n + 0 }')
    reqs=$(cat "$WORK"/wrk/redis-redis-*.txt | awk '/requests in/ { n += $1 } END { print n + 0 }')
    RATIOS+=("redis: $calls EVALSHA/EVAL for $reqs requests = $(awk -v c="$calls" -v r="$reqs" 'BEGIN { printf "%.3f", (r ? c / r : 0) }') Redis commands per request (heartbeats included)")
    cpu=$(redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }')
    RATIOS+=("redis: redis-server's own CPU $cpu s = $(awk -v s="$cpu" -v c="$calls" 'BEGIN { printf "%.2f", (c ? s * 1e6 / c : 0) }') us per command, not in the gateway's cpu us/req")
}

SCENARIO_HELP[baseline]="nginx vs an identical nginx: the harness's noise floor (no sluice needed)"
scenario_baseline() {
    local a b
    free_port a
    free_port b
    start_nginx nginx-a proxy.conf.in "$CPU_GATEWAY" "$a" UPORT="$UPSTREAM_PORT"
    start_nginx nginx-b proxy.conf.in "$CPU_GATEWAY" "$b" UPORT="$UPSTREAM_PORT"
    target nginx "http://127.0.0.1:$a/"
    target nginx-b "http://127.0.0.1:$b/"
}

SCENARIO_HELP[ceiling]="wrk straight at the upstream vs nginx proxying: how close a gateway gets to the load side's limit"
scenario_ceiling() {
    local a
    free_port a
    start_nginx nginx-proxy proxy.conf.in "$CPU_GATEWAY" "$a" UPORT="$UPSTREAM_PORT"
    target direct "http://127.0.0.1:$UPSTREAM_PORT/"
    target nginx "http://127.0.0.1:$a/"
}

# -------------------------------------------------------------------- main

list_scenarios() {
    local s
    for s in $(declare -F | awk '$3 ~ /^scenario_/ { sub(/^scenario_/, "", $3); print $3 }'); do
        printf '  %-10s %s\n' "$s" "${SCENARIO_HELP[$s]:-}"
    done
}

# A pin must be a core list this process may use, or "none".
check_cpu() {
    local role=$1 cpu=$2
    [[ $cpu == none ]] && return 0
    taskset -c "$cpu" true 2>/dev/null || die "BENCH_CPU_$role=$cpu: not a core list this machine allows (try none)"
}

main() {
    case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        printf '\nscenarios:\n'
        list_scenarios
        exit 0
        ;;
    --list)
        list_scenarios
        exit 0
        ;;
    esac

    local scenarios=("$@") s
    ((${#scenarios[@]})) || scenarios=(proxy)
    for s in "${scenarios[@]}"; do
        declare -F "scenario_$s" >/dev/null || {
            say "scenarios:"
            list_scenarios >&2
            die "unknown scenario: $s"
        }
    done
    [[ $SECONDS_RUN =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS=$SECONDS_RUN: want a whole number of seconds >= 1"
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP=$WARMUP: want a whole number of seconds"
    [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS=$ROUNDS: want a whole number >= 1"
    local tool
    local tools=(nginx wrk curl python3 taskset flock)
    [[ ${BENCH_SYSCALLS:-0} != 1 ]] || tools+=(strace)
    [[ ${BENCH_PERF:-0} != 1 ]] || tools+=(perf)
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || die "$tool not found (scripts/deps installs it)"
    done

    # Pinning: with two or more usable cores the gateways get one to
    # themselves; wrk and the upstream share another (docs/benchmarks.md).
    local ncpu
    ncpu=$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
    NCPU=$(grep -c '^cpu[0-9]' /proc/stat)
    CLK_TCK=$(getconf CLK_TCK)
    if ((ncpu >= 2)); then
        CPU_GATEWAY=${BENCH_CPU_GATEWAY:-0}
        CPU_UPSTREAM=${BENCH_CPU_UPSTREAM:-1}
        CPU_WRK=${BENCH_CPU_WRK:-1}
    else
        say "bench: warning: only $ncpu usable core; running unpinned, ratios will be noisy"
        CPU_GATEWAY=${BENCH_CPU_GATEWAY:-none}
        CPU_UPSTREAM=${BENCH_CPU_UPSTREAM:-none}
        CPU_WRK=${BENCH_CPU_WRK:-none}
    fi
    check_cpu GATEWAY "$CPU_GATEWAY"
    check_cpu UPSTREAM "$CPU_UPSTREAM"
    check_cpu WRK "$CPU_WRK"

    # Two benchmarks at once would measure each other: queue behind any
    # other run on this machine (the lock goes when this process exits).
    local lock=${TMPDIR:-/tmp}/sluice-bench.lock
    exec 9>>"$lock"
    if ! flock -n 9; then
        say "bench: another bench run holds $lock; waiting for it to finish"
        flock 9
    fi

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
    mkdir -p "$WORK/wrk"
    REPORT=$WORK/report.txt
    SYSCALLS_REPORT=$WORK/syscalls.txt
    PERF_REPORT=$WORK/perf.txt
    : >"$PERF_REPORT"
    : >"$SYSCALLS_REPORT"
    DETAILS=$WORK/details.txt
    RATIOS=()
    BUSY_RUNS=0
    : >"$REPORT"
    : >"$DETAILS"

    local load
    load=$(cut -d' ' -f1 /proc/loadavg)

    free_port UPSTREAM_PORT
    start_nginx upstream upstream.conf.in "$CPU_UPSTREAM" "$UPSTREAM_PORT"
    local mark=${#PIDS[@]}

    for s in "${scenarios[@]}"; do
        T_NAMES=() T_URLS=() T_EXPECT=() T_ARGS=() T_HEADER=() T_PID=()
        say "[$s] starting: ${SCENARIO_HELP[$s]:-}"
        "scenario_$s"
        measure "$s"
        ! declare -F "after_$s" >/dev/null || "after_$s"
        stop_procs "$mark"
    done

    local stamp results sluice_version git_rev
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$BENCH_DIR/results"
    results=$BENCH_DIR/results/$stamp.txt
    sluice_version=$("$SLUICE_BIN" version 2>/dev/null | head -n 1 | sed 's/^sluice //' || true)
    # The build type matters (-O2 vs -O3, asserts, sanitizers): say which.
    local cache
    cache=$(dirname "$SLUICE_BIN")/CMakeCache.txt
    if [[ -n "$sluice_version" && -f "$cache" ]]; then
        sluice_version+=" ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$cache")"
        grep -q '^SLUICE_SANITIZE:BOOL=ON' "$cache" && sluice_version+=", SANITIZERS ON: not a benchmark build"
        sluice_version+=")"
    fi
    git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]]; then
        git_rev+=" (dirty)"
    fi

    {
        printf 'sluice bench %s  scenarios: %s\n' "$stamp" "${scenarios[*]}"
        printf 'host: %s cores (%s), %s; load before run %s\n' "$ncpu" \
            "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(uname -sr)" "$load"
        printf 'versions: sluice %s, %s, %s; git %s\n' "${sluice_version:-n/a}" \
            "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
            "$(wrk --version 2>&1 | head -n 1 | awk '{ print "wrk " $2 }')" "$git_rev"
        printf 'wrk -t%s -c%s -d%ss --latency; warm-up %ss per target; alternating rounds: %s\n' \
            "$THREADS" "$CONNS" "$SECONDS_RUN" "$WARMUP" "$ROUNDS"
        printf 'cores: gateways %s, upstream %s, wrk %s\n\n' "$CPU_GATEWAY" "$CPU_UPSTREAM" "$CPU_WRK"
        printf 'cpu us/req: user+system CPU of the target server (its process and children) per request served, median of rounds;\n'
        printf 'cpu x: the reference'"'"'s CPU per request over the target'"'"'s (above 1: the target costs less), median of paired rounds\n\n'
        printf '%-10s %-11s %9s %7s %12s %12s %9s %9s %8s %7s %7s\n' \
            scenario target "cpu us/req" "cpu x" "req/s best" "req/s med" "p50 ms" "p99 ms" errors "x best" "x med"
        cat "$REPORT"
        printf '\n'
        printf '%s\n' "${RATIOS[@]}"
        if [[ -s $SYSCALLS_REPORT ]]; then
            printf '\nsystem calls per request (strace -c, all threads and children):\n'
            cat "$SYSCALLS_REPORT"
        fi
        if ((BUSY_RUNS > 0)); then
            printf 'warning: during %d run(s) other programs used the CPU (SUSPECT in runs below); rerun on a quiet machine\n' "$BUSY_RUNS"
        fi
        printf '\nruns:\n'
        cat "$DETAILS"
    } >"$results"

    if [[ -s $PERF_REPORT ]]; then
        cp "$PERF_REPORT" "${results%.txt}.perf.txt"
        say "bench: profiles written to ${results#"$ROOT"/}" | sed 's/\.txt$/.perf.txt/' >&2
    fi
    # stdout: everything but the per-run lines, which went to stderr as they came.
    printf '\n'
    sed '/^runs:$/,$d' "$results"
    say "bench: results written to ${results#"$ROOT"/}"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One compound command: bash has read all of it before main runs, so a
# benchmark in progress is not derailed when this file is edited under it.
{
    main "$@"
    exit
}

#!/usr/bin/env bash
# bench/run.sh — engaged's benchmark suite (`make bench`). Method and results: docs/benchmarks.md.
#
#   bench/run.sh [track] [batch] [memory] [restart]     (no argument: all four, in this order)
#
#   track    POST /v1/track, one ~300-byte Segment track event per request, 32 keep-alive
#            connections: events/s, p50/p99 — beside nginx answering `return 204` to the same wrk
#            script in the same run, and beside build/bench_ceiling (bench/ceiling.c), the least a
#            server that answers only once the body is synced can do (runs take turns).
#   batch    POST /v1/batch, 100 events per request, at 8 and 32 connections: durable events/s.
#   memory   load 1M events through /v1/batch, restart, read VmRSS/VmHWM; RSS per million events
#            and on-disk bytes per event.
#   restart  build a store of 10M events (`engaged import` of generated JSONL), then time
#            `engaged serve` start -> GET /healthz 200 (polled every 10 ms).
#   profiles the Customer 360 engine in process (build/bench_c360): identity resolution and
#            profile folding throughput, RSS per profile, lookup latency, at BENCH_PROFILES shoppers
#            with 10 events each; then over HTTP: a store of BENCH_LOOKUP_EVENTS generated events
#            (100,000 users) is imported, the server started (its replay timed) and
#            GET /v1/profiles/lookup driven by wrk at 32 connections. Not part of the default run.
#   reco     GET /v1/recommendations on product pages, with BENCH_RECO_USERS shoppers (3 views
#            each, a tenth with an order) and BENCH_RECO_PRODUCTS products loaded with
#            `engaged import`, at 32 connections — beside nginx serving one such answer as a
#            static file, runs alternating; then latency runs of both at BENCH_RECO_LAT_CONNS (8)
#            connections; then build/bench_reco times the same answers in process (CPU per
#            answer, no HTTP). Not part of the default run.
#   browser  what browsers send, beside /v1/batch in the same run: POST /v1/b (text/plain, the write
#            key in the body, an Origin header: engaged.js's batches) and POST /v1/t (one event,
#            text/plain, Basic auth, Origin: analytics.js), at BENCH_BROWSER_CONNECTIONS, batches of
#            BENCH_BROWSER_BATCH; and the size of /sdk/engaged.js on the wire, plain and gzipped.
#            Not part of the default run.
#
# Settings (environment):
#   BENCH_RUNS=3                measured repetitions of each track/batch measurement (medians reported)
#   BENCH_DURATION=10           seconds per wrk measurement;  BENCH_WARMUP=3  seconds of warm-up
#   BENCH_WRK_THREADS=2         wrk threads
#   BENCH_TRACK_CONNECTIONS=32  BENCH_BATCH_CONNECTIONS="8 32"  BENCH_BATCH_SIZE=100
#   BENCH_BROWSER_CONNECTIONS=32  BENCH_BROWSER_BATCH=20  (engaged.js sends at most 20 per request)
#   BENCH_MEMORY_EVENTS=1000000 BENCH_RESTART_EVENTS=10000000  BENCH_RESTART_RUNS=3
#   BENCH_STORE_CACHE=DIR       keep the generated restart store in DIR and reuse it next time (it is
#                               rebuilt when older than 20 h: older events leave the 24 h dedup window,
#                               which is what a restart loads). Unset: built in the temp dir, deleted.
#   BENCH_KEEP=1                keep the temp dir (logs, wrk output, data) for inspection
#   ENGAGED_BIN=build/engaged   the server binary;  BENCH_OUT=bench/out  where results-*.md go
#
# Everything listens on 127.0.0.1 only; every wrk run and wait loop is bounded; all processes this
# script starts are stopped by PID on exit, and the temp dir (mktemp -d under /tmp) is removed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${ENGAGED_BIN:-$ROOT/build/engaged}
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
TRACK_CONNS=${BENCH_TRACK_CONNECTIONS:-32}
BROWSER_CONNS=${BENCH_BROWSER_CONNECTIONS:-32}
BROWSER_BATCH=${BENCH_BROWSER_BATCH:-20}
BATCH_CONNS=${BENCH_BATCH_CONNECTIONS:-8 32}
BATCH_SIZE=${BENCH_BATCH_SIZE:-100}
MEM_EVENTS=${BENCH_MEMORY_EVENTS:-1000000}
RESTART_EVENTS=${BENCH_RESTART_EVENTS:-10000000}
RESTART_RUNS=${BENCH_RESTART_RUNS:-3}
PROFILES=${BENCH_PROFILES:-1000000}
LOOKUP_EVENTS=${BENCH_LOOKUP_EVENTS:-1000000}
RECO_USERS=${BENCH_RECO_USERS:-1000000}
RECO_PRODUCTS=${BENCH_RECO_PRODUCTS:-100000}
RECO_LAT_CONNS=${BENCH_RECO_LAT_CONNS:-8}
BENCH_C360=${BENCH_C360_BIN:-$(dirname "$BIN")/bench_c360}
BENCH_RECO=${BENCH_RECO_BIN:-$(dirname "$BIN")/bench_reco}
STORE_CACHE=${BENCH_STORE_CACHE:-}
OUT_DIR=${BENCH_OUT:-$HERE/out}
WRITE_KEY=wk_bench_$RANDOM$RANDOM
ADMIN_KEY=ak_bench_$RANDOM$RANDOM
READY_TIMEOUT_S=900 # a server start (restart of a big store) that takes longer is a failure

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(track batch memory restart)
for s in "${sections[@]}"; do
  case $s in track | batch | memory | restart | profiles | reco | browser) ;; *)
    echo "usage: $0 [track] [batch] [memory] [restart] [profiles] [reco] [browser]" >&2
    exit 2
    ;;
  esac
done
for tool in wrk awk du; do
  command -v $tool >/dev/null || { echo "bench: $tool is missing (scripts/deps.sh bench)" >&2; exit 2; }
done
[[ " ${sections[*]} " == *" track "* || " ${sections[*]} " == *" reco "* ]] && ! command -v nginx >/dev/null &&
  { echo "bench: nginx is missing (scripts/deps.sh bench)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench: no server binary at $BIN (ninja -C build)" >&2; exit 2; }
[ -n "${EPOCHREALTIME:-}" ] || { echo "bench: needs bash >= 5 (EPOCHREALTIME)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/engaged-bench.XXXXXX)
PIDS=() # every server this script started and has not stopped yet
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
forget_pid() { # $1 has exited: cleanup() leaves it alone
  local keep=() q
  for q in "${PIDS[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}
trap 'exit 130' INT TERM

# ---- small helpers -------------------------------------------------------------------------------

say() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); } # wall clock, ms (µs resolution)
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }
calc() { awk "BEGIN { printf \"%s\", $1 }"; } # calc 'sprintf("%.1f", 3/2)'
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "–" hi}'; }
del() { local s=$1; s=${s//,/}; echo "$s"; }
ticks_hz=$(getconf CLK_TCK)

# A port nothing listens on (the connect is refused).
free_port() {
  # Below the kernel's ephemeral range: a port in it may be the local end of a client's connection
  # (wrk's, curl's), which the probe below cannot see and which makes the server's bind() fail
  # (bench_ceiling did, once: "Address already in use").
  local p lo=10000 hi=32767 eph
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph=''
  [ -n "$eph" ] && [ "$eph" -gt $((lo + 1000)) ] && [ "$eph" -le $((hi + 1)) ] && hi=$((eph - 1))
  for _ in $(seq 200); do
    p=$((lo + RANDOM % (hi - lo + 1)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "bench: no free port found" >&2
  return 1
}

# http_get PORT PATH [BEARER] — the body of a GET (HTTP/1.0 over bash's /dev/tcp: no curl needed).
# Fails unless the status is 200.
http_get() {
  local port=$1 path=$2 auth=${3:-} status resp hdr=
  [ -n "$auth" ] && hdr="Authorization: Bearer $auth"$'\r\n'
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$path" "$hdr" >&3
  resp=$(timeout 10 cat <&3) || { exec 3<&-; return 1; }
  exec 3<&-
  status=${resp%%$'\r'*}
  [[ $status == "HTTP/1."?" 200 "* ]] || return 1
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}

# healthz_once PORT — 0 when GET /healthz answers 200.
healthz_once() {
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 2>/dev/null || { exec 3<&-; return 1; }
  local line=
  read -r -t 5 line <&3 || true
  exec 3<&-
  [[ $line == "HTTP/1."?" 200 "* ]]
}

# CPU time (ms) used so far by these processes, all threads (utime + stime).
cpu_ms() {
  local p sum=0 f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    read -r -a a <<<"$f"
    sum=$((sum + a[11] + a[12]))
  done
  echo $((sum * 1000 / ticks_hz))
}
# Machine-wide busy CPU time (ms) from /proc/stat (everything but idle and iowait).
machine_busy_ms() {
  local user nice sys irq sirq steal
  read -r _ user nice sys _ _ irq sirq steal _ </proc/stat
  echo $(((user + nice + sys + irq + sirq + steal) * 1000 / ticks_hz))
}

proc_status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # kB

# ---- engaged -------------------------------------------------------------------------------------

ENG_PID='' ENG_PORT='' ENG_LOG='' ENG_READY_MS='' ENG_START_CPU_S='' ENG_START_OTHER=''
# start_engaged DATA_DIR LOG — starts the server, waits for /healthz (polled every 10 ms) and sets
# ENG_PID, ENG_PORT, ENG_READY_MS (from the fork to the first 200), ENG_START_CPU_S (CPU seconds the
# server used to get there) and ENG_START_OTHER (cores the rest of the machine used meanwhile).
start_engaged() {
  local data=$1 t0 deadline m0
  ENG_LOG=$2
  ENG_PORT=$(free_port)
  m0=$(machine_busy_ms)
  t0=$(now_ms)
  ENGAGED_WRITE_KEY=$WRITE_KEY ENGAGED_ADMIN_KEY=$ADMIN_KEY ENGAGED_ACCESS_LOG=off \
    "$BIN" serve --listen "127.0.0.1:$ENG_PORT" --data "$data" >>"$ENG_LOG" 2>&1 &
  ENG_PID=$!
  PIDS+=("$ENG_PID")
  deadline=$((t0 + READY_TIMEOUT_S * 1000))
  until healthz_once "$ENG_PORT"; do
    if ! kill -0 "$ENG_PID" 2>/dev/null; then
      echo "bench: engaged exited before it was ready; its log:" >&2
      tail -20 "$ENG_LOG" >&2
      return 1
    fi
    if [ "$(now_ms)" -gt "$deadline" ]; then
      echo "bench: engaged not ready after ${READY_TIMEOUT_S}s" >&2
      return 1
    fi
    sleep 0.01
  done
  ENG_READY_MS=$(($(now_ms) - t0))
  local c
  c=$(cpu_ms "$ENG_PID")
  ENG_START_CPU_S=$(calc "sprintf(\"%.1f\", $c / 1000)")
  ENG_START_OTHER=$(calc "sprintf(\"%.2f\", ($(machine_busy_ms) - $m0 - $c) / ($ENG_READY_MS > 0 ? $ENG_READY_MS : 1))")
}

# stop_engaged — SIGTERM, wait for the exit (bounded); sets ENG_STOP_MS and ENG_EXIT.
ENG_STOP_MS='' ENG_EXIT=''
stop_engaged() {
  local t0 p=$ENG_PID
  t0=$(now_ms)
  kill -TERM "$p"
  for _ in $(seq 1200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$p" 2>/dev/null; then
    echo "bench: engaged (pid $p) did not stop within 60 s of SIGTERM; killing it" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  ENG_EXIT=0
  wait "$p" 2>/dev/null || ENG_EXIT=$?
  ENG_STOP_MS=$(($(now_ms) - t0))
  forget_pid "$p"
  [ "$ENG_EXIT" = 0 ] || echo "bench: engaged exited with status $ENG_EXIT (log: $ENG_LOG)" >&2
}

# metric NAME [LABELS] — a value from GET /metrics of the running engaged (0 when absent).
METRICS=
fetch_metrics() { METRICS=$(http_get "$ENG_PORT" /metrics "$ADMIN_KEY") || METRICS=; }
metric() {
  local v
  v=$(printf '%s\n' "$METRICS" | awk -v k="$1${2:+\{$2\}}" '$1 == k {print $2; exit}')
  echo "${v:-0}"
}
# Sum of engaged_http_requests_total for a route, by status class: prints "ok non2xx other".
route_statuses() {
  printf '%s\n' "$METRICS" | awk -v r="route=\"$1\"" '
    /^engaged_http_requests_total\{/ && index($0, r) {
      s = $1; sub(/.*status="/, "", s); sub(/".*/, "", s)
      if (s ~ /^2/) ok += $2; else if (s == "unanswered" || s == "other") other += $2; else bad += $2 }
    END { printf "%d %d %d\n", ok, bad, other }'
}
errors_in_log() { grep -cE '"level":"(error|fatal)"' "$1" 2>/dev/null || true; }

# ---- nginx ---------------------------------------------------------------------------------------

NGX_PID='' NGX_PORT='' NGX_DIR=''
# start_nginx [LOCATIONS] — nginx with the given location blocks (default: every request 204).
start_nginx() {
  local locations=${1:-'location / { return 204; }'}
  NGX_DIR=$TMP/nginx
  mkdir -p "$NGX_DIR"
  NGX_PORT=$(free_port)
  local temps="" m v
  v=$(nginx -V 2>&1)
  for m in client_body proxy fastcgi uwsgi scgi; do
    [[ $m != client_body && $v == *"--without-http_${m}_module"* ]] && continue
    temps+="  ${m}_temp_path $NGX_DIR/${m}_temp;"$'\n'
  done
  cat >"$NGX_DIR/nginx.conf" <<EOF
# written by bench/run.sh: the baseline, a server that does no work but HTTP
worker_processes 2;
daemon off;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
$temps
  server {
    listen 127.0.0.1:$NGX_PORT;
    $locations
  }
}
EOF
  nginx -e "$NGX_DIR/error.log" -c "$NGX_DIR/nginx.conf" -p "$NGX_DIR" >"$NGX_DIR/stdout.log" 2>&1 &
  NGX_PID=$!
  PIDS+=("$NGX_PID")
  local i
  for i in $(seq 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NGX_PORT") 2>/dev/null && return 0
    kill -0 "$NGX_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "bench: nginx did not start:" >&2
  cat "$NGX_DIR/error.log" "$NGX_DIR/stdout.log" >&2 2>/dev/null || true
  return 1
}
# The master and its workers (their parent is the master).
nginx_pids() {
  local f p ppid
  echo -n "$NGX_PID"
  for f in /proc/[0-9]*/stat; do
    p=$(cat "$f" 2>/dev/null) || continue
    read -r _ ppid _ <<<"${p##*) }"
    [ "$ppid" = "$NGX_PID" ] && echo -n " $(basename "$(dirname "$f")")"
  done
  echo
}
stop_nginx() {
  kill -TERM "$NGX_PID" 2>/dev/null || true # fast shutdown
  for _ in $(seq 200); do kill -0 "$NGX_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$NGX_PID" 2>/dev/null || true
  wait "$NGX_PID" 2>/dev/null || true
  forget_pid "$NGX_PID"
}

# ---- the ceiling ---------------------------------------------------------------------------------

# bench_ceiling (bench/ceiling.c): the least a server that answers only once a request is on disk
# can do, on this machine and disk. Built beside engaged; the track section runs it when present.
CEIL_BIN=$(dirname "$BIN")/bench_ceiling
CEIL_PID='' CEIL_PORT=''
start_ceiling() {
  CEIL_PORT=$(free_port)
  mkdir -p "$TMP/ceiling"
  "$CEIL_BIN" "$CEIL_PORT" "$TMP/ceiling" >"$TMP/ceiling.log" 2>&1 &
  CEIL_PID=$!
  PIDS+=("$CEIL_PID")
  local i
  for i in $(seq 3000); do # it zero-fills 256 MiB first
    (exec 3<>"/dev/tcp/127.0.0.1/$CEIL_PORT") 2>/dev/null && return 0
    kill -0 "$CEIL_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "bench: bench_ceiling did not start:" >&2
  cat "$TMP/ceiling.log" >&2
  return 1
}
stop_ceiling() {
  kill -TERM "$CEIL_PID" 2>/dev/null || true
  wait "$CEIL_PID" 2>/dev/null || true
  forget_pid "$CEIL_PID"
}

# ---- wrk -----------------------------------------------------------------------------------------

# run_wrk NAME CONNS DURATION_S SCRIPT PORT ARGS... — runs wrk, measuring the CPU of the server
# processes in SRV_PIDS, of wrk itself, and of the whole machine. Sets W[...] from the BENCH line of
# report.lua plus: rps, load (1-min load average at the start), srv_cores, wrk_cores, other_cores
# (what the rest of the machine used: the noise).
declare -A W
SRV_PIDS=()
run_wrk() {
  local name=$1 conns=$2 dur=$3 script=$4 port=$5
  shift 5
  local out=$TMP/wrk-$name.txt s0 s1 m0 m1 t0 t1 line kv wrk_cpu
  W=()
  W[load]=$(load1)
  s0=$(cpu_ms "${SRV_PIDS[@]}")
  m0=$(machine_busy_ms)
  t0=$(now_ms)
  local TIMEFORMAT='%U %S'
  { time timeout $((dur + 60)) wrk -t"$WRK_THREADS" -c"$conns" -d"${dur}s" --timeout 10s \
    -s "$HERE/$script" "http://127.0.0.1:$port" -- "$@" >"$out" 2>&1; } 2>"$out.time" ||
    { echo "bench: wrk failed ($name):" >&2; cat "$out" >&2; return 1; }
  t1=$(now_ms)
  s1=$(cpu_ms "${SRV_PIDS[@]}")
  m1=$(machine_busy_ms)
  line=$(grep '^BENCH ' "$out") || { echo "bench: no result from wrk ($name):" >&2; cat "$out" >&2; return 1; }
  for kv in ${line#BENCH }; do W[${kv%%=*}]=${kv#*=}; done
  wrk_cpu=$(awk '{printf "%d", ($1 + $2) * 1000}' "$out.time")
  W[wall_ms]=$((t1 - t0))
  W[rps]=$(calc "sprintf(\"%.1f\", ${W[requests]} / (${W[duration_us]} / 1e6))")
  W[srv_cores]=$(calc "sprintf(\"%.2f\", ($s1 - $s0) / ${W[wall_ms]})")
  W[wrk_cores]=$(calc "sprintf(\"%.2f\", $wrk_cpu / ${W[wall_ms]})")
  W[other_cores]=$(calc "sprintf(\"%.2f\", ($m1 - $m0 - ($s1 - $s0) - $wrk_cpu) / ${W[wall_ms]})")
  W[errors]=$((${W[err_connect]} + ${W[err_read]} + ${W[err_write]} + ${W[err_timeout]}))
  [ "${W[errors]}" = 0 ] || say "  wrk $name: socket errors: connect ${W[err_connect]} read ${W[err_read]} write ${W[err_write]} timeout ${W[err_timeout]}"
  [ "${W[err_status]}" = 0 ] || say "  wrk $name: ${W[err_status]} non-2xx answers"
}
us2ms() { calc "sprintf(\"%.2f\", $1 / 1000)"; }

# load_events N CONNS PER_THREAD RUNID — sends N events to the running engaged through /v1/batch with
# wrk (each wrk thread stops after PER_THREAD answered batches), polling /metrics every 0.2 s until
# the server has stored N. wrk's main thread sleeps for the whole -d, so it is stopped with SIGINT
# (its own handler) once the events are in. Sets LOAD_MS (start to N stored), LOAD_STORED, LOAD_BAD
# (non-2xx answers), LOAD_SRV_CORES and LOAD_REST_CORES.
LOAD_MS='' LOAD_STORED='' LOAD_BAD='' LOAD_SRV_CORES='' LOAD_REST_CORES=''
load_events() {
  local n=$1 conns=$2 per_thread=$3 run=$4 out=$TMP/wrk-load-$4.txt t0 s0 m0 wpid acc=0 limit_ms
  limit_ms=$((3600 * 1000))
  s0=$(cpu_ms "$ENG_PID") m0=$(machine_busy_ms) t0=$(now_ms)
  wrk -t"$WRK_THREADS" -c"$conns" -d3600s --timeout 30s -s "$HERE/batch.lua" \
    "http://127.0.0.1:$ENG_PORT" -- "$run" "$WRITE_KEY" /v1/batch "$BATCH_SIZE" "$per_thread" >"$out" 2>&1 &
  wpid=$!
  PIDS+=("$wpid")
  while :; do
    sleep 0.2
    fetch_metrics
    acc=$(metric engaged_events_accepted_total)
    [ "$acc" -ge "$n" ] && break
    if ! kill -0 "$wpid" 2>/dev/null; then
      problem "memory load: wrk ended with only $acc events stored: $(tail -3 "$out" | tr '\n' ' ')"
      break
    fi
    if [ $(($(now_ms) - t0)) -gt "$limit_ms" ]; then
      problem "memory load: only $acc of $n events stored after $((limit_ms / 1000)) s; stopping"
      break
    fi
  done
  LOAD_MS=$(($(now_ms) - t0))
  LOAD_SRV_CORES=$(calc "sprintf(\"%.2f\", ($(cpu_ms "$ENG_PID") - $s0) / $LOAD_MS)")
  LOAD_REST_CORES=$(calc "sprintf(\"%.2f\", ($(machine_busy_ms) - $m0 - ($(cpu_ms "$ENG_PID") - $s0)) / $LOAD_MS)")
  kill -INT "$wpid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  forget_pid "$wpid"
  # Batches in flight when wrk stopped are still stored: wait until the count holds for 1 s (bounded).
  local prev=-1
  for _ in $(seq 30); do
    fetch_metrics
    LOAD_STORED=$(metric engaged_events_accepted_total)
    [ "$LOAD_STORED" = "$prev" ] && break
    prev=$LOAD_STORED
    sleep 1
  done
  read -r _ LOAD_BAD _ <<<"$(route_statuses /v1/batch)"
}

# ---- results -------------------------------------------------------------------------------------

STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
RESULT=$OUT_DIR/results-$STAMP.md
SUMMARY=() # rows of the summary table
MEM_POINT="" # "events rss_kB" from the memory section, for the marginal cost at the restart store
PROBLEMS=()
emit() { printf '%s\n' "$*" | tee -a "$RESULT"; }
problem() { PROBLEMS+=("$*"); say "PROBLEM: $*"; }

# What one small synchronous write costs on the temp dir's disk (what every group commit pays at least).
fsync_probe() {
  local t0 t1
  t0=$(now_ms)
  dd if=/dev/zero of="$TMP/dsync.probe" bs=4k count=100 oflag=dsync 2>/dev/null || { echo "dd failed"; return; }
  t1=$(now_ms)
  rm -f "$TMP/dsync.probe"
  echo "$(calc "sprintf(\"%.2f\", ($t1 - $t0) / 100)") ms per 4 KiB O_DSYNC write (dd, 100 writes)"
}

machine_info() {
  local cpu fs
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  fs=$(df -PT "$TMP" | awk 'NR == 2 {print $2 " on " $1}')
  emit "# engaged benchmark results, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  emit ""
  emit "- machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  emit "- temp dir: $TMP ($fs)"
  emit "- engaged: $("$BIN" version 2>&1 | head -1), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(nginx -v 2>&1 | sed 's/.*: //')"
  local bt=""
  command -v meson >/dev/null && bt=$(meson introspect "$(dirname "$BIN")" --buildoptions 2>/dev/null |
    grep -o '"name": "buildtype", "value": "[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"') || true
  emit "- build: ${bt:-unknown buildtype} ($BIN)"
  emit "- settings: runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s wrk threads=$WRK_THREADS; sections: ${sections[*]}"
  emit "- disk sync cost: $(fsync_probe)"
  emit "- load average at start: $(loadavg)"
  emit ""
  emit "Column notes: *load* is the 1-minute load average when the measurement started; it counts this benchmark's own server and wrk too (about 2 while they run), so it says little on its own. *srv / wrk / other cores* are the CPU cores the server, wrk and everything else on the machine used on average during the measurement: *other* is the noise from jobs that are not part of the benchmark (2 cores in all on this machine). *per server CPU-s* divides the rate by the server's CPU time, which depends far less on that noise."
  emit ""
}

# ---- track ---------------------------------------------------------------------------------------

bench_track() {
  local servers="engaged nginx" ceiling=0
  [ -x "$CEIL_BIN" ] && servers="engaged nginx ceiling" ceiling=1
  say "track: POST /v1/track, $TRACK_CONNS connections, $RUNS x ${DURATION}s each for ${servers// /, }"
  local data=$TMP/track-data
  start_engaged "$data" "$TMP/engaged-track.log"
  start_nginx
  ((ceiling)) && start_ceiling
  local i who order e_rps=() n_rps=() e_p50=() e_p99=() n_p50=() n_p99=() ratios=() e_cpu=() n_cpu=() loads=()
  local e_eff=() n_eff=() others=() bad=0 acc0 acc1 dup0 dup1 sent=0 st_ok st_bad st_other
  local c_rps=() c_p50=() c_p99=() c_eff=() c_ratios=()
  emit "## 1. Single-event POST /v1/track, $TRACK_CONNS keep-alive connections (engaged vs nginx \`return 204\`)"
  emit ""
  emit "| run | server | req/s | p50 ms | p99 ms | max ms | non-2xx | sock err | srv cores | req per srv CPU-s | wrk cores | other cores | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  say "track: warm-up ${WARMUP}s each"
  SRV_PIDS=("$ENG_PID")
  run_wrk track-warm-e "$TRACK_CONNS" "$WARMUP" track.lua "$ENG_PORT" "w$STAMP" "$WRITE_KEY" /v1/track
  read -r -a SRV_PIDS <<<"$(nginx_pids)"
  run_wrk track-warm-n "$TRACK_CONNS" "$WARMUP" track.lua "$NGX_PORT" "w$STAMP" "$WRITE_KEY" /v1/track
  if ((ceiling)); then
    SRV_PIDS=("$CEIL_PID")
    run_wrk track-warm-c "$TRACK_CONNS" "$WARMUP" track.lua "$CEIL_PORT" "w$STAMP" "$WRITE_KEY" /v1/track
  fi
  fetch_metrics
  acc0=$(metric engaged_events_accepted_total) dup0=$(metric engaged_events_duplicate_total)
  local -a rota
  read -r -a rota <<<"$servers"
  for i in $(seq "$RUNS"); do
    # Each run starts with the next server in turn, so none always follows the same one.
    order="${rota[*]:$(((i - 1) % ${#rota[@]}))} ${rota[*]:0:$(((i - 1) % ${#rota[@]}))}"
    for who in $order; do
      if [ "$who" = engaged ]; then
        SRV_PIDS=("$ENG_PID")
        run_wrk "track-e$i" "$TRACK_CONNS" "$DURATION" track.lua "$ENG_PORT" "t$STAMP$i" "$WRITE_KEY" /v1/track
        e_rps+=("${W[rps]}") e_p50+=("$(us2ms "${W[p50_us]}")") e_p99+=("$(us2ms "${W[p99_us]}")")
        e_cpu+=("${W[srv_cores]}")
        e_eff+=("$(calc "sprintf(\"%.0f\", ${W[rps]} / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))")")
        sent=$((sent + ${W[requests]}))
        bad=$((bad + ${W[err_status]}))
      elif [ "$who" = ceiling ]; then
        SRV_PIDS=("$CEIL_PID")
        run_wrk "track-c$i" "$TRACK_CONNS" "$DURATION" track.lua "$CEIL_PORT" "t$STAMP$i" "$WRITE_KEY" /v1/track
        c_rps+=("${W[rps]}") c_p50+=("$(us2ms "${W[p50_us]}")") c_p99+=("$(us2ms "${W[p99_us]}")")
        c_eff+=("$(calc "sprintf(\"%.0f\", ${W[rps]} / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))")")
        bad=$((bad + ${W[err_status]}))
      else
        read -r -a SRV_PIDS <<<"$(nginx_pids)"
        run_wrk "track-n$i" "$TRACK_CONNS" "$DURATION" track.lua "$NGX_PORT" "t$STAMP$i" "$WRITE_KEY" /v1/track
        n_rps+=("${W[rps]}") n_p50+=("$(us2ms "${W[p50_us]}")") n_p99+=("$(us2ms "${W[p99_us]}")")
        n_cpu+=("${W[srv_cores]}")
        n_eff+=("$(calc "sprintf(\"%.0f\", ${W[rps]} / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))")")
      fi
      loads+=("${W[load]}") others+=("${W[other_cores]}")
      emit "| $i | $who | ${W[rps]} | $(us2ms "${W[p50_us]}") | $(us2ms "${W[p99_us]}") | $(us2ms "${W[max_us]}") | ${W[err_status]} | ${W[errors]} | ${W[srv_cores]} | $(calc "sprintf(\"%.0f\", ${W[rps]} / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))") | ${W[wrk_cores]} | ${W[other_cores]} | ${W[load]} |"
      say "  run $i $who: ${W[rps]} req/s, p50 $(us2ms "${W[p50_us]}") ms, p99 $(us2ms "${W[p99_us]}") ms (load ${W[load]}, other jobs ${W[other_cores]} cores)"
    done
    ratios+=("$(calc "sprintf(\"%.3f\", ${e_rps[-1]} / ${n_rps[-1]})")")
    ((ceiling)) && c_ratios+=("$(calc "sprintf(\"%.3f\", ${c_rps[-1]} / ${n_rps[-1]})")")
  done
  fetch_metrics
  acc1=$(metric engaged_events_accepted_total) dup1=$(metric engaged_events_duplicate_total)
  read -r st_ok st_bad st_other <<<"$(route_statuses /v1/track)"
  stop_nginx
  ((ceiling)) && stop_ceiling
  stop_engaged
  local me mn ratio p99 verdict
  me=$(median "${e_rps[@]}") mn=$(median "${n_rps[@]}")
  ratio=$(calc "sprintf(\"%.3f\", $me / $mn)")
  p99=$(median "${e_p99[@]}")
  emit ""
  emit "Medians over $RUNS runs: engaged **$me events/s** (p50 $(median "${e_p50[@]}") ms, p99 **$p99 ms**, $(median "${e_eff[@]}") req per server CPU-second, server used $(median "${e_cpu[@]}") cores); nginx **$mn req/s** (p50 $(median "${n_p50[@]}") ms, p99 $(median "${n_p99[@]}") ms, $(median "${n_eff[@]}") req per server CPU-second, $(median "${n_cpu[@]}") cores)."
  emit "Ratio of medians engaged/nginx: **$ratio** (per-run pairs: ${ratios[*]}). Load average during the runs: $(minmax "${loads[@]}")."
  local mc=''
  if ((ceiling)); then
    mc=$(median "${c_rps[@]}")
    emit "The ceiling (\`bench/ceiling.c\`: read the request, one pwrite and one fdatasync per group, answer; nothing else): **$mc req/s** (p50 $(median "${c_p50[@]}") ms, p99 $(median "${c_p99[@]}") ms, $(median "${c_eff[@]}") req per server CPU-second) = **$(calc "sprintf(\"%.3f\", $mc / $mn)") × nginx** (per run: ${c_ratios[*]}); engaged reaches **$(calc "sprintf(\"%.3f\", $me / $mc)") ×** the ceiling."
  fi
  emit "Server-side check: engaged stored $((acc1 - acc0)) events during the measured runs, wrk got $sent answers ($((acc1 - acc0 - sent)) more stored than answered: requests in flight when wrk stopped), $((dup1 - dup0)) counted as duplicates; /v1/track status counts since start: 2xx $st_ok, non-2xx $st_bad, unanswered (client gone) $st_other; error lines in the server log: $(errors_in_log "$TMP/engaged-track.log")."
  emit ""
  [ "$bad" = 0 ] || problem "track: $bad non-2xx answers from engaged"
  [ "$((dup1 - dup0))" = 0 ] || problem "track: $((dup1 - dup0)) events counted as duplicates (messageIds should be unique)"
  [ "$st_bad" = 0 ] || problem "track: engaged counted $st_bad non-2xx answers on /v1/track"
  [ "$ENG_EXIT" = 0 ] || problem "track: engaged exited with status $ENG_EXIT on SIGTERM"
  verdict=$(calc "($ratio >= 0.6 ? \"met\" : \"NOT met\")")
  SUMMARY+=("| track events/s vs nginx \`return 204\` ($TRACK_CONNS conns) | ≥ 0.6 × nginx | $me vs $mn req/s = **${ratio} ×** | $verdict | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  local ee ne
  ee=$(median "${e_eff[@]}") ne=$(median "${n_eff[@]}")
  ((ceiling)) && SUMMARY+=("| track: the ceiling of a durable answer on this machine (\`bench/ceiling.c\`) | — | $mc req/s = **$(calc "sprintf(\"%.3f\", $mc / $mn)") ×** nginx; engaged **$(calc "sprintf(\"%.3f\", $me / $mc)") ×** the ceiling | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  SUMMARY+=("| track, requests per server CPU-second (load-independent view) | — | engaged $ee vs nginx $ne = **$(calc "sprintf(\"%.3f\", $ee / $ne)") ×** | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  verdict=$(calc "($p99 <= 5 ? \"met\" : \"NOT met\")")
  SUMMARY+=("| track p99 latency ($TRACK_CONNS conns) | ≤ 5 ms | **$p99 ms** (p50 $(median "${e_p50[@]}") ms) | $verdict | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
}

# ---- batch ---------------------------------------------------------------------------------------

bench_batch() {
  say "batch: POST /v1/batch x $BATCH_SIZE events at ${BATCH_CONNS// /, } connections, $RUNS x ${DURATION}s each"
  start_engaged "$TMP/batch-data" "$TMP/engaged-batch.log"
  SRV_PIDS=("$ENG_PID")
  emit "## 2. POST /v1/batch, $BATCH_SIZE events per request: durable events/s"
  emit ""
  emit "A 200 from /v1/batch means every event in it is on disk (fsync'd), so events/s = answered requests × $BATCH_SIZE / s; the server's own engaged_events_accepted_total is the cross-check."
  emit ""
  emit "| run | conns | events/s (answered) | events/s (server-counted) | batch p50 ms | p99 ms | non-2xx | sock err | events per commit | srv cores | events per srv CPU-s | wrk cores | other cores | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  local c i a0 a1 c0 c1 d0 d1 evs srv_evs
  declare -A res_evs res_p99 res_p50 res_eff res_load res_other
  say "batch: warm-up ${WARMUP}s"
  run_wrk batch-warm 8 "$WARMUP" batch.lua "$ENG_PORT" "bw$STAMP" "$WRITE_KEY" /v1/batch "$BATCH_SIZE"
  for i in $(seq "$RUNS"); do
    for c in $BATCH_CONNS; do
      fetch_metrics
      a0=$(metric engaged_events_accepted_total) c0=$(metric engaged_commits_total) d0=$(metric engaged_events_duplicate_total)
      run_wrk "batch-c$c-$i" "$c" "$DURATION" batch.lua "$ENG_PORT" "b$STAMP$i$c" "$WRITE_KEY" /v1/batch "$BATCH_SIZE"
      fetch_metrics
      a1=$(metric engaged_events_accepted_total) c1=$(metric engaged_commits_total) d1=$(metric engaged_events_duplicate_total)
      evs=$(calc "sprintf(\"%.0f\", (${W[requests]} - ${W[err_status]}) * $BATCH_SIZE / (${W[duration_us]} / 1e6))")
      srv_evs=$(calc "sprintf(\"%.0f\", ($a1 - $a0) / (${W[duration_us]} / 1e6))")
      local epc eff
      epc=$(calc "sprintf(\"%.0f\", ($c1 > $c0) ? ($a1 - $a0) / ($c1 - $c0) : 0)")
      eff=$(calc "sprintf(\"%.0f\", $evs / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))")
      res_evs[$c]+="$evs " res_p50[$c]+="$(us2ms "${W[p50_us]}") " res_p99[$c]+="$(us2ms "${W[p99_us]}") "
      res_eff[$c]+="$eff " res_load[$c]+="${W[load]} " res_other[$c]+="${W[other_cores]} "
      emit "| $i | $c | $evs | $srv_evs | $(us2ms "${W[p50_us]}") | $(us2ms "${W[p99_us]}") | ${W[err_status]} | ${W[errors]} | $epc | ${W[srv_cores]} | $eff | ${W[wrk_cores]} | ${W[other_cores]} | ${W[load]} |"
      say "  run $i, $c conns: $evs events/s answered, $srv_evs stored/s, batch p99 $(us2ms "${W[p99_us]}") ms (load ${W[load]}, other jobs ${W[other_cores]} cores)"
      [ "${W[err_status]}" = 0 ] || problem "batch ($c conns, run $i): ${W[err_status]} non-2xx answers"
      [ "$((d1 - d0))" = 0 ] || problem "batch ($c conns, run $i): $((d1 - d0)) events counted as duplicates (messageIds should be unique)"
    done
  done
  fetch_metrics
  local st_ok st_bad st_other
  read -r st_ok st_bad st_other <<<"$(route_statuses /v1/batch)"
  local du_b stored
  stored=$(metric engaged_events_accepted_total)
  stop_engaged
  du_b=$(du -sb "$TMP/batch-data" | cut -f1)
  emit ""
  for c in $BATCH_CONNS; do
    # shellcheck disable=SC2086
    local m p50 p99 eff lr verdict
    m=$(median ${res_evs[$c]}) p50=$(median ${res_p50[$c]}) p99=$(median ${res_p99[$c]}) eff=$(median ${res_eff[$c]}) lr=$(minmax ${res_load[$c]})
    emit "- $c connections: median **$m durable events/s** (batch latency p50 $p50 ms, p99 $p99 ms; $eff events per server CPU-second; load $lr)"
    verdict=$(calc "($m >= 300000 ? \"met\" : \"NOT met\")")
    SUMMARY+=("| batch of $BATCH_SIZE, durable events/s ($c conns) | ≥ 300,000 | **$m** ($(calc "sprintf(\"%.3f\", $m / 300000)") × target; $eff per server CPU-s) | $verdict | $lr | $(minmax ${res_other[$c]}) |")
  done
  emit "- server-side: /v1/batch 2xx $st_ok, non-2xx $st_bad, unanswered (client gone at the end of a run) $st_other; $stored events stored, $du_b bytes on disk ($(calc "sprintf(\"%.0f\", $du_b / ($stored > 0 ? $stored : 1))") B/event); error lines in the server log: $(errors_in_log "$TMP/engaged-batch.log")."
  emit ""
  [ "$st_bad" = 0 ] || problem "batch: engaged counted $st_bad non-2xx answers on /v1/batch"
  [ "$ENG_EXIT" = 0 ] || problem "batch: engaged exited with status $ENG_EXIT on SIGTERM"
}

# ---- memory --------------------------------------------------------------------------------------

bench_memory() {
  local data=$TMP/memory-data log=$TMP/engaged-memory.log
  say "memory: load $MEM_EVENTS events through /v1/batch, then restart $RESTART_RUNS times and read VmRSS/VmHWM"
  start_engaged "$data" "$log"
  local rss0 hwm0 conns=8 per_thread t0 t1 stored rss1 hwm1 du_live du_stop
  rss0=$(proc_status "$ENG_PID" VmRSS) hwm0=$(proc_status "$ENG_PID" VmHWM)
  per_thread=$(((MEM_EVENTS + BATCH_SIZE * WRK_THREADS - 1) / (BATCH_SIZE * WRK_THREADS)))
  local load_start load_rate load_secs
  load_start=$(loadavg)
  load_events "$MEM_EVENTS" "$conns" "$per_thread" "m$STAMP"
  load_secs=$(calc "sprintf(\"%.1f\", $LOAD_MS / 1000)")
  stored=$LOAD_STORED
  load_rate=$(calc "sprintf(\"%.0f\", $stored / ($load_secs > 0 ? $load_secs : 1))")
  rss1=$(proc_status "$ENG_PID" VmRSS) hwm1=$(proc_status "$ENG_PID" VmHWM)
  du_live=$(du -sb "$data" | cut -f1)
  stop_engaged
  local first_stop=$ENG_STOP_MS
  du_stop=$(du -sb "$data" | cut -f1)
  [ "$LOAD_BAD" = 0 ] || problem "memory load: $LOAD_BAD non-2xx answers from /v1/batch"
  emit "## 3. Memory per million stored events"
  emit ""
  emit "Loaded $stored events through POST /v1/batch ($BATCH_SIZE per request, $conns connections) in $load_secs s = $load_rate events/s sustained (load average $load_start at the start; the server used $LOAD_SRV_CORES cores, everything else on the machine but the server $LOAD_REST_CORES cores, wrk included)."
  emit "Empty server after start: VmRSS $rss0 kB, VmHWM $hwm0 kB. After the load, before restart: VmRSS $rss1 kB, VmHWM $hwm1 kB. SIGTERM to exit: $first_stop ms."
  emit ""
  emit "| restart | ready ms | server CPU s to ready | other cores | VmRSS kB | VmHWM kB | dedup ids loaded | index load ms (server log) | stop ms | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|"
  local i rss=() hwm=() ready=() l ids ms loads=() others=()
  for i in $(seq "$RESTART_RUNS"); do
    l=$(load1)
    : >"$log.restart"
    start_engaged "$data" "$log.restart"
    local r h
    r=$(proc_status "$ENG_PID" VmRSS) h=$(proc_status "$ENG_PID" VmHWM)
    stop_engaged
    cat "$log.restart" >>"$log"
    ids=$(grep -o '[0-9]* message ids in the dedup window' "$log.restart" | awk '{print $1}' || true)
    ms=$(grep -o 'loaded in [0-9]* ms' "$log.restart" | awk '{print $3}' || true)
    rss+=("$r") hwm+=("$h") ready+=("$ENG_READY_MS") loads+=("$l") others+=("$ENG_START_OTHER")
    emit "| $i | $ENG_READY_MS | $ENG_START_CPU_S | $ENG_START_OTHER | $r | $h | ${ids:-?} | ${ms:-?} | $ENG_STOP_MS | $l |"
    say "  restart $i: ready in $ENG_READY_MS ms, VmRSS $r kB, VmHWM $h kB"
  done
  local mr mh per_m per_m_hwm bpe bpe_stop
  mr=$(median "${rss[@]}") mh=$(median "${hwm[@]}")
  per_m=$(calc "sprintf(\"%.1f\", ($mr - $rss0) / 1024 / ($stored / 1e6))")
  per_m_hwm=$(calc "sprintf(\"%.1f\", ($mh - $hwm0) / 1024 / ($stored / 1e6))")
  bpe=$(calc "sprintf(\"%.0f\", $du_live / $stored)")
  bpe_stop=$(calc "sprintf(\"%.0f\", $du_stop / $stored)")
  emit ""
  emit "- RSS after a restart that loaded the store: median **$mr kB** (VmHWM $mh kB); minus the empty server's $rss0 kB: **$per_m MiB per million events** (VmHWM: $per_m_hwm MiB per million). Restart time at $stored events: median $(median "${ready[@]}") ms."
  emit "- on disk: $du_live bytes while running (**$bpe B/event**), $du_stop bytes after a clean stop ($bpe_stop B/event)."
  emit "- error lines in the server log: $(errors_in_log "$log")."
  emit ""
  MEM_POINT="$stored $mr"
  SUMMARY+=("| memory: RSS per million stored events (after restart) | — | **$per_m MiB**/M (RSS $mr kB at $stored events; HWM $per_m_hwm MiB/M) | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  SUMMARY+=("| on-disk bytes per event | — | **$bpe B** ($bpe_stop B after clean stop) | measured | ${load_start%% *} | — |")
  SUMMARY+=("| restart time at $stored events | — | **$(median "${ready[@]}") ms** | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
}

# ---- restart -------------------------------------------------------------------------------------

bench_restart() {
  local n=$RESTART_EVENTS data stamp built build_s="" imp_line="" load_b
  if [ -n "$STORE_CACHE" ]; then
    data=$STORE_CACHE/restart-$n
    stamp=$data/.bench-built
    if [ -f "$stamp" ] && [ $(($(date +%s) - $(stat -c %Y "$stamp"))) -gt $((20 * 3600)) ]; then
      say "restart: cached store $data is older than 20 h (its events leave the dedup window): rebuilding"
      rm -rf "$data"
    fi
  else
    data=$TMP/restart-data
    stamp=$data/.bench-built
  fi
  if [ -f "$stamp" ]; then
    built="reused from $data, $(cat "$stamp")"
    say "restart: reusing the store in $data"
  else
    rm -rf "$data"
    mkdir -p "$data"
    # ~536 B/event on disk, plus the zero-filled segment ahead and headroom: ask for 700 B/event.
    local need_kb avail_kb
    need_kb=$((n * 700 / 1024))
    avail_kb=$(df -Pk "$data" | awk 'NR == 2 {print $4}')
    if [ "$avail_kb" -lt "$need_kb" ]; then
      problem "restart: a store of $n events needs about $((need_kb / 1024)) MiB free in $data; only $((avail_kb / 1024)) MiB are (set BENCH_RESTART_EVENTS lower)"
      rm -rf "$data"
      return 0
    fi
    load_b=$(loadavg)
    say "restart: building a store of $n events: awk generator | engaged import (this takes a while; progress in $TMP/import.log)"
    local t0 t1 rc=0
    t0=$(now_ms)
    awk -v n="$n" -v prefix="r$STAMP" -f "$HERE/gen_events.awk" |
      "$BIN" import /dev/stdin --format jsonl --data "$data" >"$TMP/import.log" 2>&1 || rc=$?
    t1=$(now_ms)
    build_s=$(calc "sprintf(\"%.0f\", ($t1 - $t0) / 1000)")
    imp_line=$(grep '^import: .* records in' "$TMP/import.log" | tail -1) || imp_line="(no summary line)"
    if [ "$rc" != 0 ]; then
      problem "restart: engaged import exited with $rc: $imp_line $(tail -3 "$TMP/import.log" | tr '\n' ' ')"
      [ "$rc" = 1 ] || return 1 # 1: some lines rejected, the store is still usable
    fi
    built="built in $build_s s ($(calc "sprintf(\"%.0f\", $n / ($build_s > 0 ? $build_s : 1))") events/s; load average at the start $load_b) on $(date '+%Y-%m-%d %H:%M'): \`$imp_line\`"
    printf '%s\n' "$built" >"$stamp"
    say "restart: store built in $build_s s"
  fi
  local du_b
  du_b=$(du -sb "$data" | cut -f1)
  emit "## 4. Restart time with $n events stored"
  emit ""
  emit "Store: $n events, $du_b bytes on disk ($(calc "sprintf(\"%.0f\", $du_b / $n)") B/event); $built."
  emit "Ready = from starting \`engaged serve\` to the first 200 from GET /healthz, polled every 10 ms. Commits bypass the page cache (O_DIRECT), so the first restart reads the log from the disk; each later one finds it cached by the one before: the median is a warm restart, not a cold boot."
  emit ""
  emit "| restart | ready ms | server CPU s to ready | other cores | VmRSS kB | VmHWM kB | dedup ids loaded | index load ms (server log) | stop ms | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|"
  local i ready=() rss=() loads=() others=() cpus=() l ids ms log=$TMP/engaged-restart.log r h
  for i in $(seq "$RESTART_RUNS"); do
    l=$(load1)
    : >"$log.$i"
    say "  restart $i: starting"
    start_engaged "$data" "$log.$i"
    r=$(proc_status "$ENG_PID" VmRSS) h=$(proc_status "$ENG_PID" VmHWM)
    stop_engaged
    [ "$ENG_EXIT" = 0 ] || problem "restart: engaged exited with status $ENG_EXIT on SIGTERM"
    ids=$(grep -o '[0-9]* message ids in the dedup window' "$log.$i" | awk '{print $1}' || true)
    ms=$(grep -o 'loaded in [0-9]* ms' "$log.$i" | awk '{print $3}' || true)
    ready+=("$ENG_READY_MS") rss+=("$r") loads+=("$l") others+=("$ENG_START_OTHER") cpus+=("$ENG_START_CPU_S")
    emit "| $i | $ENG_READY_MS | $ENG_START_CPU_S | $ENG_START_OTHER | $r | $h | ${ids:-?} | ${ms:-?} | $ENG_STOP_MS | $l |"
    say "  restart $i: ready in $ENG_READY_MS ms (dedup ids ${ids:-?} loaded in ${ms:-?} ms), VmRSS $r kB"
    [ "$(errors_in_log "$log.$i")" = 0 ] || problem "restart $i: error lines in the server log ($(grep -m1 '"level":"error"' "$log.$i"))"
  done
  local mr
  mr=$(median "${rss[@]}")
  emit ""
  emit "- median ready time **$(median "${ready[@]}") ms**; VmRSS after start median $mr kB ($(calc "sprintf(\"%.1f\", $mr / 1024 / ($n / 1e6))") MiB per million events, empty-server RSS not subtracted)."
  emit ""
  if [ -n "$MEM_POINT" ]; then
    local n1 r1
    read -r n1 r1 <<<"$MEM_POINT"
    if [ "$n" -gt "$n1" ]; then
      local slope
      slope=$(calc "sprintf(\"%.1f\", ($mr - $r1) / 1024 / (($n - $n1) / 1e6))")
      emit "- marginal memory between the memory section's store ($n1 events, RSS $r1 kB) and this one: **$slope MiB per million events** (fixed costs such as the binary and its arenas cancel out)."
      emit ""
      SUMMARY+=("| memory: marginal RSS per million events ($n1 → $n events) | — | **$slope MiB**/M | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
    fi
  fi
  SUMMARY+=("| restart time at $n events | — | **$(median "${ready[@]}") ms** (server CPU to ready $(median "${cpus[@]}") s; RSS $mr kB) | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  if [ -z "$STORE_CACHE" ]; then rm -rf "$data"; fi
}

# ---- profiles ------------------------------------------------------------------------------------

bench_profiles() {
  [ -x "$BENCH_C360" ] || { PROBLEMS+=("profiles: no $BENCH_C360 (ninja -C build)"); return; }
  say "profiles: $PROFILES shoppers x 10 events through eng_apply, in process"
  local l0 out
  l0=$(loadavg)
  out=$("$BENCH_C360" "$PROFILES" 10)
  local j
  j() { echo "$out" | grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
  emit "## Customer 360 engine ($PROFILES shoppers, $(j events) events, in process)"
  emit ""
  emit "\`$BENCH_C360 $PROFILES 10\` → \`$out\`"
  emit ""
  SUMMARY+=("| profiles: identity resolution + profile fold, events/s (in process) | — | **$(j apply_events_per_s)** | measured | $l0 | — |")
  SUMMARY+=("| profiles: RSS per profile beyond its timeline | ≤ 1,024 B | **$(j rss_per_profile_beyond_timeline_bytes) B** | $(awk -v v="$(j rss_per_profile_beyond_timeline_bytes)" 'BEGIN { print (v <= 1024 ? "met" : "NOT met") }') | $l0 | — |")
  SUMMARY+=("| profiles: lookup (whole profile as JSON) p50 / p99 | — | **$(j lookup_p50_us) / $(j lookup_p99_us) µs** | measured | $l0 | — |")

  # Over HTTP: a store of generated events, replayed at start, then lookups by user_id.
  local data=$TMP/lookup-data
  say "profiles: importing $LOOKUP_EVENTS events for the HTTP lookups"
  awk -v n="$LOOKUP_EVENTS" -v prefix="lk$RANDOM" -f "$HERE/gen_events.awk" |
    "$BIN" import - --data "$data" >"$TMP/lookup-import.log" 2>&1 ||
    { PROBLEMS+=("profiles: import failed: $(tail -1 "$TMP/lookup-import.log")"); return; }
  start_engaged "$data" "$TMP/engaged-lookup.log"
  local replay
  replay=$(grep -o 'events replayed into [0-9]* profiles in [0-9]* ms' "$TMP/engaged-lookup.log" | tail -1)
  say "profiles: ready in $ENG_READY_MS ms ($replay)"
  SRV_PIDS=("$ENG_PID")
  run_wrk lookup-warm 32 "$WARMUP" lookup.lua "$ENG_PORT" "$ADMIN_KEY" 100000
  run_wrk lookup 32 "$DURATION" lookup.lua "$ENG_PORT" "$ADMIN_KEY" 100000
  emit "HTTP lookups: \`GET /v1/profiles/lookup?user_id=\` at 32 connections for ${DURATION} s, $LOOKUP_EVENTS events in the store ($replay; ready in $ENG_READY_MS ms): ${W[rps]} req/s, p50 $(us2ms "${W[p50_us]}") ms, p99 $(us2ms "${W[p99_us]}") ms, non-2xx ${W[err_status]}, server cores ${W[srv_cores]}, other cores ${W[other_cores]}."
  emit ""
  SUMMARY+=("| profiles over HTTP: lookup by user_id, 32 conns, $LOOKUP_EVENTS events | — | **${W[rps]} req/s, p99 $(us2ms "${W[p99_us]}") ms** | measured | ${W[load]} | ${W[other_cores]} |")
  SUMMARY+=("| profiles: start-up with $LOOKUP_EVENTS events (engine replay) | — | **$ENG_READY_MS ms** | measured | — | $ENG_START_OTHER |")
  [ "${W[err_status]}" = 0 ] || PROBLEMS+=("profiles: ${W[err_status]} non-2xx lookups")
  stop_engaged
  rm -rf "$data"
}

# ---- recommendations -----------------------------------------------------------------------------

bench_reco() {
  local data=$TMP/reco-data t0
  say "reco: importing $RECO_PRODUCTS products and $RECO_USERS shoppers (3 views each)"
  t0=$(now_ms)
  awk -v n="$RECO_PRODUCTS" -f "$HERE/gen_products.awk" >"$TMP/products.jsonl"
  "$BIN" import --products "$TMP/products.jsonl" --data "$data" >"$TMP/reco-import.log" 2>&1 ||
    { problem "reco: product import failed: $(tail -1 "$TMP/reco-import.log")"; return; }
  awk -v users="$RECO_USERS" -v views=3 -v products="$RECO_PRODUCTS" -v prefix="rc$RANDOM" \
    -f "$HERE/gen_reco.awk" | "$BIN" import - --data "$data" >>"$TMP/reco-import.log" 2>&1 ||
    { problem "reco: event import failed: $(tail -1 "$TMP/reco-import.log")"; return; }
  say "reco: imported in $((($(now_ms) - t0) / 1000)) s; starting the server"
  start_engaged "$data" "$TMP/engaged-reco.log"
  local replay rss
  replay=$(grep -o 'events replayed into [0-9]* profiles in [0-9]* ms' "$TMP/engaged-reco.log" | tail -1)
  rss=$(proc_status "$ENG_PID" VmRSS)
  say "reco: ready in $ENG_READY_MS ms ($replay), RSS $rss kB"
  # nginx's answer: one real answer, as a file, for the same requests.
  mkdir -p "$TMP/www"
  chmod o+x "$TMP" "$TMP/www" # nginx's workers run as an unprivileged user
  http_get "$ENG_PORT" "/v1/recommendations?user_id=user-1&product_id=sku-000001&limit=10" "$ADMIN_KEY" \
    >"$TMP/www/reco.json" || { problem "reco: the first request failed"; stop_engaged; return; }
  chmod o+r "$TMP/www/reco.json"
  local size
  size=$(wc -c <"$TMP/www/reco.json")
  start_nginx "location /v1/ { root $TMP/www; default_type application/json; try_files /reco.json =404; }"
  local i who order e_rps=() n_rps=() e_p50=() e_p99=() n_p99=() ratios=() loads=() others=() bad=0
  emit "## Recommendations: GET /v1/recommendations (product page, limit 10), 32 connections, vs nginx serving a $size-byte answer as a static file"
  emit ""
  emit "Store: $RECO_USERS shoppers (3 views each, an order for every tenth), $RECO_PRODUCTS products; $replay; ready in $ENG_READY_MS ms; RSS after start $rss kB."
  emit ""
  emit "| run | server | req/s | p50 ms | p99 ms | max ms | non-2xx | srv cores | other cores | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|"
  SRV_PIDS=("$ENG_PID")
  run_wrk reco-warm-e 32 "$WARMUP" reco.lua "$ENG_PORT" "$ADMIN_KEY" "$RECO_USERS" "$RECO_PRODUCTS"
  for i in $(seq "$RUNS"); do
    if ((i % 2)); then order="engaged nginx"; else order="nginx engaged"; fi
    for who in $order; do
      if [ "$who" = engaged ]; then
        SRV_PIDS=("$ENG_PID")
        run_wrk "reco-e$i" 32 "$DURATION" reco.lua "$ENG_PORT" "$ADMIN_KEY" "$RECO_USERS" "$RECO_PRODUCTS"
        e_rps+=("${W[rps]}") e_p50+=("$(us2ms "${W[p50_us]}")") e_p99+=("$(us2ms "${W[p99_us]}")")
        bad=$((bad + ${W[err_status]}))
      else
        read -r -a SRV_PIDS <<<"$(nginx_pids)"
        run_wrk "reco-n$i" 32 "$DURATION" reco.lua "$NGX_PORT" "$ADMIN_KEY" "$RECO_USERS" "$RECO_PRODUCTS"
        n_rps+=("${W[rps]}") n_p99+=("$(us2ms "${W[p99_us]}")")
      fi
      loads+=("${W[load]}") others+=("${W[other_cores]}")
      emit "| $i | $who | ${W[rps]} | $(us2ms "${W[p50_us]}") | $(us2ms "${W[p99_us]}") | $(us2ms "${W[max_us]}") | ${W[err_status]} | ${W[srv_cores]} | ${W[other_cores]} | ${W[load]} |"
      say "  run $i $who: ${W[rps]} req/s, p99 $(us2ms "${W[p99_us]}") ms"
    done
    ratios+=("$(calc "sprintf(\"%.3f\", ${e_rps[-1]} / ${n_rps[-1]})")")
  done
  # Latency at a load both servers carry without queueing: at 32 connections on two cores shared
  # with wrk, the p99 is mostly time spent waiting in line (nginx's own is several ms there).
  local lat_e=() lat_n=() lat_e_rps=() lat_n_rps=()
  emit ""
  emit "Latency runs, $RECO_LAT_CONNS connections:"
  emit ""
  emit "| run | server | req/s | p50 ms | p99 ms | max ms | non-2xx | srv cores | other cores | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|"
  for i in $(seq "$RUNS"); do
    if ((i % 2)); then order="engaged nginx"; else order="nginx engaged"; fi
    for who in $order; do
      if [ "$who" = engaged ]; then
        SRV_PIDS=("$ENG_PID")
        run_wrk "reco-lat-e$i" "$RECO_LAT_CONNS" "$DURATION" reco.lua "$ENG_PORT" "$ADMIN_KEY" "$RECO_USERS" "$RECO_PRODUCTS"
        lat_e+=("$(us2ms "${W[p99_us]}")") lat_e_rps+=("${W[rps]}")
        bad=$((bad + ${W[err_status]}))
      else
        read -r -a SRV_PIDS <<<"$(nginx_pids)"
        run_wrk "reco-lat-n$i" "$RECO_LAT_CONNS" "$DURATION" reco.lua "$NGX_PORT" "$ADMIN_KEY" "$RECO_USERS" "$RECO_PRODUCTS"
        lat_n+=("$(us2ms "${W[p99_us]}")") lat_n_rps+=("${W[rps]}")
      fi
      emit "| $i | $who | ${W[rps]} | $(us2ms "${W[p50_us]}") | $(us2ms "${W[p99_us]}") | $(us2ms "${W[max_us]}") | ${W[err_status]} | ${W[srv_cores]} | ${W[other_cores]} | ${W[load]} |"
      say "  latency run $i $who ($RECO_LAT_CONNS conns): ${W[rps]} req/s, p99 $(us2ms "${W[p99_us]}") ms"
    done
  done
  stop_nginx
  stop_engaged
  local me mn ratio p99 lp99
  me=$(median "${e_rps[@]}") mn=$(median "${n_rps[@]}") p99=$(median "${e_p99[@]}")
  lp99=$(median "${lat_e[@]}")
  ratio=$(calc "sprintf(\"%.3f\", $me / $mn)")
  emit ""
  emit "Medians over $RUNS runs at 32 connections: engaged **$me req/s** (p50 $(median "${e_p50[@]}") ms, p99 **$p99 ms**); nginx **$mn req/s** (p99 $(median "${n_p99[@]}") ms). Ratio **$ratio** (per run: ${ratios[*]}). At $RECO_LAT_CONNS connections: engaged p99 **$lp99 ms** at $(median "${lat_e_rps[@]}") req/s, nginx p99 $(median "${lat_n[@]}") ms at $(median "${lat_n_rps[@]}") req/s. Error lines in the server log: $(errors_in_log "$TMP/engaged-reco.log")."
  emit ""
  [ "$bad" = 0 ] || problem "reco: $bad non-2xx answers from engaged"
  # The same answers in process, timed with the thread's CPU clock: the app's own cost per answer,
  # without HTTP, and far less moved by other jobs than a throughput.
  local inproc=''
  if [ -x "$BENCH_RECO" ]; then
    say "reco: in process, 20000 answers (bench_reco replays the store first)"
    inproc=$("$BENCH_RECO" "$data" 20000 "$RECO_USERS" "$RECO_PRODUCTS" 2>>"$TMP/reco-import.log") ||
      problem "reco: bench_reco failed: $(tail -1 "$TMP/reco-import.log")"
    emit "In process (\`$BENCH_RECO DATA 20000 $RECO_USERS $RECO_PRODUCTS\`, CPU time per answer without HTTP): \`$inproc\`"
    emit ""
  fi
  SUMMARY+=("| recommendations req/s vs nginx static JSON (32 conns) | ≥ 0.5 × nginx | $me vs $mn = **$ratio ×** | $(calc "($ratio >= 0.5 ? \"met\" : \"NOT met\")") | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  SUMMARY+=("| recommendations p99, 32 conns (nginx's: $(median "${n_p99[@]}") ms) | ≤ 2 ms | **$p99 ms** | $(calc "($p99 <= 2 ? \"met\" : \"NOT met\")") | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  SUMMARY+=("| recommendations p99, $RECO_LAT_CONNS conns (nginx's: $(median "${lat_n[@]}") ms) | ≤ 2 ms | **$lp99 ms** | $(calc "($lp99 <= 2 ? \"met\" : \"NOT met\")") | — | — |")
  SUMMARY+=("| recommendations: RSS with $RECO_USERS shoppers, $RECO_PRODUCTS products | — | **$rss kB** | measured | — | — |")
  rm -rf "$data"
}

# ---- browser -------------------------------------------------------------------------------------

# http_headers PORT PATH [HEADER] — the status line and headers of a GET's reply; the body unread.
http_headers() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$2" "${3:+$3$'\r\n'}" >&3
  while IFS= read -r -t 5 line <&3; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    printf '%s\n' "$line"
  done
  exec 3<&-
}
header_value() { awk -v k="$(tr 'A-Z' 'a-z' <<<"$1")" -F': ' 'tolower($1) == k {print $2; exit}'; }

# write_browser_lua FILE BENCH_DIR — the browser section's wrk script (it uses BENCH_DIR's events.lua
# and report.lua). Its arguments: RUNID WRITEKEY MODE SIZE ORIGIN, MODE one of
#   b      POST /v1/b, text/plain, {"batch":[SIZE events],"writeKey":..,"sentAt":..}, Origin (engaged.js)
#   t      POST /v1/t, text/plain, one event, Basic auth, Origin (analytics.js)
#   batch  POST /v1/batch, application/json, Basic auth, SIZE events (the server SDKs)
write_browser_lua() {
  printf '%s\n' \
    "package.path = \"$2/?.lua;\" .. package.path" \
    'local ev = require("events")' \
    'local report = require("report")' \
    'local nthreads = 0' \
    'function setup(thread)' \
    '  thread:set("tid", nthreads)' \
    '  nthreads = nthreads + 1' \
    'end' \
    'local prefix, key, mode, size, path, headers' \
    'local n, parts = 0, {}' \
    'function init(args)' \
    '  prefix, key, mode, size = args[1] .. "-" .. tostring(tid) .. "-", args[2], args[3], tonumber(args[4])' \
    '  local basic = "Basic " .. ev.base64(key .. ":")' \
    '  headers = { ["Content-Type"] = "text/plain;charset=UTF-8", ["Origin"] = args[5] }' \
    '  if mode == "t" then headers["Authorization"] = basic end' \
    '  if mode == "batch" then headers = { ["Content-Type"] = "application/json", ["Authorization"] = basic } end' \
    '  path = ({ b = "/v1/b", t = "/v1/t", batch = "/v1/batch" })[mode]' \
    'end' \
    'function request()' \
    '  if mode == "t" then' \
    '    n = n + 1' \
    '    return wrk.format("POST", path, headers, ev.event(prefix, n, false))' \
    '  end' \
    '  for i = 1, size do' \
    '    n = n + 1' \
    '    parts[i] = ev.event(prefix, n, true)' \
    '  end' \
    '  local extra = mode == "b" and (",\"writeKey\":\"" .. key .. "\",\"sentAt\":\"2024-05-01T10:00:00.000Z\"") or ""' \
    '  return wrk.format("POST", path, headers, "{\"batch\":[" .. table.concat(parts, ",", 1, size) .. "]" .. extra .. "}")' \
    'end' \
    'done = report.done' >"$1"
}

# browser_wrk NAME CONNS DURATION PORT ARGS... — run_wrk with the script in $TMP (run_wrk reads $HERE).
browser_wrk() {
  local HERE=$TMP
  run_wrk "$1" "$2" "$3" browser.lua "${@:4}"
}

bench_browser() {
  local origin=http://shop.example size=$BROWSER_BATCH conns=$BROWSER_CONNS
  write_browser_lua "$TMP/browser.lua" "$HERE"
  say "browser: /sdk/engaged.js size; POST /v1/b and /v1/batch ($size events), /v1/t (1 event) at $conns connections, $RUNS x ${DURATION}s each"
  start_engaged "$TMP/browser-data" "$TMP/engaged-browser.log"
  SRV_PIDS=("$ENG_PID")
  local plain gz enc probe body
  plain=$(http_headers "$ENG_PORT" /sdk/engaged.js | header_value Content-Length)
  http_headers "$ENG_PORT" /sdk/engaged.js 'Accept-Encoding: gzip, deflate, br' >"$TMP/sdk-gz.headers"
  gz=$(header_value Content-Length <"$TMP/sdk-gz.headers")
  enc=$(header_value Content-Encoding <"$TMP/sdk-gz.headers")
  [ "$enc" = gzip ] || problem "browser: /sdk/engaged.js was not sent gzipped (Content-Encoding: ${enc:-none})"
  # One request as a browser sends it: its reply must carry the CORS header, or no page could read it.
  body="{\"batch\":[{\"type\":\"track\",\"userId\":\"probe\",\"event\":\"Probe\",\"messageId\":\"probe-$STAMP\"}],\"writeKey\":\"$WRITE_KEY\"}"
  exec 3<>"/dev/tcp/127.0.0.1/$ENG_PORT"
  printf 'POST /v1/b HTTP/1.0\r\nHost: 127.0.0.1\r\nOrigin: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s' \
    "$origin" "${#body}" "$body" >&3
  probe=$(timeout 10 cat <&3 | tr -d '\r') || true
  exec 3<&-
  [[ $probe == "HTTP/1."?" 200 "* && $probe == *"Access-Control-Allow-Origin: $origin"* ]] ||
    problem "browser: POST /v1/b with an Origin did not get 200 with Access-Control-Allow-Origin (${probe%%$'\n'*})"
  emit "## Browser collection: engaged.js's batches (POST /v1/b) and analytics.js's single events (POST /v1/t) beside /v1/batch"
  emit ""
  emit "\`/sdk/engaged.js\` as engaged sends it: **$plain bytes**, **$gz bytes gzipped** (the Content-Length of its replies without and with Accept-Encoding: gzip)."
  emit ""
  emit "One server, one run, the modes alternating: \`b\` = POST /v1/b, text/plain, the write key in the body and an Origin header (what engaged.js sends: a simple request, no preflight); \`batch\` = POST /v1/batch, JSON, Basic auth, no Origin; both with $size events per request. \`t\` = POST /v1/t, one event, text/plain, Basic auth and Origin (what analytics.js sends; the browser caches its preflight for a day, so it is not counted). $conns keep-alive connections; a 200 means the events are on disk."
  emit ""
  emit "| run | mode | req/s | events/s | p50 ms | p99 ms | non-2xx | sock err | srv cores | events per srv CPU-s | wrk cores | other cores | load |"
  emit "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  local mode i n evs eff bad=0 loads=() others=() ratios=()
  declare -A r_evs r_p99 r_eff last
  say "browser: warm-up ${WARMUP}s per mode"
  for mode in b batch t; do
    browser_wrk "browser-warm-$mode" "$conns" "$WARMUP" "$ENG_PORT" "bw$mode$STAMP" "$WRITE_KEY" "$mode" "$size" "$origin"
  done
  # The store grows during the run and each measurement is a little slower than the one before, so
  # b and batch are measured back to back (either first, by turns) and compared run by run.
  local orders=("b batch t" "t batch b")
  for i in $(seq "$RUNS"); do
    for mode in ${orders[$(((i - 1) % 2))]}; do
      browser_wrk "browser-$mode-$i" "$conns" "$DURATION" "$ENG_PORT" "br$mode$i$STAMP" "$WRITE_KEY" "$mode" "$size" "$origin"
      n=$size
      [ "$mode" = t ] && n=1
      evs=$(calc "sprintf(\"%.0f\", (${W[requests]} - ${W[err_status]}) * $n / (${W[duration_us]} / 1e6))")
      eff=$(calc "sprintf(\"%.0f\", $evs / (${W[srv_cores]} > 0 ? ${W[srv_cores]} : 1))")
      r_evs[$mode]+="$evs " r_p99[$mode]+="$(us2ms "${W[p99_us]}") " r_eff[$mode]+="$eff " last[$mode]=$evs
      loads+=("${W[load]}") others+=("${W[other_cores]}")
      bad=$((bad + ${W[err_status]}))
      emit "| $i | $mode | ${W[rps]} | $evs | $(us2ms "${W[p50_us]}") | $(us2ms "${W[p99_us]}") | ${W[err_status]} | ${W[errors]} | ${W[srv_cores]} | $eff | ${W[wrk_cores]} | ${W[other_cores]} | ${W[load]} |"
      say "  run $i $mode: $evs events/s, p99 $(us2ms "${W[p99_us]}") ms (load ${W[load]}, other jobs ${W[other_cores]} cores)"
    done
    ratios+=("$(calc "sprintf(\"%.3f\", ${last[b]} / (${last[batch]} > 0 ? ${last[batch]} : 1))")")
  done
  fetch_metrics
  local route
  for route in /v1/b /v1/t /v1/batch; do
    read -r _ n _ <<<"$(route_statuses "$route")"
    [ "$n" = 0 ] || problem "browser: engaged counted $n non-2xx answers on $route"
  done
  stop_engaged
  [ "$bad" = 0 ] || problem "browser: $bad non-2xx answers"
  [ "$ENG_EXIT" = 0 ] || problem "browser: engaged exited with status $ENG_EXIT on SIGTERM"
  local mb mj mt ratio
  # shellcheck disable=SC2086
  mb=$(median ${r_evs[b]}) mj=$(median ${r_evs[batch]}) mt=$(median ${r_evs[t]})
  ratio=$(median "${ratios[@]}")
  emit ""
  # shellcheck disable=SC2086
  emit "- medians: /v1/b **$mb events/s** (p99 $(median ${r_p99[b]}) ms; $(median ${r_eff[b]}) per server CPU-s), /v1/batch **$mj events/s** (p99 $(median ${r_p99[batch]}) ms; $(median ${r_eff[batch]}) per server CPU-s), /v1/t **$mt events/s** (p99 $(median ${r_p99[t]}) ms); /v1/b ÷ /v1/batch measured back to back: median **$ratio** (per run: ${ratios[*]}). Error lines in the server log: $(errors_in_log "$TMP/engaged-browser.log")."
  emit ""
  SUMMARY+=("| /sdk/engaged.js on the wire | < 6 KB gzipped | **$gz B** gzipped ($plain B plain) | $(calc "($gz < 6144 ? \"met\" : \"NOT met\")") | — | — |")
  SUMMARY+=("| browser batches of $size: POST /v1/b vs /v1/batch, $conns conns | — | **$mb** vs $mj events/s ($ratio ×) | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
  SUMMARY+=("| analytics.js single events: POST /v1/t with CORS, $conns conns | — | **$mt events/s** | measured | $(minmax "${loads[@]}") | $(minmax "${others[@]}") |")
}

# ---- main ----------------------------------------------------------------------------------------

# The whole run is one function, called on the file's last line: bash has then read all of it before
# anything runs, so editing this file during a run cannot change the run.
main() {
  machine_info
  T_START=$(now_ms)
  trap 'echo "bench: FAILED at line $LINENO: $BASH_COMMAND (partial results in $RESULT)" >&2' ERR
  for s in "${sections[@]}"; do
    "bench_$s"
  done
  emit "## Summary"
  emit ""
  emit "| what | target | measured (medians) | verdict | load avg during | other jobs, cores |"
  emit "|---|---|---|---|---|---|"
  for row in "${SUMMARY[@]}"; do emit "$row"; done
  emit ""
  if [ ${#PROBLEMS[@]} -eq 0 ]; then
    emit "Server problems seen: none (no non-2xx answers, no socket errors counted as failures, no error lines in the server logs, every SIGTERM exit 0)."
  else
    emit "Problems seen (server errors, non-2xx answers, duplicates, failed or skipped steps):"
    for p in "${PROBLEMS[@]}"; do emit "- $p"; done
  fi
  emit ""
  emit "Total time: $((($(now_ms) - T_START) / 1000)) s; load average at the end: $(loadavg)."
  say "results written to $RESULT"
}

main "$@"; exit $?

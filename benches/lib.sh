# Helpers the benchmark scripts share (sourced, not run).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu_us PID -> microseconds of CPU (user+sys) the process's threads have used.
# /proc/PID/stat counts in clock ticks (10 ms): a test that costs the server 50 ms, like the
# pub/sub rows, would be measured to +-20%. schedstat counts the same time in nanoseconds,
# per live thread; the tests measured here start and end no threads. Kernels built without
# schedstat fall back to the ticks.
cpu_us() {
    if [ -r "/proc/$1/schedstat" ]; then
        cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {printf "%.0f\n", ns / 1000}'
    else
        awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f\n", ($14 + $15) * 1e6 / hz}' "/proc/$1/stat"
    fi
}
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# rps_cpu PID N ARGS... -> "requests/s cpu_us_per_request" of one redis-benchmark run of N
# requests (ARGS: its other options, -p included), pinned to CPU 1, with the CPU time the
# server PID used meanwhile.
rps_cpu() {
    local pid=$1 n=$2 before after rps
    shift 2
    before=$(cpu_us "$pid")
    rps=$(taskset -c 1 redis-benchmark -n "$n" -q --csv "$@" 2>/dev/null \
        | awk -F, 'NR>1 {gsub(/"/,""); print $2; exit}')
    after=$(cpu_us "$pid")
    python3 -c "print($rps, ($after-$before)/$n)"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# wait_up PORT [redis-cli options] -> returns once the server answers PING
wait_up() {
    local port=$1
    shift
    for _ in $(seq 100); do
        redis-cli -p "$port" "$@" --no-auth-warning ping >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "server on $port did not start" >&2
    exit 1
}

# Helpers the benchmark scripts share (sourced, not run).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu_ticks PID -> user+sys clock ticks the process has used
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
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

# Sourced by the page benchmarks: `serve_dist PORT` serves the built dist/ on 127.0.0.1:PORT in the background until
# the calling script exits, and returns once bench.html answers.
serve_dist() {
  cargo xtask serve --no-build --port "$1" >/dev/null 2>&1 &
  local server=$!
  trap "kill $server 2>/dev/null" EXIT
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$1/bench.html" >/dev/null && return; sleep 0.2; done
  echo "dist/ is not being served on port $1" >&2
  return 1
}

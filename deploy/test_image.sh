#!/usr/bin/env bash
# `make test-image`: builds both variants of the image and checks them, on a machine without a GPU
# and without registry images (CI runs it on every run).
#   1. the engine: Debian's docker.io, docker-compose and debootstrap when missing; dockerd is
#      started only when none answers, and whatever this script started is stopped on exit;
#   2. the local base: debootstrap from this machine's Debian source, plus the host's own CA
#      certificates and apt's snapshot setting (the proxy and the dated mirror need them). Only
#      this local base gets them, never the Dockerfile or an image built from a registry base;
#   3. docker-compose.yml + docker-compose.cpu.yml: build, up, and against the container:
#      healthy, non-root, /readyz, deploy/smoke.sh, restart after `docker kill`, the drain on
#      `docker-compose stop`, the triton-repository job;
#   4. the GPU image as `docker-compose build` makes it (dcnserve:latest: CUDA kernels for
#      DCN_CUDA_ARCHS, libdcn_ort_cuda.so, onnxruntime-gpu; the venv's layers shared with the CPU
#      image), then without a GPU: deploy/gpu_image_checks.py inside it (CUDA kernels registered,
#      both ORT libraries load, ldd resolves them, CUDAExecutionProvider listed), the service up
#      and /readyz naming its device, the compose GPU reservation, and `make gpu-check` walked
#      inside the image (its dry run: the one-liner of docs/gpu.md minus the GPU).
# Settings: DCN_BASE_IMAGE (tag of the local base, made when missing), DCN_CUDA_ARCHS (CUDA
# architectures of the GPU image; CI's short list by default, the Dockerfile's own is the full one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv/bin/python"   # not realpath: that would leave the venv
export DCN_BASE_IMAGE="${DCN_BASE_IMAGE:-local/debian-minbase:bookworm}"
export DCN_CUDA_ARCHS="${DCN_CUDA_ARCHS:-9.0}"
export COMPOSE_PROJECT_NAME=dcnserve-test-image
export COMPOSE_FILE=docker-compose.yml:docker-compose.cpu.yml
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0   # Debian's engine has the legacy builder only
# A free host port: other services may hold 8000.
DCN_HOST_PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("", 0))
print(s.getsockname()[1])')"
export DCN_HOST_PORT
base_url="http://127.0.0.1:$DCN_HOST_PORT"
work="$(mktemp -d)"
dockerd_pid=""
gpu_container="${COMPOSE_PROJECT_NAME}-gpu"
log() { echo "test-image: $*"; }
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }

cleanup() {
  status=$?
  if [ "$status" != 0 ] && [ -n "$(container 2>/dev/null)" ]; then
    docker-compose logs --no-color --tail 60 dcnserve >&2 || true
  fi
  if docker info >/dev/null 2>&1; then
    docker-compose --profile triton down -v --remove-orphans >/dev/null 2>&1 || true
    docker rm -f "$gpu_container" >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    log "stopping the dockerd this script started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

install_engine() {
  command -v dockerd >/dev/null && command -v docker-compose >/dev/null \
    && command -v debootstrap >/dev/null && return
  log "installing docker.io, docker-compose, debootstrap"
  local sudo; sudo=$(test "$(id -u)" = 0 || echo sudo)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    docker.io docker-compose debootstrap >/dev/null
}

start_engine() {
  docker info >/dev/null 2>&1 && { log "using the running Docker engine"; return; }
  log "starting dockerd"
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  cat "$work/dockerd.log" >&2
  fail "dockerd did not start"
}

# The first Debian archive in this machine's apt sources (one-line or deb822 format).
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources) sed -nE 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n' ;;
      *.list) sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f" ;;
    esac
  done | awk '/\/debian\/?$/ && !found { print; found = 1 }'
}

make_base() {
  if docker image inspect "$DCN_BASE_IMAGE" >/dev/null 2>&1; then
    log "local base $DCN_BASE_IMAGE exists"
    return
  fi
  local mirror suite rootfs="$work/rootfs" start=$SECONDS
  mirror="$(debian_mirror)"
  suite="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  log "making $DCN_BASE_IMAGE: debootstrap $suite from ${mirror:?no Debian source in /etc/apt}"
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; fail debootstrap; }
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" \
    2>/dev/null || true
  chroot "$rootfs" update-ca-certificates >>"$work/debootstrap.log" 2>&1
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99snapshot"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["bash"]' \
    - "$DCN_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "local base made in $((SECONDS - start)) s"
}

container() { docker-compose ps -q dcnserve; }

# Waits (up to $1 s) until the dcnserve container is healthy.
wait_healthy() {
  local state=""
  for _ in $(seq "$1"); do
    state="$(docker inspect -f '{{.State.Health.Status}}' "$(container)" 2>/dev/null || true)"
    [ "$state" = healthy ] && return
    sleep 1
  done
  fail "container not healthy after $1 s (health: ${state:-none})"
}

wait_ready() {
  local url="${1:-$base_url}"
  for _ in $(seq 300); do
    curl -fsS "$url/readyz" -o "$work/ready.json" 2>/dev/null && return
    sleep 1
  done
  fail "/readyz at $url not 200 after 300 s"
}

# smoke.sh says `docker compose`; Debian's Compose 1.29 is `docker-compose`. A CLI plugin in a
# private Docker config forwards one to the other when the Compose plugin is missing.
compose_plugin() {
  docker compose version >/dev/null 2>&1 && return
  export DOCKER_CONFIG="$work/docker-config"
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  cat >"$DOCKER_CONFIG/cli-plugins/docker-compose" <<'SH'
#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion": "0.1.0", "Vendor": "dcnserve test-image", "Version": "1.29"}'
  exit 0
fi
shift
exec docker-compose "$@"
SH
  chmod +x "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

install_engine
start_engine
make_base

log "building the CPU image (base $DCN_BASE_IMAGE)"
start=$SECONDS
docker-compose build dcnserve >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; fail build; }
build_s=$((SECONDS - start))
size="$(docker image inspect -f '{{.Size}}' dcnserve:cpu)"
log "image dcnserve:cpu built in $build_s s, $((size / 1000000)) MB"

docker-compose up -d dcnserve
wait_healthy 240
cid="$(container)"
uid="$(docker exec "$cid" sed -nE 's/^Uid:[[:space:]]+([0-9]+).*/\1/p' /proc/1/status)"
cmd="$(docker exec "$cid" sh -c 'tr "\0" " " </proc/1/cmdline')"
[ "$uid" != 0 ] && [ -n "$uid" ] || fail "the server runs as uid '$uid'"
log "healthy; the server ($cmd) runs as uid $uid"
wait_ready
log "/readyz 200: $(cat "$work/ready.json")"

compose_plugin
bash deploy/smoke.sh "$base_url"

# A crash: the server process killed from the host. (`docker kill` would not do: Docker counts it
# as a manual stop, which the restart policy leaves stopped.)
log "restart: the server process killed (SIGKILL)"
restarts="$(docker inspect -f '{{.RestartCount}}' "$cid")"
kill -KILL "$(docker inspect -f '{{.State.Pid}}' "$cid")"
for _ in $(seq 60); do
  [ "$(docker inspect -f '{{.RestartCount}}' "$cid")" -gt "$restarts" ] && break
  sleep 1
done
wait_healthy 240
wait_ready
restarts="$(docker inspect -f '{{.RestartCount}}' "$cid")"
log "restarted by the restart policy (restart count $restarts); healthy, ready"

ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$cid")"
"$PY" deploy/container_checks.py drain "http://$ip:8000" --requests 16 \
  --stop "docker-compose stop dcnserve"
code="$(docker inspect -f '{{.State.ExitCode}} {{.State.Running}}' "$cid")"
[ "$code" = "0 false" ] || fail "after docker-compose stop: exit code / running = $code"
log "stopped with exit code 0"

log "triton-repository job"
docker-compose --profile triton run --rm triton-repository >"$work/triton.log" 2>&1 \
  || { tail -n 30 "$work/triton.log" >&2; fail "triton-repository job"; }
mkdir -p "$work/models"
docker run --rm -v "${COMPOSE_PROJECT_NAME}_triton-models:/models:ro" --entrypoint tar \
  dcnserve:cpu -C /models -c . | tar -C "$work/models" -x
"$PY" deploy/container_checks.py triton-repository "$work/models"
log "Triton itself is not run: its image cannot be pulled here and it needs a GPU"

log "building the GPU image dcnserve:latest (base $DCN_BASE_IMAGE, CUDA archs $DCN_CUDA_ARCHS)"
start=$SECONDS
COMPOSE_FILE=docker-compose.yml docker-compose build dcnserve >"$work/build-gpu.log" 2>&1 \
  || { tail -n 40 "$work/build-gpu.log" >&2; fail "GPU image build"; }
gpu_build_s=$((SECONDS - start))
gpu_size="$(docker image inspect -f '{{.Size}}' dcnserve:latest)"
shared="$(docker history -q --no-trunc dcnserve:cpu | grep -c -F -x -f - \
  <(docker history -q --no-trunc dcnserve:latest) || true)"
log "image dcnserve:latest built in $gpu_build_s s, $((gpu_size / 1000000)) MB" \
  "($shared layers shared with dcnserve:cpu)"

docker run --rm -i --entrypoint python dcnserve:latest - <deploy/gpu_image_checks.py \
  || fail "checks inside the GPU image"
docker run --rm --entrypoint compute-sanitizer dcnserve:latest --version | tail -n 1 \
  | sed 's/^/test-image: compute-sanitizer in the image: /' || fail "compute-sanitizer"

log "the GPU image's service without a GPU"
docker run -d --name "$gpu_container" dcnserve:latest >/dev/null
gpu_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
  "$gpu_container")"
wait_ready "http://$gpu_ip:8000"
grep -q '"device":"cpu"' "$work/ready.json" || fail "/readyz does not say cpu: $(cat "$work/ready.json")"
log "/readyz 200 without a GPU: $(cat "$work/ready.json")"
docker rm -f "$gpu_container" >/dev/null

# docker-compose.yml with docker-compose.override.yml, as `docker compose up` reads them.
COMPOSE_FILE=docker-compose.yml:docker-compose.override.yml docker-compose config \
  >"$work/gpu-compose.yml" || fail "docker-compose config of the GPU setup"
grep -A 8 'reservations:' "$work/gpu-compose.yml" | grep -q 'driver: nvidia' \
  && grep -A 8 'reservations:' "$work/gpu-compose.yml" | grep -q -- '- gpu' \
  || fail "the compose GPU reservation is missing: $(cat "$work/gpu-compose.yml")"
log "docker-compose config: dcnserve reserves an NVIDIA GPU"

log "make gpu-check inside the GPU image (dry run: no GPU here)"
docker run --rm --entrypoint make dcnserve:latest gpu-check DRY_RUN=1 PREBUILT=1 \
  GPU_CHECK_OUT=/tmp/gpu-check >"$work/gpu-check.log" 2>&1 \
  || { tail -n 40 "$work/gpu-check.log" >&2; fail "make gpu-check in the GPU image"; }
grep '\[gpu-check\] DRY RUN done' "$work/gpu-check.log" | sed 's/^/test-image: /'

log "passed: CPU image built in $build_s s, $((size / 1000000)) MB;" \
  "GPU image built in $gpu_build_s s, $((gpu_size / 1000000)) MB"

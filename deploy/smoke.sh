#!/usr/bin/env bash
# Smoke test of a running dcnserve (after `docker compose up -d` on the GPU host):
#   bash deploy/smoke.sh [BASE_URL] [IMAGE]
# Waits for /readyz, posts a real aerial photo (default: DeepForest's SOAP_061.png taken from
# the container), checks the detections and the offset PNG, sends a burst of 64 requests from 16
# clients, and prints the batch sizes and GPU batch throughput reported by /metrics.
set -euo pipefail
base="${1:-http://127.0.0.1:${DCN_HOST_PORT:-8000}}"
image="${2:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "waiting for $base/readyz ..."
for _ in $(seq 1 180); do
  if curl -fsS "$base/readyz" -o "$work/ready.json" 2>/dev/null; then break; fi
  sleep 2
done
[ -s "$work/ready.json" ] || fail "service not ready after 6 minutes"
echo "ready: $(cat "$work/ready.json")"

if [ -z "$image" ]; then
  image="$work/SOAP_061.png"
  docker compose exec -T dcnserve python -c "import importlib.util, os, sys; \
d = importlib.util.find_spec('deepforest').submodule_search_locations[0]; \
sys.stdout.buffer.write(open(os.path.join(d, 'data', 'SOAP_061.png'), 'rb').read())" > "$image"
fi
type="image/$(python3 -c "import sys, imghdr; print(imghdr.what(sys.argv[1]) or 'png')" "$image" 2>/dev/null || echo png)"

curl -fsS -X POST -H "Content-Type: $type" --data-binary "@$image" \
  "$base/detect?score_threshold=0.3" -o "$work/detect.json" || fail "POST /detect"
python3 - "$work/detect.json" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
n = len(r["detections"])
print(f"detect: {n} detections on {r['width']}x{r['height']} ({r['backend']}), "
      f"{r['timing_ms']['total']} ms")
sys.exit(0 if n > 0 else "FAIL: no detections")
PY
id="$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['id'])" "$work/detect.json")"
curl -fsS "$base/offsets/$id" -o "$work/offsets.png" || fail "GET /offsets/$id"
[ "$(head -c 4 "$work/offsets.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "offsets is not a PNG"
echo "offsets: PNG of $(wc -c < "$work/offsets.png") bytes"

echo "burst: 64 requests from 16 clients ..."
start=$(date +%s.%N)
seq 64 | xargs -P 16 -I{} curl -fsS -o /dev/null -X POST -H "Content-Type: $type" \
  --data-binary "@$image" "$base/detect" || fail "burst requests failed"
end=$(date +%s.%N)
curl -fsS "$base/metrics" -o "$work/metrics.txt"
python3 - "$work/metrics.txt" "$start" "$end" <<'PY'
import sys
values = {}
for line in open(sys.argv[1]):
    if not line.startswith("#") and " " in line:
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
images = values.get("dcn_images_total", 0.0)
busy = values.get("dcn_inference_seconds_sum", 0.0)
batches = values.get("dcn_batch_size_count", 0.0)
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"burst: {64 / wall:.1f} images/s end to end")
print(f"metrics: {int(images)} images in {int(batches)} batches "
      f"(mean batch {images / max(batches, 1):.2f}); backend throughput while busy "
      f"{images / max(busy, 1e-9):.1f} images/s")
PY
echo "smoke test passed"

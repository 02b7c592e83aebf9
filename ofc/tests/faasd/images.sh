#!/bin/bash
# The images faasd's compose file runs (docker-compose.yaml next to this), FROM scratch, as docker archives that
# ns-init.sh imports with `ctr -n openfaas images import`: the gateway, its basic-auth plugin, the queue-worker and
# NATS Streaming from the gunzipped binaries in BIN, and a Prometheus stand-in (busybox httpd) whose query API
# answers an empty vector.
#   images.sh BIN OUT
set -euo pipefail
bin=$1 out=$2
mkdir -p "$out" "$out/.build"
buildah=(buildah --root "$out/.build/storage" --runroot "$out/.build/run" --storage-driver vfs)

# image NAME ENTRYPOINT-JSON FILE:PATH...
image() {
  local name=$1 entrypoint=$2 container
  shift 2
  container=$("${buildah[@]}" from --quiet scratch)
  for pair in "$@"; do "${buildah[@]}" copy --quiet "$container" "${pair%%:*}" "${pair#*:}"; done
  "${buildah[@]}" config --entrypoint "$entrypoint" --cmd '' "$container"
  "${buildah[@]}" commit --quiet --rm "$container" "localhost/faasd-local/$name:latest" >/dev/null
  rm -f "$out/$name.tar"
  "${buildah[@]}" push --quiet "localhost/faasd-local/$name:latest" \
    "docker-archive:$out/$name.tar:localhost/faasd-local/$name:latest"
}

image gateway '["/gateway"]' "$bin/ofgateway:/gateway"
image basic-auth '["/basic-auth"]' "$bin/basic-auth:/basic-auth"
image queue-worker '["/queue-worker"]' "$bin/queue-worker:/queue-worker"
image nats-streaming '["/nats-streaming-server"]' "$bin/nats-streaming-server:/nats-streaming-server"
www=$out/.build/www
mkdir -p "$www/api/v1" "$www/etc/prometheus" "$www/tmp"
printf '{"status":"success","data":{"resultType":"vector","result":[]}}' >"$www/api/v1/query"
image prometheus '["/busybox","httpd","-f","-p","9090","-h","/www"]' /bin/busybox:/busybox "$www/api:/www/api"

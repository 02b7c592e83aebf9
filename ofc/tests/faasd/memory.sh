#!/bin/bash
# The memory of every process in faasd's namespace, by part, as PSS in MiB (shared pages split between their users):
# faasd's own processes (containerd, shims, `faasd collect`, provider, journald) and compose services, the platform's
# functions, the users' functions (`local-*`), and what runs outside faasd (registry and its gates, of-builder, the
# doubles; `comm` holds a name's first 15 characters).
# Run inside the namespace, where /proc shows its processes only.
set -uo pipefail
for dir in /proc/[0-9]*; do
  pss=$(awk '/^Pss:/ {print $2}' "$dir/smaps_rollup" 2>/dev/null) || continue
  [ -n "$pss" ] || continue
  comm=$(cat "$dir/comm" 2>/dev/null) || continue
  group=$(awk -F: '$2 ~ /memory/ {print $3}' "$dir/cgroup" 2>/dev/null)
  case "$group" in
    */openfaas-fn/local-*) part="user functions" ;;
    */openfaas-fn/*) part="platform functions" ;;
    */openfaas/*) part="faasd services (gateway, NATS, queue-worker, basic-auth, prometheus)" ;;
    *)
      case "$comm" in
        docker-registry|ofc-registry-ga|of-builder|serve-doubles|buildah|ns-init.sh|sleep|memory.sh|awk|cat)
          part="outside faasd (registry and its gates, of-builder, doubles)" ;;
        *) part="faasd (containerd, shims, faasd up/collect/provider, journald)" ;;
      esac
      ;;
  esac
  echo "$part	$pss"
done | awk -F'\t' '{s[$1] += $2; n[$1]++} END {for (p in s) printf "%s: %.1f MiB (%d processes)\n", p, s[p] / 1024, n[p]}' | sort

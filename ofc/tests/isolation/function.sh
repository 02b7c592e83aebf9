# The isolation test's function (`fprocess`): the request body names what to try; each answer line says what happened.
/bin/busybox mkdir -p /tmp/bin && /bin/busybox --install -s /tmp/bin
export PATH=/tmp/bin
read -r action
reach() {
  if printf 'GET /%s HTTP/1.0\r\n\r\n' "$2" | nc -w 10 127.0.0.1 "$1" >/tmp/out 2>/tmp/err; then
    echo "REACH $3: reached $(head -n 1 /tmp/out) ($(wc -c < /tmp/out) bytes)"
  else
    echo "REACH $3: $(tail -n 1 /tmp/err)"
  fi
}
# A whole call: the request's end is not sent as a half-close (for $4 seconds), which an HTTP server may take for the
# caller leaving before it answers.
call() {
  { printf 'GET /%s HTTP/1.0\r\n\r\n' "$2"; sleep "$4"; } | nc -w 10 127.0.0.1 "$1" >/tmp/out 2>/tmp/err
  echo "REACH $3: $(head -n 1 /tmp/out)$(tail -n 1 /tmp/err)"
}
case "$action" in
  network)
    reach "$REGISTRY_PORT" v2/_catalog registry
    reach "$GATEWAY_PORT" system/functions gateway-system
    reach "$HOST_PORT" "" host-listener
    for port in $OTHER_PORTS; do reach "$port" "" "other-replica-$port"; done
    gateway_port=${gateway_url#http://127.0.0.1:}; gateway_port=${gateway_port%/}
    call "$gateway_port" function/other-probe function-route 6
    call "$gateway_port" system/functions system-route 1
    call "$gateway_port" function/../system/functions dot-segments 1
    call "$gateway_port" function/%2e%2e/system/functions encoded-dot-segments 1
    echo "INTERFACES: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')" ;;
  write-root)
    if { echo x > /written; } 2>/tmp/err; then echo "ROOT: written"; else echo "ROOT: $(tail -n 1 /tmp/err)"; fi ;;
  fill-tmp)
    # Its message cannot go to a file in the full /tmp.
    failed=$(dd if=/dev/zero of=/tmp/fill bs=1024 count=16384 2>&1 >/dev/null | grep -i space)
    echo "TMP: $failed"
    rm -f /tmp/fill ;;
  memory)
    x=$(head -c 100000000 /dev/zero | tr '\0' a)
    echo "MEMORY: kept ${#x} bytes" ;;
  fork-bomb)
    # A refused fork ends a busybox shell, so the loop runs in a subshell; the answer needs no fork.
    (i=0; while [ $i -lt 400 ]; do sleep 15 </dev/null >/dev/null 2>&1 & i=$((i + 1)); done) 2>/dev/null
    echo "FORK: done" ;;
esac

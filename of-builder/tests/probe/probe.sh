# Run by the sandbox test inside a RUN step: every attempt to reach the host must print `blocked`.
probe() { if sh -c "$2" >/dev/null 2>&1; then echo "PROBE $1: ESCAPED"; else echo "PROBE $1: blocked"; fi; }
probe read-host-file "cat $SECRET_PATH"
probe read-via-proc-1-root "cat /proc/1/root$SECRET_PATH"
probe read-via-any-proc-root 'for p in /proc/[0-9]*; do cat $p/root$SECRET_PATH && exit 0; done; exit 1'
probe signal-host-process "kill -0 $VICTIM"
probe kill-host-process "kill -9 $VICTIM"
probe open-block-device "head -c 512 $DISK"
probe make-block-device "mknod /disk b $DISK_MAJOR $DISK_MINOR && head -c 512 /disk"
probe chroot "mkdir -p /x/bin && cp /bin/busybox /x/bin/ && chroot /x /bin/busybox true"
probe new-user-namespace "unshare -U true"
probe reach-registry "printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 $REGISTRY_PORT"
echo "PROBE interfaces: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')"
echo "PROBE host-pids: $(ls /proc | grep -c '^[0-9]')"
echo "PROBE dev-entries: $(ls /dev | wc -l)"
rm -rf /x /disk
echo written > /app/written.txt && cat /app/hello.txt

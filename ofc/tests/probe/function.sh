# The sandbox test's function (`fprocess`): every attempt to reach the host must answer `blocked`.
/bin/busybox mkdir -p /tmp/bin && /bin/busybox --install -s /tmp/bin
export PATH=/tmp/bin
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
echo "PROBE host-pids: $(ls /proc | grep -c '^[0-9]')"
echo "PROBE dev-entries: $(ls /dev | wc -l)"
echo "PROBE secret: $(cat /var/openfaas/secrets/api-key)"
rm -rf /x /disk

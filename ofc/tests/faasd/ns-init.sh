#!/bin/bash
# PID 1 of the namespaces ofc/tests/faasd.rs creates (network, mount, PID, cgroup): faasd's host paths become
# private to the namespace, then containerd, `faasd provider` and `faasd up` start as faasd's systemd units start
# them. Killing this process ends every process of the namespace; its mounts go with it.
#   FAASD_WORK=<scratch folder with bin/ and images/> SERVICE_TIMEOUT=<provider's service_timeout> ns-init.sh
set -euo pipefail
work=${FAASD_WORK:?the scratch folder}
here=$(cd "$(dirname "$0")" && pwd)
state=$work/state
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "[ns-init $(date +%T.%3N)] $*"; }

# cgroup v1 hierarchies rooted at the test's own cgroups (the cgroup namespace's view), for runc's containers.
mount -t tmpfs -o mode=755 cgroups /sys/fs/cgroup
for controller in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir /sys/fs/cgroup/$controller
  mount -t cgroup -o $controller cgroup /sys/fs/cgroup/$controller
done
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified

# faasd's fixed paths: a private /run, and private upper layers over the host's /var/lib, /usr/local/bin, /opt and
# /etc/cni, so nothing faasd writes reaches the host.
mount -t tmpfs -o mode=755 run /run
overlay() {
  mkdir -p "$state/overlay/$2/upper" "$state/overlay/$2/work"
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$state/overlay/$2/upper,workdir=$state/overlay/$2/work" "$1"
}
overlay /var/lib var-lib
overlay /usr/local/bin usr-local-bin
overlay /opt opt
mkdir -p /etc/cni
overlay /etc/cni etc-cni
mkdir -p /opt/cni/bin /etc/cni/net.d /run/containerd /var/log/journal
ln -sf /usr/lib/cni/* /opt/cni/bin/
install -m 755 "$work/bin/faasd" /usr/local/bin/faasd
ip link set lo up

# The journal faasd's containers log to (`faas-cli logs` reads it), on a tmpfs.
mount -t tmpfs -o mode=755 journal /var/log/journal
/lib/systemd/systemd-journald >>"$state/logs/journald.log" 2>&1 &
# The resolver faasd names in the containers' resolv.conf, on the namespace's loopback (serve-doubles answers there
# once it runs; until then a query is refused at once, which also fails fast).
ip addr add 8.8.8.8/32 dev lo

say "containerd"
sed "s|@STATE@|$state|" "$here/containerd.toml" >"$state/containerd.toml"
containerd --config "$state/containerd.toml" >>"$state/logs/containerd.log" 2>&1 &
for _ in $(seq 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
[ -S /run/containerd/containerd.sock ] || { say "containerd did not start"; exit 1; }
for image in "$work"/images/*.tar; do
  ctr -n openfaas images import "$image" >>"$state/logs/import.log" 2>&1
done
say "images imported"

# What `faasd install` leaves before the units start: the working folders, the gateway's credentials, the compose
# file with its Prometheus configuration, and the resolv.conf given to containers.
mkdir -p /var/lib/faasd/secrets /var/lib/faasd-provider
printf admin >/var/lib/faasd/secrets/basic-auth-user
head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 40 >/var/lib/faasd/secrets/basic-auth-password
cp "$here/docker-compose.yaml" "$here/prometheus.yml" /var/lib/faasd/
printf 'nameserver 8.8.8.8\n' >/var/lib/faasd/resolv.conf

say "faasd provider"
# As the faasd-provider unit: Restart=on-failure after 10 s.
(cd /var/lib/faasd-provider && while :; do
  env secret_mount_path=/var/lib/faasd/secrets basic_auth=true hosts_dir=/var/lib/faasd \
    service_timeout="${SERVICE_TIMEOUT:-15m}" /usr/local/bin/faasd provider >>"$state/logs/provider.log" 2>&1 || true
  sleep 10
done) &
say "faasd up"
(cd /var/lib/faasd && exec /usr/local/bin/faasd up >>"$state/logs/faasd-up.log" 2>&1) &
trap 'exit 0' TERM
while :; do sleep 3600 & wait $! || true; done

#!/bin/sh
# Multi-node check of the MPI backend on one Linux machine (needs root, ip, sshd, ssh).
#
# Makes a second "host" from a network namespace with its own hostname (node2) and sshd,
# joined to this one by a veth pair (10.77.0.1 here, 10.77.0.2 there; both ends are
# called sksmn0, so one UCX_NET_DEVICES / HYDRA_IFACE setting fits both hosts), then fits
# with n_workers=2 placed through mpi_info:
#   1. one worker per host:      mpi_info={"hosts": "10.77.0.1,10.77.0.2"}
#   2. all workers remote:       mpi_info={"hosts": "10.77.0.2"}
#   3. an unreachable host:      mpi_info={"hosts": "10.77.0.3"} -> a clear error, fast
#   4. all workers remote with the user's own UCX_TLS=^cma (which wins over the package's
#      multi-host default and fails here): a clear error within worker_timeout
# with the package's transport defaults (or the VAR=VALUE settings given as arguments),
# and tears everything down again.
#
# Usage: sudo scripts/multinode_netns.sh [PYTHON] [VAR=VALUE ...]
#   e.g. scripts/multinode_netns.sh .venv/bin/python UCX_TLS=tcp,self
set -eu
PY=${1:-python3}
[ $# -gt 0 ] && shift
NS=sksmn2
DIR=$(mktemp -d /tmp/sksparse-multinode-XXXXXX)
cleanup() {
    [ -f "$DIR/sshd.pid" ] && kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true
    ip netns pids $NS 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip link del sksmn0 2>/dev/null || true
    ip netns del $NS 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
cleanup 2>/dev/null || true
DIR=$(mktemp -d /tmp/sksparse-multinode-XXXXXX)

ip netns add $NS
ip link add sksmn0 type veth peer name sksmnb
ip link set sksmnb netns $NS
ip netns exec $NS ip link set sksmnb name sksmn0
ip addr add 10.77.0.1/24 dev sksmn0
ip link set sksmn0 up
ip netns exec $NS ip addr add 10.77.0.2/24 dev sksmn0
ip netns exec $NS ip link set sksmn0 up
ip netns exec $NS ip link set lo up

# sshd in the namespace, its own hostname (UTS namespace), a throw-away key for root
ssh-keygen -q -t ed25519 -N "" -f "$DIR/id" >/dev/null
ssh-keygen -q -t ed25519 -N "" -f "$DIR/host" >/dev/null
cp "$DIR/id.pub" "$DIR/authorized_keys"
mkdir -p /run/sshd
cat > "$DIR/sshd_config" <<EOF
ListenAddress 10.77.0.2
HostKey $DIR/host
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $DIR/sshd.pid
AcceptEnv *
EOF
ip netns exec $NS unshare --uts sh -c "hostname node2; exec /usr/sbin/sshd -f $DIR/sshd_config"
cat > "$DIR/ssh" <<EOF
#!/bin/sh
exec ssh -i $DIR/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "\$@"
EOF
chmod +x "$DIR/ssh"
i=0
until "$DIR/ssh" 10.77.0.2 hostname >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 50 ] && { echo "sshd in $NS did not come up"; exit 1; }
    sleep 0.1
done
echo "node2 reachable: $("$DIR/ssh" 10.77.0.2 hostname)"

# hydra reaches the hosts through our ssh wrapper, on the veth interface
export HYDRA_LAUNCHER=ssh HYDRA_LAUNCHER_EXEC="$DIR/ssh" HYDRA_IFACE=sksmn0
for kv in "$@"; do export "$kv"; done
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
"$PY" - <<'EOF'
import os, socket, time
import numpy as np
from sksparse_mlp import TrulySparseMLPClassifier
from sksparse_mlp.parallel import _testing
rng = np.random.default_rng(0)
X = rng.standard_normal((600, 10)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(int)
env = {k: os.environ[k] for k in ("UCX_TLS", "UCX_NET_DEVICES", "MPIR_CVAR_CH4_NETMOD",
                                  "FI_PROVIDER") if k in os.environ}
print("transport settings:", env or "(package defaults)")
bad = 0
cases = [("one worker per host", "10.77.0.1,10.77.0.2", "ok", None),
         ("all workers remote", "10.77.0.2", "ok", None),
         ("unreachable host", "10.77.0.3", "error", None)]
if "UCX_TLS" not in os.environ:
    cases.append(("user's UCX_TLS=^cma", "10.77.0.2", "error", "^cma"))
for name, hosts, expect, tls in cases:
    if tls is not None:
        os.environ["UCX_TLS"] = tls      # each fit's helper process starts with this env
    clf = TrulySparseMLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                                   n_workers=2, worker_timeout=20.0 if tls is None else 10.0,
                                   mpi_info={"hosts": hosts})
    t0 = time.monotonic()
    try:
        clf.fit(X, y)
        hosts_seen = _testing.last_stats.get("worker_hosts")
        out = "ok: accuracy %.2f, worker hosts %s" % (clf.score(X, y), hosts_seen)
        got = "ok"
    except Exception as e:
        out = "%s: %s" % (type(e).__name__, " ".join(str(e).split())[:400])
        got = "error"
    print("%-20s %-22s %5.1f s  %s" % (name, hosts, time.monotonic() - t0, out), flush=True)
    bad += got != expect
print("RESULT", "all as expected" if not bad else "%d unexpected" % bad)
raise SystemExit(1 if bad else 0)
EOF

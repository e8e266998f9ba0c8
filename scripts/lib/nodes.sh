# Compute nodes of the multi-node test cluster (scripts/cluster-up --nodes N), sourced by
# cluster-up and cluster-down. Each node is a network and UTS namespace of this machine:
# its own host name (node01, node02, …), its own address on a private bridge, its own slurmd.
# The hub host is the root namespace; its address on the bridge is HUB_ADDR. Only these
# addresses and loopback are ever used. See docs/local-cluster.md.

NODE_NET=10.251.0          # the node network, /24; nothing else on this machine uses it
HUB_ADDR=$NODE_NET.1       # the hub host (slurmctld, the hub, the proxy) on that network
HUB_NAME=hpcspawner-hub    # its name there (in the /etc/hosts block)
BRIDGE=hpcbr0
# Two more hosts on that network, each a network and UTS namespace like a node:
SERVICE_ADDR=$NODE_NET.2   # the hub's service address (a site's floating IP), on the active hub
SERVICE_NAME=jupyter       #   host; the fail-over test moves it to the second hub host
HUB2_ADDR=$NODE_NET.3      # the second hub host, where a hub fails over to
HUB2_NAME=hpcspawner-hub2
HUB2_NETNS=hpc-hub2
DB_ADDR=$NODE_NET.4        # the database host: PostgreSQL for the hubs (scripts/lib/postgres.sh)
DB_NAME=hpcspawner-db
DB_NETNS=hpc-db
NODES_FILE=/run/hpcspawner-cluster/nodes   # how many nodes the running cluster has
HOSTS_BEGIN="# BEGIN hpcspawner-cluster nodes (scripts/cluster-up; scripts/cluster-down removes it)"
HOSTS_END="# END hpcspawner-cluster nodes"

node_name() { printf 'node%02d' "$1"; }          # node_name 1 -> node01
node_addr() { printf '%s.%d' "$NODE_NET" $((10 + $1)); }
node_netns() { printf 'hpc-%s' "$(node_name "$1")"; }
node_veth() { printf 'hpcv%02d' "$1"; }

# host_net_up NETNS VETH ADDR: a namespace wired to the bridge, ADDR on its eth0.
host_net_up() {
    local ns=$1 veth=$2 addr=$3
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    # (whole outputs compared, not `| grep -q`: under pipefail an early grep exit fails the pipe)
    [[ $(ip -n "$ns" addr show dev eth0) == *"inet $addr/24 "* ]] ||
        ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# nodes_net_up N: the bridge with the hub's address (and the service address, unless the
# second hub host holds it), the second hub host, the database host and N nodes.
nodes_net_up() {
    local n=$1 i
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    [[ $(ip addr show dev "$BRIDGE") == *"inet $HUB_ADDR/24 "* ]] ||
        ip addr add "$HUB_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    host_net_up "$HUB2_NETNS" hpcvh2 "$HUB2_ADDR"
    host_net_up "$DB_NETNS" hpcvdb "$DB_ADDR"
    if [[ $(ip addr show dev "$BRIDGE") != *"inet $SERVICE_ADDR/24 "* ]] &&
        [[ $(ip -n "$HUB2_NETNS" addr show dev eth0) != *"inet $SERVICE_ADDR/24 "* ]]; then
        ip addr add "$SERVICE_ADDR/24" dev "$BRIDGE"
    fi
    for ((i = 1; i <= n; i++)); do
        host_net_up "$(node_netns "$i")" "$(node_veth "$i")" "$(node_addr "$i")"
    done
}

# nodes_hosts_block N: node names resolve on every host (one /etc/hosts for all namespaces).
nodes_hosts_block() {
    local n=$1 i tmp
    tmp=$(mktemp /etc/hosts.hpcspawner.XXXXXX)
    # every line but the block's, compared as whole strings (no regex)
    awk -v begin="$HOSTS_BEGIN" -v end="$HOSTS_END" \
        '$0 == begin { skip = 1; next } $0 == end { skip = 0; next } !skip' /etc/hosts >"$tmp"
    if ((n > 0)); then
        {
            printf '%s\n' "$HOSTS_BEGIN"
            printf '%s %s\n' "$HUB_ADDR" "$HUB_NAME" "$SERVICE_ADDR" "$SERVICE_NAME" \
                "$HUB2_ADDR" "$HUB2_NAME" "$DB_ADDR" "$DB_NAME"
            for ((i = 1; i <= n; i++)); do
                printf '%s %s\n' "$(node_addr "$i")" "$(node_name "$i")"
            done
            printf '%s\n' "$HOSTS_END"
        } >>"$tmp"
    fi
    chmod 0644 "$tmp"
    # /etc/hosts may be a bind mount (containers): write through it, never replace it
    cat "$tmp" >/etc/hosts
    rm -f "$tmp"
}

# nodes_net_down: every namespace, veth and the bridge of the node network; the hosts block.
nodes_net_down() {
    local ns
    for ns in /run/netns/hpc-node[0-9][0-9] "/run/netns/$HUB2_NETNS" "/run/netns/$DB_NETNS"; do
        [[ -e $ns ]] && ip netns del "$(basename "$ns")"
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link del "$BRIDGE"
    fi
    nodes_hosts_block 0
    rm -f "$NODES_FILE"
}

# on_node I COMMAND...: run COMMAND on node I (its network, its host name). nsenter, not
# `ip netns exec`: that remounts /sys in a mount namespace of its own, without
# /sys/fs/cgroup, and slurmd then refuses to start ("No filesystem mounted on /sys/fs/cgroup").
on_node() {
    local i=$1
    shift
    on_host "$(node_netns "$i")" "$(node_name "$i")" "$@"
}

# on_host NETNS NAME COMMAND...: run COMMAND in NETNS with the host name NAME.
on_host() {
    host_argv "$1" "$2"
    shift 2
    "${HOST_ARGV[@]}" "$@"
}

# host_argv NETNS NAME: HOST_ARGV is the command prefix of on_host. Each part execs the
# next (no fork), so `setsid "${HOST_ARGV[@]}" daemon &` leaves the daemon's own PID in $!.
host_argv() {
    HOST_ARGV=(nsenter --net="/run/netns/$1" -- unshare --uts -- /bin/sh -c
        'hostname "$0" && exec "$@"' "$2")
}

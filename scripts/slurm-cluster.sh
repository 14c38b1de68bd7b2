#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the Slurm executor's
# tests (issue 24): `start`, `stop`, `status`, `env`.
#
# start   installs Slurm and munge from Debian's packages when they are
#         missing (apt-get install slurmctld slurmd slurm-client munge; as
#         root only), writes a minimal slurm.conf for this machine (one node:
#         its CPUs and memory as `slurmd -C` reports them; no accounting
#         daemon; process tracking and task plugins that need neither
#         systemd nor cgroup delegation, so it runs in a container), then
#         starts munged, slurmctld and slurmd as plain daemons (no systemd)
#         and waits until `sinfo` shows the node idle. Already up: says so.
# stop    stops the three daemons it started (by their pid files) and waits
#         for them to exit. The state and logs stay for reading.
# status  says which daemons run, and shows `sinfo`.
# env     prints `export SLURM_CONF=…` for a shell that should talk to it.
#
# Everything lives in one directory of its own (TREEFARM_SLURM_DIR, default
# /var/lib/treefarm-slurm as root, else ${XDG_STATE_HOME:-~/.local/state}/
# treefarm-slurm): etc/slurm.conf, etc/munge.key, state/ (slurmctld's state
# save location), spool/ (slurmd's), log/ (the three daemons' logs), run/
# (pid files and munge's socket). The client commands find the cluster by
# SLURM_CONF; as root, /etc/slurm/slurm.conf is also linked to it when that
# file is missing or is this script's link, so a plain shell's `sinfo` works.
#
# Exit: 0 done; 3 `SKIPPED: <reason>` when Slurm is not installed and cannot
# be (not root, no apt-get, the package registry unreachable); 1 anything
# else (the daemon logs' tails are printed).
#
# Environment:
#   TREEFARM_SLURM_DIR        the cluster's directory (see above)
#   TREEFARM_SLURM_START_WAIT seconds to wait for the node to be idle (60)
set -euo pipefail

say() { printf 'slurm-cluster: %s\n' "$*" >&2; }
skip() {
    printf 'SKIPPED: %s\n' "$*"
    exit 3
}
die() {
    say "error: $*"
    exit 1
}

if [ "$(id -u)" = 0 ]; then
    default_dir=/var/lib/treefarm-slurm
else
    default_dir=${XDG_STATE_HOME:-$HOME/.local/state}/treefarm-slurm
fi
dir=${TREEFARM_SLURM_DIR:-$default_dir}
conf=$dir/etc/slurm.conf
run=$dir/run
log=$dir/log
wait_secs=${TREEFARM_SLURM_START_WAIT:-60}
marker="# written by treefarm scripts/slurm-cluster.sh"
export SLURM_CONF=$conf

# --- install -----------------------------------------------------------------
have_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null
}

install_slurm() {
    have_slurm && return 0
    [ "$(id -u)" = 0 ] || skip "Slurm is not installed and installing it needs root (apt-get install slurmctld slurmd slurm-client munge)"
    command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install it"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    local out
    out=$(mktemp)
    # The packages' maintainer scripts try to start the services; in a
    # container without an init that fails harmlessly (policy-rc.d), and this
    # script starts its own daemons anyway.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends slurmctld slurmd slurm-client munge; } >"$out" 2>&1; then
        tail -n 20 "$out" >&2
        rm -f "$out"
        have_slurm || skip "apt-get could not install Slurm (see above)"
    fi
    rm -f "$out"
    have_slurm || skip "apt-get ran but slurmctld, slurmd, sbatch or munged is still missing"
}

# --- pids --------------------------------------------------------------------
pid_of() { # name -> the live pid from its pid file, or nothing
    local f=$run/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A pid file left by a killed daemon may name a pid reused since.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    printf '%s\n' "$pid"
}

running() { pid_of "$1" >/dev/null; }

show_logs() {
    local f
    for f in "$log"/munged.log "$log"/slurmctld.log "$log"/slurmd.log; do
        [ -f "$f" ] || continue
        say "--- tail of $f"
        tail -n 15 "$f" >&2
    done
}

# --- configuration -----------------------------------------------------------
write_conf() {
    local host node_line mem cpus def_mem
    host=$(hostname -s)
    # `slurmd -C` prints this machine as a NodeName line (CPUs, sockets,
    # cores, threads, RealMemory): the node is exactly this machine.
    node_line=$(slurmd -C | head -n 1)
    case $node_line in
    NodeName=*) ;;
    *) die "slurmd -C printed no NodeName line: $node_line" ;;
    esac
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    if [ -z "$cpus" ] || [ -z "$mem" ]; then
        die "cannot read CPUs and RealMemory from: $node_line"
    fi
    # Memory is a consumable resource (so `--mem` is scheduled and a request
    # above the node's memory is impossible); a job that asks none gets its
    # share per CPU, not the whole node, so single-CPU jobs run side by side.
    def_mem=$((mem / cpus))
    mkdir -p "$dir/etc" "$dir/state" "$dir/spool" "$log" "$run"
    chmod 0755 "$dir" "$dir/etc"
    cat >"$conf.tmp" <<EOF
$marker
# One node (this machine), no accounting daemon, no cgroups, no systemd.
ClusterName=treefarm
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$run/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Without cgroup delegation: processes are tracked through /proc and tasks
# are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
# A node that stopped answering comes back by itself once slurmd registers
# again; one an administrator set down stays down until \`state=resume\`
# (2 would undo \`scontrol update state=down\` within a second).
ReturnToService=1
# How long a finished job stays visible to squeue (the default, written out:
# treefarm reads it to bound its poll interval).
MinJobAge=300
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
# A second partition on the same node with a one-minute limit, so that a
# job asking more time than its partition allows can be seen (the tests).
PartitionName=short Nodes=$host MaxTime=1 State=UP
EOF
    mv "$conf.tmp" "$conf"
    # Client commands in a plain shell read /etc/slurm/slurm.conf: point it
    # here unless something else owns that file.
    if [ "$(id -u)" = 0 ]; then
        local etc=/etc/slurm/slurm.conf
        if [ ! -e "$etc" ] && [ ! -L "$etc" ] || { [ -L "$etc" ] && [ "$(readlink "$etc")" = "$conf" ]; }; then
            mkdir -p /etc/slurm
            ln -sfn "$conf" "$etc"
        elif [ -L "$etc" ] || ! grep -qxF "$marker" "$etc"; then
            say "note: $etc is not this script's; use: export SLURM_CONF=$conf"
        fi
    fi
}

munge_key() {
    local key=$dir/etc/munge.key
    if [ ! -s "$key" ]; then
        # 1024 bits of key, as mungekey makes them; dd keeps it tool-neutral.
        dd if=/dev/urandom of="$key.tmp" bs=128 count=1 status=none
        chmod 0400 "$key.tmp"
        mv "$key.tmp" "$key"
    fi
    printf '%s\n' "$key"
}

# --- start / stop ------------------------------------------------------------
wait_idle() {
    local deadline=$((SECONDS + wait_secs)) state resumed=""
    while :; do
        state=$(sinfo --noheader --format=%T 2>/dev/null | head -n 1 || true)
        case $state in
        idle | mixed | allocated) return 0 ;;
        down | drain*)
            # The controller keeps node states across restarts: a test
            # that was killed after `scontrol update state=down` would
            # leave this cluster's only node down for good.
            if [ -z "$resumed" ]; then
                say "the node is $state from an earlier run ($(sinfo --noheader --Node --format=%E | head -n 1)): resuming it"
                scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
                resumed=yes
            fi
            ;;
        esac
        if [ $SECONDS -ge $deadline ]; then
            show_logs
            die "the node is not idle after ${wait_secs}s (sinfo says: ${state:-nothing})"
        fi
        sleep 0.5
    done
}

start() {
    install_slurm
    if running munged && running slurmctld && running slurmd; then
        say "already running ($dir)"
        wait_idle
        return 0
    fi
    write_conf
    local key
    key=$(munge_key)
    if ! running munged; then
        # --force: munged refuses a socket directory it does not own
        # exclusively or a key under a world-readable tree otherwise; this
        # directory is the cluster's own.
        munged --force --key-file="$key" --socket="$run/munge.socket" \
            --pid-file="$run/munged.pid" --log-file="$log/munged.log" \
            --seed-file="$dir/state/munged.seed" ||
            {
                show_logs
                die "munged did not start"
            }
    fi
    if ! running slurmctld; then
        # -i: ignore state files that an earlier, differently configured
        # cluster left behind.
        slurmctld -f "$conf" -i || {
            show_logs
            die "slurmctld did not start"
        }
    fi
    if ! running slurmd; then
        slurmd -f "$conf" || {
            show_logs
            die "slurmd did not start"
        }
    fi
    wait_idle
    say "up ($dir): $(sinfo --noheader --format='%P: %D node(s), %c CPUs, %m MB, %l, %T' | paste -sd ';' -)"
}

stop_one() {
    local name=$1 pid
    pid=$(pid_of "$name") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            say "$name ($pid) ignored SIGTERM for 20s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
}

stop() {
    # slurmd first: it reports its jobs' ends to the controller, which
    # authenticates through munge.
    stop_one slurmd
    stop_one slurmctld
    stop_one munged
    say "stopped ($dir)"
}

status() {
    local name rc=0
    for name in munged slurmctld slurmd; do
        if pid=$(pid_of "$name"); then
            printf '%s running (pid %s)\n' "$name" "$pid"
        else
            printf '%s stopped\n' "$name"
            rc=1
        fi
    done
    if [ $rc = 0 ]; then
        sinfo
    fi
    return $rc
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
env) printf 'export SLURM_CONF=%s\n' "$conf" ;;
*)
    printf 'usage: %s start|stop|status|env\n' "$0" >&2
    exit 2
    ;;
esac

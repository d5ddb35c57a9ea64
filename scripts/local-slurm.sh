#!/usr/bin/env bash
# Installs and starts a real single-node SLURM cluster on this machine (Debian/Ubuntu, run as root),
# for tests: munged, slurmctld and slurmd as plain daemons (no systemd needed), one node named
# after `hostname -s` in one partition `debug`, no accounting (no slurmdbd: `sacct` does not work).
# Idempotent: exits at once when `sinfo` already shows the node up.
# Usage: scripts/local-slurm.sh [--restart | --stop]
#   --restart  stop the daemons first (e.g. to apply a changed slurm.conf), then start as usual
#   --stop     stop slurmd, slurmctld and munged and exit
# Environment: LOCAL_SLURM_CPUS=N advertises N CPUs instead of the real count (oversubscribes the
# machine, e.g. to run wide job arrays on a small VM); LOCAL_SLURM_PROCTRACK=pgid (default) or
# linuxproc; LOCAL_SLURM_TIMEOUT (seconds to wait for the node, default 60). These take effect when
# the daemons start (first run, or --restart).
# Logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log, /var/log/munge/munged.log.
set -euo pipefail

log() { echo "local-slurm: $*"; }
die() { echo "local-slurm: error: $*" >&2; exit 1; }

conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
log_dir=/var/log/slurm
timeout_s=${LOCAL_SLURM_TIMEOUT:-60}
proctrack=${LOCAL_SLURM_PROCTRACK:-pgid}
host=$(hostname -s)

# Daemons are found through their pid files (never by name, so nothing else gets killed); a pid
# counts only if that process has the daemon's name (a stale file may hold a reused pid).
pid_of() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0 # the daemon removes its pid file when it exits
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ] && echo "$pid"
  return 0
}
pid_alive() { [ -n "$(pid_of "$1")" ]; }
stop_pidfile() {
  local pid
  pid=$(pid_of "$1")
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do pid_alive "$1" || break; sleep 0.25; done
    if pid_alive "$1"; then
      log "$(basename "$1" .pid) did not stop in 10 s; killing it"
      kill -9 "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$1"
}

# State of our node as sinfo prints it (idle, mixed, allocated, ...; a suffix such as * or ~
# means not responding / powered down); empty when no controller runs or it does not answer
# (sinfo keeps retrying an absent controller for ~10 s, hence the pid file check first).
node_state() {
  command -v sinfo >/dev/null 2>&1 && pid_alive /run/slurmctld.pid || return 0
  timeout 10 sinfo -h -N -n "$host" -o '%T' 2>/dev/null | head -n 1 || true
}
node_up() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

action=${1:-start}
case "$action" in
  start | --restart | --stop) ;;
  *) die "unknown argument '$1' (usage: $0 [--restart | --stop])" ;;
esac

if [ "$action" = start ] && node_up; then
  log "already running: node $host is $(node_state)"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (installs packages and starts daemons)"

# One caller at a time (tests started in parallel may all call this script); a caller that waited
# finds the cluster up and leaves.
exec 9>/run/local-slurm.lock
flock 9
case "$action" in
  --restart)
    log "stopping slurmd and slurmctld"
    stop_pidfile /run/slurmd.pid
    stop_pidfile /run/slurmctld.pid ;;
  --stop)
    log "stopping slurmd, slurmctld and munged"
    stop_pidfile /run/slurmd.pid
    stop_pidfile /run/slurmctld.pid
    stop_pidfile /run/munge/munged.pid
    exit 0 ;;
  start)
    if node_up; then
      log "already running: node $host is $(node_state)"
      exit 0
    fi ;;
esac

# --- packages --------------------------------------------------------------------------------
# tini: slurmd runs under `tini -s` (a child subreaper) so that processes orphaned inside jobs are
# reaped at once; see the slurmd start below.
pkgs=(slurmctld slurmd slurm-client munge tini)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  log "installing ${missing[*]} with apt-get"
  apt_log=$(mktemp)
  if ! { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    die "apt-get failed"
  fi
  rm -f "$apt_log"
fi

# --- munge -----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  stop_pidfile /run/munge/munged.pid # a stale one that does not answer
  runuser -u munge -- /usr/sbin/munged 9>&-
  for _ in $(seq 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
munge -n | unmunge >/dev/null || die "munge does not work; see /var/log/munge/munged.log"

# --- slurm.conf ------------------------------------------------------------------------------
command -v slurmd >/dev/null || die "slurmd not found after install"
# slurmd -C prints the hardware line, e.g.
#   NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
hw=$(slurmd -C | head -n 1)
field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs)
mem=$(field RealMemory)
[ -n "$cpus" ] && [ -n "$mem" ] || die "cannot parse 'slurmd -C': $hw"
mem=$((mem - mem / 20)) # leave 5% so that slurmd's own reading is never below the configured value
if [ -n "${LOCAL_SLURM_CPUS:-}" ]; then
  # Advertise a made-up CPU count; config_overrides stops slurmd from draining the node for it.
  node_hw="CPUs=$LOCAL_SLURM_CPUS"
  cpus=$LOCAL_SLURM_CPUS
  overrides="SlurmdParameters=config_overrides"
else
  node_hw=$(sed -n 's/.*[[:space:]]\(CPUs=[0-9]* .*ThreadsPerCore=[0-9]*\).*/\1/p' <<<"$hw")
  overrides=""
fi

install -d -m 0755 "$conf_dir" "$log_dir"
install -d -m 0700 /var/spool/slurmctld /var/spool/slurmd
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by scripts/local-slurm.sh: a single-node test cluster. Edits are overwritten.
ClusterName=local
# Loopback addresses, so that nothing depends on the host name resolving.
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire+1 s before it may start again (default 120 s; minimum 5).
AuthInfo=cred_expire=10
CredType=cred/munge
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No systemd or cgroups needed: tasks are not confined. proctrack/pgid kills a job's whole
# process group at its end; proctrack/linuxproc follows the parent chain and so misses a child
# whose parent shell died first (e.g. a SIGTERM-handling python under a killed batch shell),
# which then keeps running after the job. A process that calls setsid() escapes either.
ProctrackType=proctrack/$proctrack
TaskPlugin=task/none
MpiDefault=none
$overrides

# Scheduling: CPUs and memory are consumable; each CPU gets an equal share of memory by default
# (without DefMemPerCPU a job that asks for no memory would get the whole node).
# A backfill pass every second, no batch start delay and a main pass every 2 s: a pending array
# task starts within ~0.5 s of a free CPU (defaults: 2-4 s), a requeued job ~1 s after its
# cred_expire hold (defaults: up to 15 s more).
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,batch_sched_delay=0,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
MaxArraySize=100001
MaxJobCount=200000

# No accounting (no slurmdbd).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

# Fast turnaround for tests.
JobRequeue=1
ReturnToService=2
MinJobAge=30
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10

NodeName=$host NodeAddr=127.0.0.1 $node_hw RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$new_conf" "$conf"; then
  log "writing $conf ($cpus CPUs, ${mem} MB)"
  install -m 0644 "$new_conf" "$conf"
  conf_changed=1
else
  conf_changed=0
fi

# --- daemons ---------------------------------------------------------------------------------
if ((conf_changed)) && { pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; }; then
  log "configuration changed: restarting slurmctld and slurmd"
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
fi
if ! pid_alive /run/slurmctld.pid; then
  # -c: a clean start. This is a test cluster: jobs saved by a controller that was killed (a
  # session that ended mid-test) must not be requeued into the next test run.
  log "starting slurmctld (clean state)"
  slurmctld -c 9>&-
fi
if ! pid_alive /run/slurmd.pid; then
  # srun forks a helper that outlives it; the orphan is reparented to the nearest subreaper, else
  # to PID 1. Where PID 1 is not a prompt reaper (containers, some VMs) the zombie stays in the
  # job's process group and proctrack/pgid waits for it (1 s, then 2 s more) at the end of every
  # job that used srun (all submitit jobs). tini -s above slurmd adopts and reaps such orphans.
  if command -v tini >/dev/null; then
    log "starting slurmd (under tini -s)"
    setsid tini -s -- slurmd -D </dev/null >"$log_dir/slurmd.stdout" 2>&1 9>&- &
  else
    log "starting slurmd"
    slurmd 9>&-
  fi
fi

log "waiting for node $host to be idle (up to ${timeout_s}s)"
deadline=$((SECONDS + timeout_s))
while ! node_up; do
  state=$(node_state)
  # A node left down/drained by an earlier run (with ReturnToService=2 it comes back by itself once
  # it registers with a valid configuration; this covers a drain set by hand or by an old config).
  if [[ "$state" =~ ^(down|drained|draining|drain)$ ]]; then
    scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
  fi
  if ((SECONDS >= deadline)); then
    echo "local-slurm: error: node $host not up after ${timeout_s}s (state: '${state:-no answer}')" >&2
    sinfo -N -l 2>&1 | sed 's/^/  sinfo: /' >&2 || true
    scontrol show node "$host" 2>/dev/null | grep -i reason | sed 's/^/  /' >&2 || true
    for f in "$log_dir/slurmctld.log" "$log_dir/slurmd.log" "$log_dir/slurmd.stdout"; do
      echo "--- tail of $f" >&2
      tail -n 20 "$f" >&2 2>/dev/null || true
    done
    exit 1
  fi
  sleep 0.5
done
log "ready: node $host is $(node_state) in partition debug ($cpus CPUs, ${mem} MB)"

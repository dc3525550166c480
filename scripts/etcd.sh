#!/usr/bin/env bash
# Starts and stops the etcd members that the etcd store's tests (and scripts/test.sh) use: a
# single member and a three-member cluster, on loopback ports, each member with a temporary data
# folder (on /dev/shm when it is there: tmpfs makes etcd's fsyncs free, and test data need not
# survive a reboot). Needs Debian's `etcd-server` (etcd and etcdctl 3.4 or later).
#
#   scripts/etcd.sh start [single|cluster]       start what is not running yet (idempotent), wait
#                                                until it serves, print its client endpoints
#   scripts/etcd.sh stop [single|cluster|all]    stop it and delete its data (idempotent)
#   scripts/etcd.sh endpoints [single|cluster]   print the client endpoints if it is running
#   scripts/etcd.sh pid cluster N                print the process id of member N (1, 2 or 3)
#   scripts/etcd.sh status                       what runs, where
#
# Endpoints are printed on one line, comma-separated, as `ORCHESTRA_ETCD_ENDPOINTS` takes them:
#   single   http://127.0.0.1:23790
#   cluster  http://127.0.0.1:23800,http://127.0.0.1:23802,http://127.0.0.1:23804
# Environment: ORCHESTRA_ETCD_SINGLE_PORT (23790) and ORCHESTRA_ETCD_CLUSTER_PORT (23800) move the
# ports (member i of the cluster serves clients on CLUSTER_PORT + 2(i-1) and peers on the port
# after it); ORCHESTRA_ETCD_STATE moves the state folder (pid files, logs, data).
set -euo pipefail

STATE="${ORCHESTRA_ETCD_STATE:-}"
if [ -z "$STATE" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    STATE="/dev/shm/orchestra-etcd-$(id -u)"
  else
    STATE="${TMPDIR:-/tmp}/orchestra-etcd-$(id -u)"
  fi
fi
SINGLE_PORT="${ORCHESTRA_ETCD_SINGLE_PORT:-23790}"
CLUSTER_PORT="${ORCHESTRA_ETCD_CLUSTER_PORT:-23800}"
HOST=127.0.0.1

die() { echo "scripts/etcd.sh: $*" >&2; exit 1; }

need_etcd() {
  command -v etcd >/dev/null 2>&1 ||
    die "etcd is not installed (Debian: apt-get install -y etcd-server; scripts/test.sh does it as root)"
  command -v etcdctl >/dev/null 2>&1 ||
    die "etcdctl is not installed (Debian: apt-get install -y etcd-server)"
}

members() { # the member numbers of an instance
  case "$1" in
    single) echo 1 ;;
    cluster) echo 1 2 3 ;;
    *) die "unknown instance '$1' (single or cluster)" ;;
  esac
}

client_port() { # instance member
  if [ "$1" = single ]; then echo "$SINGLE_PORT"; else echo $((CLUSTER_PORT + 2 * ($2 - 1))); fi
}

peer_port() { echo $(($(client_port "$1" "$2") + 1)); }

endpoints() {
  local list="" m
  for m in $(members "$1"); do
    list="${list:+$list,}http://$HOST:$(client_port "$1" "$m")"
  done
  echo "$list"
}

member_dir() { echo "$STATE/$1/member-$2"; }

member_pid() { # prints the pid of a live member, fails if it is not running
  local file pid
  file="$(member_dir "$1" "$2")/pid"
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid is not ours: check that it is an etcd.
  [ -r "/proc/$pid/cmdline" ] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *etcd* ]] || return 1
  echo "$pid"
}

healthy() { # instance: every member answers
  ETCDCTL_API=3 etcdctl --endpoints="$(endpoints "$1")" --dial-timeout=1s --command-timeout=2s \
    endpoint health >/dev/null 2>&1
}

initial_cluster() {
  local list="" m
  for m in $(members "$1"); do
    list="${list:+$list,}$1-$m=http://$HOST:$(peer_port "$1" "$m")"
  done
  echo "$list"
}

start_member() { # instance member
  local instance="$1" m="$2" dir state
  dir="$(member_dir "$instance" "$m")"
  mkdir -p "$dir"
  # A member whose data folder exists rejoins with it; a new one starts the cluster.
  state=new
  [ -d "$dir/data/member" ] && state=existing
  local timing=()
  if [ "$instance" = cluster ]; then
    # Quick fail-over for the fail-over tests: heartbeats every 50 ms, elections after 500 ms.
    timing=(--heartbeat-interval=50 --election-timeout=500)
  fi
  setsid etcd \
    --name "$instance-$m" \
    --data-dir "$dir/data" \
    --listen-client-urls "http://$HOST:$(client_port "$instance" "$m")" \
    --advertise-client-urls "http://$HOST:$(client_port "$instance" "$m")" \
    --listen-peer-urls "http://$HOST:$(peer_port "$instance" "$m")" \
    --initial-advertise-peer-urls "http://$HOST:$(peer_port "$instance" "$m")" \
    --initial-cluster "$(initial_cluster "$instance")" \
    --initial-cluster-token "orchestra-$instance" \
    --initial-cluster-state "$state" \
    "${timing[@]}" \
    >>"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

stop_instance() {
  local instance="$1" m pid waited
  for m in $(members "$instance"); do
    if pid="$(member_pid "$instance" "$m")"; then
      kill -TERM "$pid" 2>/dev/null || true
      kill -CONT "$pid" 2>/dev/null || true # a stopped (SIGSTOP) member handles the TERM then
      waited=0
      while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
        sleep 0.1
        waited=$((waited + 1))
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "${STATE:?}/$instance"
}

start_instance() {
  local instance="$1" m missing=() running=0
  need_etcd
  for m in $(members "$instance"); do
    if member_pid "$instance" "$m" >/dev/null; then
      running=$((running + 1))
    else
      missing+=("$m")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ] && healthy "$instance"; then
    endpoints "$instance"
    return
  fi
  if [ "$running" -eq 0 ]; then
    # Nothing of it runs: start afresh, with empty data folders.
    rm -rf "${STATE:?}/$instance"
  fi
  for m in "${missing[@]}"; do
    start_member "$instance" "$m"
  done
  local tries=0
  until healthy "$instance"; do
    for m in $(members "$instance"); do
      if ! member_pid "$instance" "$m" >/dev/null; then
        echo "scripts/etcd.sh: etcd member $instance-$m exited; its log ($(member_dir "$instance" "$m")/log) ends:" >&2
        tail -n 20 "$(member_dir "$instance" "$m")/log" >&2 || true
        stop_instance "$instance"
        exit 1
      fi
    done
    tries=$((tries + 1))
    if [ "$tries" -ge 100 ]; then
      echo "scripts/etcd.sh: etcd ($instance) did not become healthy within 20 s" >&2
      stop_instance "$instance"
      exit 1
    fi
    sleep 0.2
  done
  endpoints "$instance"
}

command="${1:-}"
case "$command" in
  start)
    start_instance "${2:-single}"
    ;;
  stop)
    case "${2:-all}" in
      all) stop_instance single; stop_instance cluster ;;
      *) members "$2" >/dev/null; stop_instance "$2" ;;
    esac
    ;;
  endpoints)
    instance="${2:-single}"
    for m in $(members "$instance"); do
      member_pid "$instance" "$m" >/dev/null || die "etcd ($instance) is not running"
    done
    endpoints "$instance"
    ;;
  pid)
    [ "$#" -eq 3 ] || die "usage: scripts/etcd.sh pid cluster N"
    [[ " $(members "$2") " == *" $3 "* ]] || die "no member $3 in $2"
    member_pid "$2" "$3" || die "member $3 of $2 is not running"
    ;;
  status)
    for instance in single cluster; do
      for m in $(members "$instance"); do
        if pid="$(member_pid "$instance" "$m")"; then
          echo "$instance-$m: running (pid $pid), client http://$HOST:$(client_port "$instance" "$m"), data $(member_dir "$instance" "$m")/data"
        else
          echo "$instance-$m: stopped"
        fi
      done
    done
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

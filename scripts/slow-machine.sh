#!/usr/bin/env bash
# Runs a command as if on a machine half as fast: the command and everything it starts (the labs' QEMUs included)
# share one CPU's worth of time — a CPU quota of one core on a machine of two — through a cgroup of the cpu controller
# (v2's cpu.max, or v1's cfs quota). Machines of this kind differ about 2x in speed; a suite that passes this way has
# no wait tuned on a fast one. Needs root (or a delegated cgroup).
#   bash scripts/slow-machine.sh npm test          TCELAB_CPU_SHARE=0.5 (of one core) to go slower still
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]   (runs it with one core's worth of CPU time)" >&2
  exit 2
fi
share=${TCELAB_CPU_SHARE:-1}
if ! [[ $share =~ ^[0-9]+(\.[0-9]+)?$ ]] || [ "$(awk -v s="$share" 'BEGIN { print (s > 0 && s <= 64) }')" != 1 ]; then
  echo "TCELAB_CPU_SHARE=$share: must be a number of cores above 0 (e.g. 1, 0.5)" >&2
  exit 2
fi
period=100000
quota=$(awk -v s="$share" -v p="$period" 'BEGIN { printf "%d", s * p }')
name="tcelab-slow-$$"
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  dir="/sys/fs/cgroup/$name"
  grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
  mkdir "$dir"
  echo "$quota $period" > "$dir/cpu.max"
elif [ -d /sys/fs/cgroup/cpu ]; then
  dir="/sys/fs/cgroup/cpu/$name"
  mkdir "$dir"
  echo "$period" > "$dir/cpu.cfs_period_us"
  echo "$quota" > "$dir/cpu.cfs_quota_us"
else
  echo "no cgroup cpu controller on this machine (neither cgroup v2 cpu.max nor v1 cpu): cannot slow it down" >&2
  exit 1
fi
# The group goes when the command is done (every process in it gone: the suite leaves no QEMU behind).
cleanup() { rmdir "$dir" 2>/dev/null || echo "slow-machine: $dir still has processes; left in place" >&2; }
trap cleanup EXIT
echo "slow-machine: $* with $share core(s) of CPU time ($dir)" >&2
# Moved in a subshell so that this script, outside the group, can remove it afterwards.
( echo "$BASHPID" > "$dir/cgroup.procs"; exec "$@" )

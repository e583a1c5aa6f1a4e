#!/bin/busybox sh
# PID 1 of the tcelab guest image (busybox, no udev, no systemd).
# Prints TCELAB-INIT-READY on the console (hvc0) once the VFIO and hotplug
# modules are loaded; the host waits for that line. Starts the guest agent on
# the virtio-serial port and respawns it if it dies, so that a crashed agent
# is a reported failure, not a dead lab.
/bin/busybox --install -s /usr/bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/hugepages /tmp /run
# drmgr takes its Dynamic Reconfiguration lock in /var/lock and logs to /var/log.
mount -t hugetlbfs hugetlbfs /dev/hugepages
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /var/lock /var/log /var/lib /run/lock
echo 1 > /proc/sys/kernel/printk_devkmsg 2>/dev/null
hostname tcelab-guest

# rpadlpar_io (RPA PHB and slot hotplug: what drmgr drives) registers a slot for each of the 256 DRCs of every PHB as
# it loads (0.45 s in the KVM lab host's inner guest); tcelab.hotplug=off (the profile's guest.hotplug: false) leaves it out.
modules="vfio vfio_iommu_spapr_tce vfio-pci"
grep -qw tcelab.hotplug=off /proc/cmdline || modules="$modules rpadlpar_io"
for m in $modules; do
  modprobe "$m" || echo "tcelab-init: modprobe $m failed"
done
# tcelab.modules=a,b: what the profile asks for besides (guest.modules; kvm_hv on a KVM lab host).
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    tcelab.modules=*)
      for m in $(echo "${arg#tcelab.modules=}" | tr ',' ' '); do
        modprobe "$m" || echo "tcelab-init: modprobe $m failed"
      done
      ;;
  esac
done

# orderly_poweroff (QMP system_powerdown → EPOW) runs /sbin/poweroff, which
# signals PID 1 with USR2; TERM is what `kill 1` sends. Both power off.
trap 'echo "tcelab-init: powering off"; sync; poweroff -f' USR2 TERM
trap 'echo "tcelab-init: rebooting"; sync; reboot -f' USR1 INT

echo "TCELAB-INIT-READY kernel=$(uname -r) machine=$(uname -m)"

# tcelab.agent=off (a reproducer bundle's try-out): no agent; a shell on the console, as a user would have.
if grep -qw tcelab.agent=off /proc/cmdline; then
  while true; do
    sh
  done
fi

# A shell on the console for a person (`tcelab console`), respawned when it exits; the agent serves the controller.
(
  while true; do
    setsid -c sh </dev/hvc0 >/dev/hvc0 2>&1
    sleep 1
  done
) &

if [ -x /usr/sbin/tcelab-agent ]; then
  (
    while true; do
      /usr/sbin/tcelab-agent
      echo "tcelab-init: agent exited with status $?; restarting in 1 s"
      sleep 1
    done
  ) &
fi

while true; do
  sleep 3600 &
  wait $!
done

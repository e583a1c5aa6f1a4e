import type { ReproRecipe } from './recipes.js';

/**
 * run.sh of a bundle: POSIX sh (busybox's is enough), root, one argument: the
 * PCI address of a device it may bind to vfio-pci. Without one it lists the
 * candidates. Its exit code is the runner's: 0 passed, 1 reproduced, 2 could not run.
 */
export function runScript(recipe: ReproRecipe): string {
  return `#!/bin/sh
# tcelab reproducer ${recipe.id}: ${recipe.subject}
# usage: sh run.sh PCI-ADDRESS     (as root; the device is bound to vfio-pci for the run and given back)
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 1 ]; then
  echo "usage: sh run.sh PCI-ADDRESS (a device in an IOMMU group that may be bound to vfio-pci for a minute)"
  echo "candidates (address  vendor:device  IOMMU group  driver):"
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d/iommu_group" ] || continue
    drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
    echo "  $(basename "$d")  $(cat "$d/vendor"):$(cat "$d/device")  $(basename "$(readlink "$d/iommu_group")")  \${drv:-none}"
  done
  exit 2
fi
if [ "$(id -u)" != 0 ]; then echo "run.sh: run it as root (it binds the device to vfio-pci and reads /dev/kmsg)"; exit 2; fi
for m in vfio vfio_iommu_spapr_tce vfio-pci; do
  [ -d "/sys/module/$(echo $m | tr - _)" ] || modprobe "$m" || echo "run.sh: modprobe $m failed"
done
if [ ! -d /sys/bus/pci/drivers/vfio-pci ]; then
  echo "run.sh: vfio-pci is not available (CONFIG_VFIO_PCI, CONFIG_VFIO_IOMMU_SPAPR_TCE)"; exit 2
fi
dev=/sys/bus/pci/devices/$1
if [ ! -e "$dev/iommu_group" ]; then echo "run.sh: $1 is not a PCI device in an IOMMU group (sh run.sh lists them)"; exit 2; fi
echo "run.sh: device $1 ($(cat "$dev/vendor"):$(cat "$dev/device"), IOMMU group $(basename "$(readlink "$dev/iommu_group")"))"
echo "run.sh: $(uname -srm) on $(cat /proc/device-tree/model 2>/dev/null | tr -d '\\0')"
"$here/tcelab-agent" run "$here/steps.jsonl" device="$1"
rc=$?
case $rc in
  0) echo "run.sh: every check passed: the defect did not reproduce" ;;
  1) echo "run.sh: the defect reproduced (not ok lines above)" ;;
  *) echo "run.sh: the steps could not run (exit $rc)" ;;
esac
exit $rc
`;
}

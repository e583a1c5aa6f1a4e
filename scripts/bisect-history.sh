#!/usr/bin/env bash
# A kernel history to bisect, on top of a git repository of kernel source at its HEAD (tcelab kernel source
# debian-source:trixie prints one; Debian's 6.12 source is what the edits below were written against):
#   c1  Documentation only
#   c2  a comment in arch/powerpc/kernel/iommu.c (built in: vmlinux is relinked)
#   c3  a syntax error in drivers/vfio/vfio_iommu_spapr_tce.c: the kernel does not build
#   c4  the syntax error fixed
#   c5  tce_iommu_register_pages() answers 0 instead of EBUSY when the container already has the region: a second
#       registration of the same region in one container "succeeds" (and registers nothing)
#   c6  a comment in drivers/vfio/vfio_main.c
# good = the base, bad = c6: the first bad commit is c5 and c3 must be skipped. The history is a `git clone --shared`
# of the base (its objects borrowed, not copied) with fixed authors and dates: the same base gives the same commits.
#
# Usage: scripts/bisect-history.sh BASE_REPO OUT_DIR
# Prints "base <commit>" and "c1 <commit>" … "c6 <commit>", one a line. OUT_DIR must not exist.
set -euo pipefail
base=${1:?usage: bisect-history.sh BASE_REPO OUT_DIR}
out=${2:?usage: bisect-history.sh BASE_REPO OUT_DIR}
[ -e "$out" ] && { echo "bisect-history: $out exists" >&2; exit 2; }
git clone -q --shared "$base" "$out"
cd "$out"
export LC_ALL=C GIT_AUTHOR_NAME='tcelab bisect history' GIT_AUTHOR_EMAIL=tcelab@localhost
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
git checkout -q -B bisect-history
echo "base $(git rev-parse HEAD)"

# One edit of one file: a perl substitution that must change exactly one line.
edit() {
  local file=$1 expr=$2
  perl -0pi -e "\$n = ($expr); die \"bisect-history: $file: the edit matched \$n times, not once\\n\" unless \$n == 1" "$file"
}

commit() {
  local n=$1 subject=$2
  export GIT_AUTHOR_DATE="2026-12-0$n 12:00:00 +0000" GIT_COMMITTER_DATE="2026-12-0$n 12:00:00 +0000"
  git -c commit.gpgsign=false -c core.hooksPath=/dev/null commit -q -a -m "$subject"
  echo "c$n $(git rev-parse HEAD)"
}

spapr=drivers/vfio/vfio_iommu_spapr_tce.c

edit Documentation/driver-api/vfio.rst 's/\z/\nA note added by tcelab'"'"'s bisect history (c1).\n/'
commit 1 'Documentation: vfio: a note'

edit arch/powerpc/kernel/iommu.c 's|^( \* Dynamic DMA mapping support, bus-independent parts\.\n)|$1 * (A comment from tcelab'"'"'s bisect history, c2.)\n|m'
commit 2 'powerpc/iommu: a comment'

edit "$spapr" 's/^(\tunsigned long entries = size >> PAGE_SHIFT);$/$1/m'
commit 3 'vfio/spapr_tce: a change that does not build'

edit "$spapr" 's/^(\tunsigned long entries = size >> PAGE_SHIFT)$/$1;/m'
commit 4 'vfio/spapr_tce: fix the build'

# In tce_iommu_register_pages(): the region is already in this container's prereg_list.
edit "$spapr" 's/(\t\t\tif \(tcemem->mem == mem\) \{\n\t\t\t\tret = )-EBUSY;/${1}0;/'
commit 5 'vfio/spapr_tce: a second registration of a region is not an error'

edit drivers/vfio/vfio_main.c 's|^(// SPDX-License-Identifier: GPL-2.0-only\n)|$1// A comment from tcelab'"'"'s bisect history (c6).\n|'
commit 6 'vfio: a comment'

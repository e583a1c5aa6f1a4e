import { describe, expect, it } from 'vitest';
import { KVM_VFIO_RELEASE_WARNING } from '../../src/scenario/procedures/kvm-vfio-early-exit.js';

describe("defect 3's WARNING as each kernel prints it", () => {
  it('is recognised whether its caller was inlined or not, and nothing else in vfio.c is', () => {
    for (const line of [
      // Debian 6.12.107: inlined into kvm_vfio_release.
      'WARNING: CPU: 0 PID: 61 at arch/powerpc/kvm/../../../virt/kvm/vfio.c:103 kvm_vfio_release+0x1a8/0x1c0 [kvm]',
      // Debian 7.2.11 and 7.3~rc7.
      'WARNING: arch/powerpc/kvm/../../../virt/kvm/vfio.c:103 at kvm_vfio_file_free.isra.0+0x118/0x130 [kvm], CPU#0: qemu',
      // 6.12.107 built with the lab configuration: not inlined.
      'WARNING: CPU: 0 PID: 61 at arch/powerpc/kvm/../../../virt/kvm/vfio.c:103 kvm_spapr_tce_release_vfio_group+0x60/0x78 [kvm]',
    ])
      expect(KVM_VFIO_RELEASE_WARNING.test(line), line).toBe(true);
    expect(KVM_VFIO_RELEASE_WARNING.test('WARNING: CPU: 0 PID: 1 at virt/kvm/vfio.c:250 kvm_vfio_group_add+0x10/0x20 [kvm]')).toBe(false);
  });
});

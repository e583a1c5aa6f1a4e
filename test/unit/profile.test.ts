import { describe, expect, it } from 'vitest';
import { validateProfile, loadProfile, listProfiles } from '../../src/qemu/profile.js';
import { buildArgv, runtimePaths } from '../../src/qemu/argv.js';
import { fieldOf } from '../helpers/input-error.js';

const base = () => ({
  qemu: { accel: 'tcg', cpu: 'power9', memoryMiB: 1024 },
  phbs: [{ id: 'phb1', index: 1 }],
  devices: [{ id: 'edu1', driver: 'edu', phb: 'phb1' }],
});

describe('profile validation', () => {
  it('applies defaults', () => {
    const p = validateProfile(base(), 't');
    expect(p.qemu.firmware).toBe('vof');
    expect(p.phbs[0]!.ddw).toBe(true);
    expect(p.guest.bootTimeoutSec).toBe(120);
  });

  it('takes the kernel and the guest QEMU under test as inputs, and names them when bad', () => {
    const guest = (g: Record<string, unknown>) => ({ ...base(), guest: { ...(base() as { guest?: object }).guest, ...g } });
    expect(validateProfile(guest({ image: 'with-qemu:sid', kernel: 'debian:experimental/64k' }), 't').guest).toMatchObject({
      image: 'with-qemu:sid',
      kernel: 'debian:experimental/64k',
    });
    expect(fieldOf(() => validateProfile(guest({ image: 'with-qemu:' }), 't'))).toBe('guest.image');
    expect(fieldOf(() => validateProfile(guest({ image: 'qemu' }), 't'))).toBe('guest.image');
    expect(fieldOf(() => validateProfile(guest({ kernel: 'debian:sid/16k' }), 't'))).toBe('guest.kernel');
  });

  it('names the bad field', () => {
    expect(fieldOf(() => validateProfile({ ...base(), colour: 'red' }, 't'))).toBe('colour');
    expect(fieldOf(() => validateProfile({ ...base(), qemu: { ...base().qemu, memoryMiB: '1G' } }, 't'))).toBe('qemu.memoryMiB');
    expect(fieldOf(() => validateProfile({ ...base(), qemu: { ...base().qemu, memoryMiB: 1e12 } }, 't'))).toBe('qemu.memoryMiB');
    expect(fieldOf(() => validateProfile({ ...base(), qemu: { ...base().qemu, memoryMiB: 768 + 128 } }, 't'))).toBe('qemu.memoryMiB');
    expect(fieldOf(() => validateProfile({ ...base(), devices: [{ id: 'd', driver: 'edu', phb: 'phb9' }] }, 't'))).toBe('devices[0].phb');
    expect(fieldOf(() => validateProfile({ ...base(), devices: [{ id: 'd', driver: 'vfio-pci', phb: 'phb1' }] }, 't'))).toBe(
      'devices[0].host',
    );
    expect(
      fieldOf(() =>
        validateProfile(
          {
            ...base(),
            phbs: [
              { id: 'p', index: 1 },
              { id: 'q', index: 1 },
            ],
            devices: [],
          },
          't',
        ),
      ),
    ).toBe('phbs[1].index');
    expect(fieldOf(() => validateProfile({ ...base(), qemu: { ...base().qemu, machine: { 'x-vof': 'on,evil=1' } } }, 't'))).toBe(
      'qemu.machine.x-vof',
    );
  });

  it('substitutes variables and reports an unset one by field', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a profile variable, substituted by the loader
    const raw = { ...base(), devices: [{ id: 'h', driver: 'vfio-pci', phb: 'phb1', host: '${BDF}' }] };
    expect(validateProfile(raw, 't', { BDF: '0001:01:00.0' }).devices[0]!.host).toBe('0001:01:00.0');
    expect(fieldOf(() => validateProfile(raw, 't', {}))).toBe('devices[0].host');
    expect(fieldOf(() => validateProfile(raw, 't', { BDF: 'not-a-bdf' }))).toBe('devices[0].host');
  });

  it('validates a nested lab host: the inner machine by the same rules, its fields named under inner.', () => {
    const inner = () => ({
      qemu: { accel: 'tcg', cpu: 'power9', memoryMiB: 256, startPaused: true },
      guest: { boot: false },
      phbs: [{ id: 'phb1', index: 1, dmaWindowMiB: 64 }],
      devices: [{ id: 'hostdev0', driver: 'vfio-pci', phb: 'phb1', host: '0001:00:00.0' }],
    });
    const outer = (i: unknown, image = 'with-qemu') => ({ ...base(), guest: { image }, inner: i });
    const p = validateProfile(outer(inner()), 'n');
    expect(p.inner!.name).toBe('n.inner');
    expect(p.inner!.guest.boot).toBe(false);
    expect(fieldOf(() => validateProfile(outer({ ...inner(), qemu: { ...inner().qemu, memoryMiB: 'big' } }), 'n'))).toBe(
      'inner.qemu.memoryMiB',
    );
    expect(
      fieldOf(() =>
        validateProfile(outer({ ...inner(), devices: [{ id: 'h', driver: 'vfio-pci', phb: 'nope', host: '0001:00:00.0' }] }), 'n'),
      ),
    ).toBe('inner.devices[0].phb');
    expect(fieldOf(() => validateProfile(outer({ ...inner(), inner: {} }), 'n'))).toBe('inner.inner');
    expect(fieldOf(() => validateProfile(outer(inner(), 'base'), 'n'))).toBe('guest.image');
    expect(fieldOf(() => validateProfile(outer({ ...inner(), devices: [] }), 'n'))).toBe('inner.devices');
    // The passed-through device must be one of this guest's: domain 0002 is no PHB of the outer profile.
    expect(fieldOf(() => validateProfile(outer({ ...inner(), devices: [{ ...inner().devices[0], host: '0002:00:00.0' }] }), 'n'))).toBe(
      'inner.devices[0].host',
    );
  });

  it('loads every shipped profile', async () => {
    const names = await listProfiles();
    expect(names).toEqual(expect.arrayContaining(['emulated', 'lab-host-vfio', 'nested-lab-host']));
    for (const n of names) await loadProfile(n, { TCELAB_VFIO_HOST: '0001:01:00.0' });
  });
});

describe('argv', () => {
  it('a machine that does not boot has no kernel and no agent port; startPaused adds -S', async () => {
    const p = (await loadProfile('nested-lab-host')).inner!;
    const argv = buildArgv(p, runtimePaths('/local/lab-1', '/tmp/tcelab-lab-x'), undefined, 'inner');
    expect(argv).not.toContain('-kernel');
    expect(argv.join(' ')).not.toMatch(/virtserialport|agent\.sock/);
    expect(argv).toContain('-S');
    // QEMU's own files are on the host that runs it, not in the controller's dir.
    expect(argv).toContain('unix:/tmp/tcelab-lab-x/qmp.sock,server=on,wait=off');
    expect(argv).toContain('/tmp/tcelab-lab-x/qemu.pid');
    expect(argv).toContain('spapr-pci-host-bridge,index=1,id=phb1,ddw=on,dma_win_size=0x4000000');
    expect(argv).toContain('vfio-pci,bus=phb1.0,id=hostdev0,host=0001:00:00.0');
    expect(() => buildArgv(p.name ? { ...p, guest: { ...p.guest, boot: true } } : p, runtimePaths('/l'), undefined, 'x')).toThrow(
      /needs its kernel and initrd/,
    );
  });

  it('builds the emulated lab command line', async () => {
    const p = await loadProfile('emulated');
    const argv = buildArgv(p, runtimePaths('/run/x'), { kernel: '/k', initrd: '/i' }, 'tcelab-x');
    const joined = argv.join(' ');
    expect(joined).toContain('-M pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off,x-vof=on,usb=off');
    expect(joined).toContain('-accel tcg -cpu power9 -m 1024M');
    expect(joined).toContain('-qmp unix:/run/x/qmp.sock,server=on,wait=off');
    expect(joined).toContain('-device spapr-pci-host-bridge,index=1,id=phb1,ddw=on');
    expect(joined).toContain('-device edu,bus=phb1.0,id=edu1');
    expect(joined).toContain('-kernel /k -initrd /i');
    expect(joined).not.toContain('mem-lock');
  });

  it('builds the lab-host command line with KVM and vfio-pci', async () => {
    const p = await loadProfile('lab-host-vfio', { TCELAB_VFIO_HOST: '0001:01:00.0' });
    const argv = buildArgv(p, runtimePaths('/r'), { kernel: '/k', initrd: '/i' }, 'tcelab-y');
    const joined = argv.join(' ');
    expect(joined).toContain('-accel kvm -cpu host');
    expect(joined).not.toContain('cap-cfpc');
    expect(joined).not.toContain('x-vof');
    expect(joined).toContain('-device vfio-pci,bus=phb1.0,id=hostdev0,host=0001:01:00.0');
  });
});

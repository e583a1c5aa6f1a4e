import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveDebianKernel } from '../../src/kernel/debian-kernel.js';
import { kernelFacts, unmetRequirements, VFIO_SPAPR_REQUIREMENTS, RPA_HOTPLUG_REQUIREMENTS } from '../../src/kernel/kernel-facts.js';
import { formatKernelSpec, kernelKey, parseKernelSpec } from '../../src/kernel/kernel-spec.js';
import { parsePackagesIndex } from '../../src/debian/deb-package.js';
import { InputError } from '../../src/util/errors.js';
import { packageRoot } from '../../src/util/paths.js';

/** Real entries of the mirror's ppc64el Packages indexes (2026-11-23), trimmed to the kernel packages. */
const index = (suite: string) =>
  parsePackagesIndex(readFileSync(join(packageRoot, 'test/fixtures/debian-index', `${suite}.Packages`), 'utf8'));
const hash = () => 'abcdef0123456789';

describe('kernel specs', () => {
  it('parses suites, page sizes, version globs, local .debs and builds', () => {
    expect(parseKernelSpec('debian:trixie')).toEqual({ kind: 'debian', suite: 'trixie', flavour: 'powerpc64le', versionGlob: undefined });
    expect(parseKernelSpec('debian:experimental/64k')).toMatchObject({ suite: 'experimental', flavour: 'powerpc64le-64k' });
    expect(parseKernelSpec('debian:trixie-backports@7.2.9*')).toMatchObject({ suite: 'trixie-backports', versionGlob: '7.2.9*' });
    expect(parseKernelSpec('deb:/k/a.deb,/k/b.deb')).toEqual({ kind: 'deb', files: ['/k/a.deb', '/k/b.deb'] });
    expect(parseKernelSpec('local:/src/linux/vmlinux,/tmp/mods')).toEqual({
      kind: 'local',
      vmlinux: '/src/linux/vmlinux',
      modulesRoot: '/tmp/mods',
    });
    for (const text of ['debian:sid/64k@7.2.*', 'debian:trixie', 'local:/v']) expect(formatKernelSpec(parseKernelSpec(text))).toBe(text);
  });

  it('names each kernel for its image dir and labels', () => {
    expect(kernelKey(parseKernelSpec('debian:trixie'), hash)).toBe('trixie');
    expect(kernelKey(parseKernelSpec('debian:experimental/64k'), hash)).toBe('experimental-64k');
    expect(kernelKey(parseKernelSpec('debian:sid@7.2.*'), hash)).toBe('sid@7.2.x');
    expect(kernelKey(parseKernelSpec('local:/v'), hash)).toBe('local-abcdef012345');
  });

  it('refuses bad specs, naming the option', () => {
    for (const bad of [
      'trixie',
      'debian:',
      'debian:Trixie',
      'debian:sid/16k',
      'deb:kernel.tar',
      'local:',
      'local:a,b,c',
      'debian:sid@7 2',
    ]) {
      const err = (() => {
        try {
          parseKernelSpec(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(err, bad).toBeInstanceOf(InputError);
      expect((err as InputError).message).toMatch(/^--kernel: /);
    }
  });
});

describe('the Debian kernel resolver, on real index entries', () => {
  it('6.12 (trixie): one package, the newest of the flavour, never -dbg', () => {
    const k = resolveDebianKernel(index('trixie'), { suite: 'trixie', flavour: 'powerpc64le' });
    expect(k).toMatchObject({
      layout: 'single',
      abi: '6.12.107+deb13',
      image: { name: 'linux-image-6.12.107+deb13-powerpc64le', version: '6.12.107-1' },
    });
    expect(k.packages.map((p) => p.name)).toEqual(['linux-image-6.12.107+deb13-powerpc64le']);
    const k64 = resolveDebianKernel(index('trixie'), { suite: 'trixie', flavour: 'powerpc64le-64k' });
    expect(k64.image.name).toBe('linux-image-6.12.107+deb13-powerpc64le-64k');
    // An older one by its version.
    expect(resolveDebianKernel(index('trixie'), { suite: 'trixie', flavour: 'powerpc64le', versionGlob: '6.12.94*' }).image.version).toBe(
      '6.12.94-1',
    );
  });

  it('7.x (trixie-backports, experimental): the image package and the binary, modules and base parts at its version', () => {
    const bpo = resolveDebianKernel(index('trixie-backports'), { suite: 'trixie-backports', flavour: 'powerpc64le' });
    expect(bpo.layout).toBe('split');
    expect(bpo.image.version).toBe('7.2.11-1~bpo13+1');
    expect(bpo.packages.map((p) => `${p.name} ${p.version}`)).toEqual([
      'linux-binary-7.2.11+deb13-powerpc64le 7.2.11-1~bpo13+1',
      'linux-modules-7.2.11+deb13-powerpc64le 7.2.11-1~bpo13+1',
      'linux-base-7.2.11+deb13-powerpc64le 7.2.11-1~bpo13+1',
    ]);
    const older = resolveDebianKernel(index('trixie-backports'), {
      suite: 'trixie-backports',
      flavour: 'powerpc64le-64k',
      versionGlob: '7.2.6-*',
    });
    expect(older.packages.map((p) => p.name)).toEqual([
      'linux-binary-7.2.6+deb13-powerpc64le-64k',
      'linux-modules-7.2.6+deb13-powerpc64le-64k',
      'linux-base-7.2.6+deb13-powerpc64le-64k',
    ]);
    const exp = resolveDebianKernel(index('experimental'), { suite: 'experimental', flavour: 'powerpc64le-64k' });
    expect(exp).toMatchObject({ layout: 'split', abi: '7.3', image: { version: '7.3~rc7-1~exp1' } });
    for (const p of exp.packages) expect(p.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('says what the mirror has when nothing matches', () => {
    expect(() =>
      resolveDebianKernel(index('trixie-backports'), { suite: 'trixie-backports', flavour: 'powerpc64le', versionGlob: '7.9.*' }),
    ).toThrow(/no version matches 7\.9\.\* \(the mirror has 7\.2\.11-1~bpo13\+1, .*7\.2\.6-1~bpo13\+1/);
  });
});

describe('kernel facts and requirements', () => {
  const config =
    'CONFIG_VFIO_CONTAINER=y\nCONFIG_VFIO_IOMMU_SPAPR_TCE=m\n# CONFIG_IOMMUFD is not set\nCONFIG_PPC_64K_PAGES=y\nCONFIG_VFIO_PCI=m\n';
  it('reads page size, config values and where each module is', () => {
    const f = kernelFacts({
      release: '7.3-powerpc64le-64k',
      configText: config,
      moduleFiles: new Set(['vfio_iommu_spapr_tce', 'vfio_pci']),
      builtinText: 'kernel/drivers/vfio/vfio.ko\n',
      source: { spec: 'debian:experimental/64k' },
    });
    expect(f.pageSize).toBe(65536);
    expect(f.config).toMatchObject({ VFIO_CONTAINER: 'y', VFIO_IOMMU_SPAPR_TCE: 'm', IOMMUFD: 'not set', PPC_64K_PAGES: 'y' });
    expect(f.modules).toEqual({
      kvm_hv: 'missing',
      vfio: 'builtin',
      vfio_iommu_spapr_tce: 'module',
      vfio_pci: 'module',
      rpadlpar_io: 'missing',
    });
    expect(unmetRequirements(f, VFIO_SPAPR_REQUIREMENTS)).toEqual([]);
    expect(unmetRequirements(f, RPA_HOTPLUG_REQUIREMENTS)).toEqual([
      'CONFIG_HOTPLUG_PCI_RPA (not set)',
      'CONFIG_HOTPLUG_PCI_RPA_DLPAR (not set)',
      'module rpadlpar_io',
    ]);
  });
});

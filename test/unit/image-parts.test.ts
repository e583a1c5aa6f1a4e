import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { writeCpio, readCpio } from '../../src/image/cpio.js';
import { moduleInfo, modulesDep } from '../../src/image/kmod.js';
import { compareDebianVersions } from '../../src/debian/debian-version.js';
import { parseAptSources, pickDebianMirror } from '../../src/debian/apt-sources.js';
import { parsePackagesIndex } from '../../src/debian/deb-package.js';
import { readElfDeps } from '../../src/image/elf.js';

describe('cpio newc', () => {
  it('round-trips files, dirs, symlinks and device nodes', () => {
    const buf = writeCpio([
      { path: '/init', type: 'file', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { path: '/dev', type: 'dir' },
      { path: '/dev/console', type: 'char', major: 5, minor: 1 },
      { path: '/bin', type: 'symlink', target: 'usr/bin' },
    ]);
    expect(buf.length % 4).toBe(0);
    const back = readCpio(buf);
    expect(back.map((e) => e.name)).toEqual(['bin', 'dev', 'dev/console', 'init']);
    const init = back.find((e) => e.name === 'init')!;
    expect(init.data.toString()).toBe('#!/bin/sh\n');
    expect(init.mode).toBe(0o100755);
    const con = back.find((e) => e.name === 'dev/console')!;
    expect([con.rdevMajor, con.rdevMinor]).toEqual([5, 1]);
    expect(back.find((e) => e.name === 'bin')!.data.toString()).toBe('usr/bin');
  });
});

describe('kernel module deps', () => {
  it('reads name= and depends= from .modinfo', () => {
    const ko = Buffer.from('\x7fELF....\0license=GPL\0depends=vfio-pci-core,vfio\0name=vfio_pci\0vermagic=6.12\0', 'latin1');
    expect(moduleInfo(ko)).toEqual({ name: 'vfio_pci', depends: ['vfio-pci-core', 'vfio'] });
  });

  it('writes modules.dep with transitive deps and fails on a missing one', () => {
    const mods = [
      { relPath: 'kernel/drivers/vfio/vfio.ko', name: 'vfio', depends: [] },
      { relPath: 'kernel/drivers/vfio/pci/vfio-pci-core.ko', name: 'vfio_pci_core', depends: ['vfio'] },
      { relPath: 'kernel/drivers/vfio/pci/vfio-pci.ko', name: 'vfio_pci', depends: ['vfio-pci-core', 'vfio'] },
    ];
    const dep = modulesDep(mods);
    expect(dep).toContain('kernel/drivers/vfio/vfio.ko:\n');
    expect(dep).toMatch(/vfio-pci\.ko: \S*vfio-pci-core\.ko \S*vfio\.ko/);
    expect(() => modulesDep([{ relPath: 'a.ko', name: 'a', depends: ['b'] }])).toThrow(/needs b/);
  });
});

describe('Debian versions', () => {
  it.each([
    ['6.12.107-1', '6.12.94-1', 1],
    ['1:1.0', '2.0', 1],
    ['1.0~rc1', '1.0', -1],
    ['1.0-1', '1.0-1', 0],
    ['2.41-12+deb13u4', '2.41-12', 1],
    ['1.0a', '1.0+', -1],
  ])('%s vs %s', (a, b, want) => {
    expect(Math.sign(compareDebianVersions(a, b))).toBe(want);
  });
});

describe('apt sources', () => {
  it('finds the main Debian archive in deb822 and list formats', () => {
    const deb822 =
      'Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: ' +
      'http://mirror.example/debian-security\nSuites: bookworm-security\n';
    expect(pickDebianMirror(parseAptSources(deb822, 'deb822'))).toBe('http://mirror.example/debian');
    const list = '# comment\ndeb [arch=amd64] http://other.example/debian trixie main\n';
    expect(pickDebianMirror(parseAptSources(list, 'list'))).toBe('http://other.example/debian');
    expect(pickDebianMirror(parseAptSources('deb https://vendor.example/apt cloud-sdk main\n', 'list'))).toBeUndefined();
  });

  it('parses a Packages paragraph with alternatives and version constraints', () => {
    const [p] = parsePackagesIndex(
      'Package: powerpc-ibm-utils\nVersion: 1.3.13-1\nArchitecture: ppc64el\nDepends: bash (>= 3), libc6 (>= 2.38), ' +
        'a | b\nFilename: pool/x.deb\nSize: 10\nSHA256: ab\n',
    );
    expect(p).toMatchObject({
      name: 'powerpc-ibm-utils',
      version: '1.3.13-1',
      size: 10,
      sha256: 'ab',
      depends: [['bash'], ['libc6'], ['a', 'b']],
    });
  });
});

describe('ELF deps', () => {
  it('reads the interpreter and DT_NEEDED of a dynamically linked binary', () => {
    const deps = readElfDeps(readFileSync(process.execPath));
    expect(deps.interpreter).toMatch(/ld-linux|ld64/);
    expect(deps.needed).toContain('libc.so.6');
  });
});

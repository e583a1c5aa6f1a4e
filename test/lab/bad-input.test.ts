import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';
import { runtimeDirsIn, TEST_ROOT_PREFIX } from '../helpers/lab.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');
const dir = scratchDir('bad');
const root = mkdtempSync(TEST_ROOT_PREFIX);

function tcelab(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    timeout: 60_000,
  });
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** A suite the mirror lacks: named with the field it came from, and the suites the mirror has kernels in. */
const noSuchSuite = (field: string) =>
  new RegExp(
    `${field}: debian:nosuchsuite: the Debian mirror \\S+ has no suite "nosuchsuite".*\\n {2}what to do: ` +
      'the suites the mirror has ppc64el kernels in: .*\\btrixie\\b.*\\bsid\\b',
  );

/** A file that is a vmlinux by name only (a local: kernel's modules root is checked after it), and a bundle's files. */
const vmlinux = file('vmlinux', '');
const bundle = mkdtempSync(join(dir, 'bundle-'));
for (const f of ['run.sh', 'steps.jsonl', 'tcelab-agent']) writeFileSync(join(bundle, f), '');

const goodProfile = {
  qemu: { accel: 'tcg', cpu: 'power9', memoryMiB: 1024 },
  phbs: [{ id: 'phb1', index: 1 }],
  devices: [{ id: 'edu1', driver: 'edu', phb: 'phb1' }],
};

// Profiles: [what is wrong, the profile, the field the error must name].
const profiles: Array<[string, unknown, RegExp]> = [
  ['unknown field', { ...goodProfile, qmeu: {} }, /qmeu: is not a known field/],
  ['wrong type', { ...goodProfile, qemu: { ...goodProfile.qemu, memoryMiB: '1G' } }, /qemu\.memoryMiB: must be an integer/],
  ['huge value', { ...goodProfile, qemu: { ...goodProfile.qemu, memoryMiB: 2 ** 40 } }, /qemu\.memoryMiB: must be between 256 and 1048576/],
  [
    'memory pseries cannot lay out',
    { ...goodProfile, qemu: { ...goodProfile.qemu, memoryMiB: 896 } },
    /qemu\.memoryMiB: must be a multiple of 256 \(pseries' memory block size\), got 896/,
  ],
  [
    'huge array',
    { ...goodProfile, phbs: Array.from({ length: 40 }, (_, i) => ({ id: `p${i}`, index: i + 1 })) },
    /phbs: has 40 entries; at most 31/,
  ],
  [
    'injection through an option',
    { ...goodProfile, qemu: { ...goodProfile.qemu, machine: { usb: 'off,accel=kvm' } } },
    /qemu\.machine\.usb/,
  ],
  [
    'dangling reference',
    { ...goodProfile, devices: [{ id: 'd', driver: 'edu', phb: 'nowhere' }] },
    /devices\[0\]\.phb: "nowhere" is not one of the profile's phbs/,
  ],
  ['not an object', [1, 2], /\(top level\): must be an object/],
  [
    'a QEMU spec that is no suite',
    { ...goodProfile, qemu: { ...goodProfile.qemu, binary: 'debian:Trixie!' } },
    /qemu\.binary: "debian:Trixie!" is not valid: a path, a name on PATH, or debian:<suite>/,
  ],
  [
    'a module the image does not carry',
    { ...goodProfile, guest: { modules: ['kvm_hv'] } },
    /guest\.modules\[0\]: kvm_hv is not in the "base" image \(it carries no extra modules; kvm-host carries kvm_hv\)/,
  ],
  // A kernel spec that cannot resolve is refused before anything is built, naming the profile's field.
  [
    'a kernel suite the mirror lacks',
    { ...goodProfile, guest: { kernel: 'debian:nosuchsuite' } },
    /guest\.kernel: debian:nosuchsuite: the Debian mirror \S+ has no suite "nosuchsuite"/,
  ],
  [
    'a local kernel that is not there',
    { ...goodProfile, guest: { kernel: 'local:/nonexistent/vmlinux' } },
    /guest\.kernel: local:\/nonexistent\/vmlinux: \/nonexistent\/vmlinux does not exist \(the vmlinux\)/,
  ],
  [
    'huge pages that are no boolean',
    { ...goodProfile, qemu: { ...goodProfile.qemu, hugepages: 'yes' } },
    /qemu\.hugepages: must be true or false, got the string "yes"/,
  ],
];

describe('bad input gets a clear error naming the field, never a stack trace, and no lab', () => {
  for (const [what, profile, field] of profiles) {
    it(`profile: ${what}`, () => {
      const r = tcelab('run', file(`p-${what.replace(/\W/g, '_')}.json`, JSON.stringify(profile, null, 2)));
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(field);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('profile: malformed JSON names line and column', () => {
    const r = tcelab('run', file('p-syntax.json', '{\n  "qemu": { "accel": "tcg",, }\n}'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/line 2, column \d+: is not valid JSON/);
  });

  const scenarios: Array<[string, string, RegExp]> = [
    ['unknown step', '{"description": "x",\n "steps": [\n {"step": "explode"}]}', /steps\[0\]\.step \(line 3\): must be one of/],
    [
      'missing field',
      '{"description": "x",\n "steps": [\n {"step": "alloc", "worker": "w", "as": "r"}]}',
      /steps\[0\]\.sizeMiB \(line 3\): is required/,
    ],
    ['wrong type', '{"description": "x", "steps": [{"step": "sleep", "ms": "soon"}]}', /steps\[0\]\.ms \(line 1\): must be an integer/],
    [
      'bad errno',
      '{"description": "x", "steps": [{"step": "register", "worker": "w", "region": "r", "expectError": "busy"}]}',
      /expectError.*an errno name/,
    ],
    ['unknown procedure', '{"description": "x", "steps": [{"step": "do", "procedure": "nope"}]}', /unknown procedure "nope"/],
  ];
  for (const [what, text, field] of scenarios) {
    it(`scenario: ${what}`, () => {
      const r = tcelab('run', file(`s-${what.replace(/\W/g, '_')}.json`, text));
      expect([1, 2]).toContain(r.status);
      expect(r.stderr).toMatch(field);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  const flags: Array<[string[], RegExp]> = [
    [['run', 'window-map-release', '--repeat', '0'], /--repeat: 0: must be an integer from 1 to 1000/],
    [['run', 'window-map-release', '--set', 'oops'], /--set: oops: must be key=value/],
    [['run', 'window-map-release', '--live', 'abc'], /--live: abc: must be a TCP port/],
    [['run', 'window-map-release', '--profile', 'nope'], /profile nope: no such profile/],
    [['qmp', 'emulated', 'query-status', '[1]'], /QMP arguments: json: must be a JSON object/],
    [['hotplug', 'phb', 'add', '2', '--lab', '/nonexistent'], /no control socket at \/nonexistent\/control\.sock/],
    [['report', '/nonexistent'], /report \/nonexistent: no results\.json there/],
    // A profile boot names its profile as the target or with --profile, never silently the default.
    [['run', '--profile', '/nonexistent/p.json'], /tcelab run: --profile: no such profile: \/nonexistent\/p\.json/],
    [['run', 'emulated', '--profile', 'nested-lab-host'], /--profile: boots one profile: emulated is one already/],
    [['qemu', 'stage', 'debian:Trixie!'], /tcelab qemu stage: debian:Trixie!: must be debian:<suite>/],
  ];
  // Scenario options are typed and known: refused before any image is built or lab started, exit 2.
  const options: Array<[string[], RegExp]> = [
    [
      ['run', 'prereg-accounting', '--set', 'sizeMiB=abc'],
      /scenario prereg-accounting: --set sizeMiB: must be an integer, got the string "abc"/,
    ],
    [
      ['run', 'prereg-accounting', '--set', 'nosuchoption=1'],
      /--set nosuchoption: is not an option of this scenario\n {2}what to do: its options: sizeMiB, orphanWatchMs, seedFaults/,
    ],
    [['run', 'prereg-accounting', '--set', 'seedFaults=nope'], /seedFaults: has no seedable fault "nope"/],
    [['run', 'window-map-release', '--set', 'sizeMiB=4'], /this scenario takes no options/],
    [['run', 'nosuch'], /tcelab run: nosuch: is neither a scenario nor a profile/],
    // The kernel and QEMU under test are inputs like any other.
    [
      ['run', 'prereg-accounting', '--kernel', 'trixie'],
      /--kernel: trixie: must start with debian:, deb:, local:, tree: or debian-source:/,
    ],
    [['run', 'prereg-accounting', '--kernel', 'debian:sid/16k'], /--kernel: debian:sid\/16k: must be debian:<suite>\[\/4k\|\/64k\]/],
    [['run', 'prereg-accounting', '--qemu', '/nonexistent/qemu'], /--qemu: \/nonexistent\/qemu: does not exist/],
    [['matrix', 'prereg-accounting', '--kernels', 'debian:trixie,nope'], /--kernels: nope: must start with debian:/],
    [['matrix', 'hostile-guest', '--kernels', 'debian:trixie', '--profile', 'nosuch'], /--profile: no such profile: nosuch/],
    [['matrix', '--kernels', 'debian:trixie'], /tcelab matrix: \(no scenario\): name the scenarios to run, or --all/],
    [['guest', 'build', '--kernel', 'local:'], /--kernel: local:: must be local:<vmlinux>/],
    // A spec that parses but cannot resolve is bad input too: a suite the mirror lacks (it says which it has), a missing path.
    [['run', 'prereg-accounting', '--kernel', 'debian:nosuchsuite'], noSuchSuite('--kernel')],
    [
      ['run', 'prereg-accounting', '--kernel', 'local:/nonexistent'],
      /--kernel: local:\/nonexistent: \/nonexistent does not exist \(the vmlinux\)/,
    ],
    [['guest', 'build', '--kernel', 'debian:nosuchsuite'], noSuchSuite('--kernel')],
    [
      ['guest', 'build', '--kernel', `local:${vmlinux},/nonexistent/mods`],
      /--kernel: local:\S+: \/nonexistent\/mods does not exist \(the modules root\)/,
    ],
    [
      ['guest', 'build', '--kernel', 'deb:/nonexistent/linux-image.deb'],
      /--kernel: deb:\S+: \/nonexistent\/linux-image\.deb does not exist/,
    ],
    [['matrix', 'prereg-accounting', '--kernels', 'debian:nosuchsuite'], noSuchSuite('--kernels')],
    [
      ['matrix', 'prereg-accounting', '--kernels', 'debian:trixie,local:/nonexistent'],
      /--kernels: local:\/nonexistent: \/nonexistent does not exist/,
    ],
    [['repro', 'try', bundle, '--kernel', 'local:/nonexistent'], /--kernel: local:\/nonexistent: \/nonexistent does not exist/],
    // A patched source: a patch that is not there, before the source is resolved; a version the repository has no series for.
    [
      ['kernel', 'source', 'debian-source:6.12.107,patches=/nonexistent.patch'],
      /spec: debian-source:6\.12\.107,patches=\/nonexistent\.patch: \/nonexistent\.patch does not exist \(a patch or a directory of patches\)/,
    ],
    [
      ['run', 'prereg-accounting', '--kernel', 'debian-source:6.12.107,patches=/nonexistent.patch'],
      /--kernel: \S+: \/nonexistent\.patch does not exist \(a patch or a directory of patches\)/,
    ],
    [['kernel', 'source', 'debian:trixie'], /spec: debian:trixie: kernel source takes a debian-source: spec/],
    // tcelab bisect: a tree that is not one, before anything starts.
    [
      ['bisect', 'prereg-accounting', '--tree', '/nonexistent', '--good', 'a', '--bad', 'b'],
      /--tree: \/nonexistent: \/nonexistent is not a git tree/,
    ],
    // A KVM scenario refuses a profile without a KVM inner machine, before any image is built.
    [['run', 'kvm-tce-path', '--profile', 'emulated'], /scenario kvm-tce-path: --profile emulated: is not a KVM lab host/],
    [['run', 'kvm-vfio-early-exit', '--profile', 'nested-lab-host'], /--profile nested-lab-host: is not a KVM lab host/],
    [['run', 'ddw-hotplug', '--profile', 'kvm-lab-host'], /profile kvm-lab-host: inner\.guest\.hotplug: is false: .*rpadlpar_io/],
    [['guest', 'build', '--variant', 'kvm'], /--variant: kvm: must be base, with-qemu, with-qemu:<suite> or kvm-host/],
  ];
  for (const [args, message] of options) {
    it(`options: ${args.join(' ')}`, () => {
      const r = tcelab(...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  for (const [args, message] of flags) {
    it(`flags: ${args.join(' ')}`, () => {
      const r = tcelab(...args);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('started no lab for any of it', () => {
    expect(runtimeDirsIn(root)).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivateApt, isMidSyncError } from '../../src/debian/private-apt.js';
import { TcelabError } from '../../src/util/errors.js';
import { scratchDir } from '../helpers/scratch.js';

describe('private apt: a mirror caught mid-sync', () => {
  it("recognises apt's mid-sync failures, and only those", () => {
    const apt = (line: string) => new TcelabError('apt-get update for Debian trixie ppc64el', `exited with code 100:\n    E: ${line}`);
    expect(
      isMidSyncError(
        apt(
          'Failed to fetch http://m/debian/dists/trixie/main/binary-ppc64el/Packages.xz  File has unexpected size ' +
            '(9515196 != 9516256). Mirror sync in progress? [IP: 1.2.3.4 80]',
        ),
      ),
    ).toBe(true);
    expect(isMidSyncError(apt('Failed to fetch http://m/…/Packages.xz  Hash Sum mismatch'))).toBe(true);
    expect(isMidSyncError(apt("Failed to fetch http://m/debian/dists/trixie/InRelease  Could not resolve 'm'"))).toBe(false);
    expect(isMidSyncError(apt('The repository is not signed.'))).toBe(false);
  });

  it('reads the suite alias, codename and date from the InRelease apt fetched, in lists/ or, after a failure, lists/partial/', async () => {
    const root = scratchDir('apt');
    mkdirSync(join(root, 'state', 'lists', 'partial'), { recursive: true });
    const inRelease =
      '-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nLabel: Debian\nSuite: stable\nVersion: ' +
      '13.7\nCodename: trixie\nDate: Sat, 21 Nov 2026 09:15:44 UTC\nAcquire-By-Hash: yes\n';
    writeFileSync(join(root, 'state', 'lists', 'partial', 'deb.debian.org_debian_dists_trixie_InRelease'), inRelease);
    const apt = new PrivateApt(root, 'http://deb.debian.org/debian');
    expect(await apt.releaseField('trixie', 'Suite')).toBe('stable');
    expect(await apt.releaseField('trixie', 'Codename')).toBe('trixie');
    expect(await apt.releaseField('trixie', 'Date')).toBe('Sat, 21 Nov 2026 09:15:44 UTC');
    expect(await apt.releaseField('stable', 'Suite')).toBeUndefined();
    writeFileSync(join(root, 'state', 'lists', 'deb.debian.org_debian_dists_stable_InRelease'), inRelease.replace('21 Nov', '12 Sep'));
    expect(await apt.releaseField('stable', 'Date')).toBe('Sat, 12 Sep 2026 09:15:44 UTC');
  });

  it('reads the Release of a mirror that signs no InRelease, and nothing when apt fetched none', async () => {
    const root = scratchDir('apt');
    mkdirSync(join(root, 'state', 'lists', 'partial'), { recursive: true });
    const apt = new PrivateApt(root, 'http://m/debian', 'sid');
    expect(await apt.releaseField('sid', 'Architectures')).toBeUndefined();
    writeFileSync(join(root, 'state', 'lists', 'm_debian_dists_sid_Release'), 'Suite: unstable\nArchitectures: all ppc64el\n');
    expect(await apt.releaseField('sid', 'Architectures')).toBe('all ppc64el');
  });
});

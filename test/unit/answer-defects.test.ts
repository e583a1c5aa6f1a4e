import { describe, expect, it } from 'vitest';
import { explainAnswer } from '../../src/scenario/answer-defects.js';
import { hasFix, KERNEL_DEFECTS } from '../../src/scenario/kernel-defects.js';

describe('known defects recognised by an ioctl answer', () => {
  it('a kernel has a fix from the first release of its branch that has it, and in any later branch', () => {
    const fixedIn = KERNEL_DEFECTS['ioba-npages-ignored'].fixedIn;
    expect(hasFix('6.12.107+deb13-powerpc64le', fixedIn)).toBe(false);
    expect(hasFix('6.12.118+deb13-powerpc64le', fixedIn)).toBe(true);
    expect(hasFix('7.2.11+bpo-powerpc64le', fixedIn)).toBe(true);
    expect(hasFix('7.2.10', fixedIn)).toBe(false);
    expect(hasFix('7.3-powerpc64le', fixedIn)).toBe(true);
    // A branch older than every listed one, or one between them that is not listed: not known to have it.
    expect(hasFix('6.1.150-powerpc64le', fixedIn)).toBe(false);
    expect(hasFix('6.18.3', fixedIn)).toBe(false);
    expect(hasFix('not a version', fixedIn)).toBe(false);
  });

  it('an answer is excused as the defect it shows on a kernel without the fix, and said to be a regression on one with it', () => {
    const both = ['ioba-npages-ignored', 'param-check-returns-one'] as const;
    expect(explainAnswer(both, 'success', { release: '6.12.107+deb13-powerpc64le' })).toMatchObject({
      name: 'ioba-npages-ignored',
      knownDefect: expect.stringMatching(/^defect 4: /),
    });
    const regression = explainAnswer(both, 'success', { release: '7.2.11+bpo-powerpc64le' });
    expect(regression.knownDefect).toBeUndefined();
    expect(regression.detail).toMatch(/^success is the answer of defect 4, on 7\.2\.11\+bpo-powerpc64le, which has its fix/);
    expect(explainAnswer(both, 'error ERETURN+1', { release: '7.2.11+bpo-powerpc64le' })).toMatchObject({
      name: 'param-check-returns-one',
    });
    // An answer no listed defect gives is a plain failure.
    expect(explainAnswer(both, 'error EFAULT', { release: '6.12.107' })).toEqual({});
    expect(explainAnswer(['param-check-returns-one'], 'success', { release: '6.12.107' })).toEqual({});
    expect(explainAnswer(['map-past-window-end'], 'error ESRCH', { release: '7.2.11' })).toMatchObject({ name: 'map-past-window-end' });
  });

  it('a kernel built with the repository’s series for its version has the fixes that series carries', () => {
    const both = ['ioba-npages-ignored', 'param-check-returns-one'] as const;
    const patched = { release: '6.12.107', source: { spec: 'debian-source:6.12.107+patches' } };
    expect(explainAnswer(both, 'success', patched).detail).toMatch(/^success is the answer of defect 4, on 6\.12\.107, which has its fix/);
    expect(explainAnswer(both, 'error ERETURN+1', patched).knownDefect).toBeUndefined();
    // The same source without the series, or with a user's own patches only, is not known to have them.
    expect(explainAnswer(both, 'success', { release: '6.12.107', source: { spec: 'debian-source:6.12.107' } }).name).toBe(
      'ioba-npages-ignored',
    );
    expect(
      explainAnswer(both, 'error ERETURN+1', { release: '6.12.107', source: { spec: 'debian-source:6.12.107,patches=/p' } }).name,
    ).toBe('param-check-returns-one');
  });
});

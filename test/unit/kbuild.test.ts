import { describe, expect, it } from 'vitest';
import { droppedOptions } from '../../src/kbuild/module-build-tree.js';
import { modinfoField } from '../../src/kbuild/out-of-tree-module.js';

describe('a module tree for a kernel built with another compiler', () => {
  it('forces back the options olddefconfig dropped, but not what only says what a tool can do', () => {
    const kernel = [
      'CONFIG_DEBUG_INFO_BTF=y',
      'CONFIG_CC_HAS_ASM_GOTO_OUTPUT=y',
      'CONFIG_PAHOLE_HAS_SPLIT_BTF=y',
      'CONFIG_VFIO=m',
      'CONFIG_SMP=y',
      'CONFIG_ARCH_USING_PATCHABLE_FUNCTION_ENTRY=y',
    ].join('\n');
    const prepared = ['CONFIG_SMP=y', '# CONFIG_DEBUG_INFO_BTF is not set', 'CONFIG_VFIO=m'].join('\n');
    expect(droppedOptions(kernel, prepared)).toEqual(['DEBUG_INFO_BTF', 'ARCH_USING_PATCHABLE_FUNCTION_ENTRY']);
  });
  it("reads a module's vermagic from its .modinfo entries, only at an entry's start", () => {
    const ko = Buffer.concat([
      Buffer.from('junk xvermagic=no\0license=GPL\0vermagic=6.12.107+deb13-powerpc64le SMP mod_unload \0name=x\0'),
    ]);
    expect(modinfoField(ko, 'vermagic')).toBe('6.12.107+deb13-powerpc64le SMP mod_unload ');
    expect(modinfoField(ko, 'srcversion')).toBeUndefined();
  });
});

/**
 * Module dependencies without modinfo(8): the `depends=` string in a module's
 * .modinfo section lists the modules it needs. Debian ships no modules.dep in
 * the package, and busybox modprobe needs one.
 */
export function moduleInfo(ko: Buffer): { name: string; depends: string[] } {
  const text = ko.toString('latin1');
  const field = (key: string): string | undefined => {
    const re = new RegExp(`\\0${key}=([^\\0]*)\\0`);
    const m = re.exec(text);
    return m ? m[1] : undefined;
  };
  const name = field('name');
  if (name === undefined) throw new Error('not a kernel module: no name= in .modinfo');
  const deps = field('depends') ?? '';
  return { name, depends: deps.split(',').filter(Boolean) };
}

/** Module names are interchangeable with - and _ (vfio-pci ≡ vfio_pci). */
export function normalizeModuleName(n: string): string {
  return n.replace(/-/g, '_');
}

/**
 * modules.dep for busybox/kmod: `path: dep-path dep-path`, paths relative to
 * /lib/modules/<release>, deps in load order (a dep's deps after it).
 */
export function modulesDep(modules: Array<{ relPath: string; name: string; depends: string[] }>): string {
  const byName = new Map(modules.map((m) => [normalizeModuleName(m.name), m]));
  const lines: string[] = [];
  for (const m of modules) {
    const order: string[] = [];
    const visit = (depName: string, chain: string[]) => {
      const dep = byName.get(normalizeModuleName(depName));
      if (!dep) throw new Error(`module ${m.name} needs ${depName}, which is not in the image`);
      if (chain.includes(dep.name)) throw new Error(`module dependency cycle: ${[...chain, dep.name].join(' → ')}`);
      for (const d of dep.depends) visit(d, [...chain, dep.name]);
      if (!order.includes(dep.relPath)) order.unshift(dep.relPath);
    };
    for (const d of m.depends) visit(d, [m.name]);
    lines.push(`${m.relPath}:${order.length ? ' ' : ''}${order.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

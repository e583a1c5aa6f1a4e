/**
 * Items with names unique among them: a name seen again gets " (2)", " (3)"… in the order given, so that (for a
 * run's checks) the same check of two kernels lands in the same row and none overwrites another.
 */
export function uniquelyNamed<T extends { name: string }>(items: T[]): Array<{ item: T; name: string }> {
  const seen = new Map<string, number>();
  return items.map((item) => {
    const n = (seen.get(item.name) ?? 0) + 1;
    seen.set(item.name, n);
    return { item, name: n === 1 ? item.name : `${item.name} (${n})` };
  });
}

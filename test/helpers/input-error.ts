import { expect } from 'vitest';
import { InputError } from '../../src/util/errors.js';

/** The field an InputError names, from a call that must throw one. */
export function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).field;
  }
  throw new Error('did not throw');
}

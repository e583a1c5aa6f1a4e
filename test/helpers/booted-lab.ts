import { afterAll, beforeAll, expect } from 'vitest';
import type { AgentClient } from '../../src/agent/agent-client.js';
import { Lab } from '../../src/lab/lab.js';
import { emulatedLabInputs, testRuntimeRoot } from './lab.js';
import { liveLabQemuPids } from './processes.js';

/** What a describe block that shares one booted lab sees (set once its beforeAll ran). */
export interface BootedLab {
  readonly root: string;
  lab: Lab;
  agent: AgentClient;
}

/**
 * One emulated lab, booted to its agent before the block's tests and quit after them, in a runtime root of
 * its own; after it, no QEMU of that root is left. Call inside a describe block.
 */
export function useBootedLab(): BootedLab {
  const booted = { root: testRuntimeRoot() } as BootedLab;
  beforeAll(async () => {
    const { profile, image } = await emulatedLabInputs();
    booted.lab = await Lab.launch(profile, { image, runtimeRoot: booted.root });
    await booted.lab.waitForGuestInit();
    booted.agent = await booted.lab.agent();
  });
  afterAll(async () => {
    await booted.lab?.close();
    expect(liveLabQemuPids(booted.root)).toEqual([]);
  });
  return booted;
}

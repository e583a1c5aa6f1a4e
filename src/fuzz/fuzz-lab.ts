import { readFile } from 'node:fs/promises';
import type { AgentClient } from '../agent/agent-client.js';
import { GuestHypercalls, type PeInfo, type U64 } from '../agent/hcall.js';
import { HCALL_OPCODES } from '../agent/hcall-codes.js';
import { parseMtreeWindows } from '../ddw/dma-window.js';
import { ensureGuestImage } from '../image/ensure-guest-image.js';
import { ensureGuestModule } from '../kbuild/guest-module.js';
import { Lab } from '../lab/lab.js';
import type { Profile } from '../qemu/profile.js';
import { findGuestDevice } from '../scenario/guest-vfio.js';
import { HOSTILE_MODULE } from '../scenario/hostile-calls.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { type Answer, type FuzzCall, hex, listValues, RTAS_SERVICES } from './fuzz-calls.js';

/**
 * The lab a fuzz run drives: an emulated lab booted (or restored) as `tcelab run` boots one, the profile's edu bound to
 * vfio-pci in the guest (so no guest driver uses its windows), the tcelab_hcall module built for the image's kernel
 * and loaded, and the edu's PE as the DDW RTAS calls name it.
 */

/** How many calls are in flight to the agent at once: it answers them in order, one after another. */
const PIPELINE = 32;

/** What the fuzz needs of a lab: the calls' answers, a known state, and whether QEMU and the agent are still there. */
export interface CallTarget {
  /** Issues the calls in order (pipelined) and returns their answers in the same order. */
  issue(calls: readonly FuzzCall[]): Promise<Answer[]>;
  /**
   * Back to the state the model starts from: PHB 0's default window cleared (one H_STUFF_TCE of 0 over all of it)
   * and the PE's windows reset (ibm,reset-pe-dma-window: the default window zeroed, no DDW).
   */
  reset(): Promise<void>;
  /** Throws when QEMU is not running or the agent does not answer a ping. */
  checkAlive(): Promise<void>;
  /** The windows QEMU's memory tree has now (liobn, bus start, size). */
  windows(): Promise<Array<{ liobn: bigint; start: bigint; size: bigint }>>;
}

export interface FuzzLab {
  lab: Lab;
  target: CallTarget;
  /** The edu's PE as the DDW RTAS calls name it. */
  pe: PeInfo;
  guestKernel: string;
  /** Gives the edu back and ends the lab: its artifacts copied to artifactsTo, its runtime dir kept when failed (returned). */
  close(failed: boolean, artifactsTo?: string): Promise<string | undefined>;
}

export interface OpenFuzzLabOptions {
  profile: Profile;
  progress: Progress;
  /** The other PHB's default window, cleared by reset(). */
  clear: { liobn: bigint; start: bigint; entries: bigint };
  runtimeRoot?: string;
}

export async function openFuzzLab(opts: OpenFuzzLabOptions): Promise<FuzzLab> {
  const { profile, progress } = opts;
  const edu = profile.devices.find((d) => d.driver === 'edu');
  if (!edu) throw new TcelabError('fuzz hcall', `profile ${profile.name} has no edu device whose PE the RTAS calls could name`);
  const image = await ensureGuestImage(profile, progress);
  const built = await ensureGuestModule(HOSTILE_MODULE, image.manifest, progress);
  if ('notApplicable' in built) throw new TcelabError('fuzz hcall', `the ${HOSTILE_MODULE} module cannot be built: ${built.notApplicable}`);
  const ko = await readFile(built.module.ko);
  const lab = await Lab.launch(profile, { image, progress, runtimeRoot: opts.runtimeRoot });
  let bound: string | undefined;
  let agent: AgentClient | undefined;
  const close = async (failed: boolean, artifactsTo?: string) => {
    if (bound && agent && lab.process.running && !lab.panic) await agent.unbind(bound).catch(() => {});
    return lab.close({ failed, progress, artifactsTo });
  };
  try {
    const init = await lab.waitForGuestInit(progress);
    agent = await lab.agent(progress);
    const dev = await findGuestDevice(agent, profile, edu.id);
    await agent.bind(dev.address);
    bound = dev.address;
    const hc = new GuestHypercalls(agent);
    const loaded = await hc.loadModule(ko);
    progress.info(
      `loaded ${HOSTILE_MODULE} (${loaded.bytes} bytes; ${built.module.against.source}); ${edu.id} is ${dev.address}, bound to vfio-pci`,
    );
    const pe = await hc.peInfo(dev.address);
    const target = new LabCallTarget(lab, agent, hc, pe, opts.clear);
    return { lab, target, pe, guestKernel: init.kernelRelease, close };
  } catch (err) {
    await close(true).catch(() => {});
    throw err;
  }
}

class LabCallTarget implements CallTarget {
  constructor(
    private readonly lab: Lab,
    private readonly agent: AgentClient,
    private readonly hc: GuestHypercalls,
    private readonly pe: PeInfo,
    private readonly clear: OpenFuzzLabOptions['clear'],
  ) {}

  async issue(calls: readonly FuzzCall[]): Promise<Answer[]> {
    const out: Answer[] = [];
    for (let i = 0; i < calls.length; i += PIPELINE) out.push(...(await Promise.all(calls.slice(i, i + PIPELINE).map((c) => this.one(c)))));
    return out;
  }

  async reset(): Promise<void> {
    const [cleared, reset] = await this.issue([
      { op: 'H_STUFF_TCE', liobn: this.clear.liobn, ioba: this.clear.start, tce: 0n, npages: this.clear.entries },
      { op: 'reset', buid: 'pe' },
    ]);
    if (!cleared || !('rc' in cleared) || cleared.rc !== 0)
      throw new TcelabError(
        'fuzz: reset the windows',
        `H_STUFF_TCE of 0 over liobn ${hex(this.clear.liobn)} answered ${JSON.stringify(cleared)}`,
      );
    if (!reset || !('status' in reset) || reset.status !== 0)
      throw new TcelabError(
        'fuzz: reset the windows',
        `ibm,reset-pe-dma-window of ${this.pe.address} answered status ${JSON.stringify(reset)}`,
      );
  }

  async checkAlive(): Promise<void> {
    if (!this.lab.process.running) throw new TcelabError('fuzz', 'QEMU is no longer running', 'its stderr is in the kept runtime dir');
    const status = await this.lab.qmp.queryStatus();
    if (status.status !== 'running') throw new TcelabError('fuzz', `QEMU's status is ${status.status}, not running`);
    await this.agent.ping(10_000);
  }

  async windows(): Promise<Array<{ liobn: bigint; start: bigint; size: bigint }>> {
    return parseMtreeWindows(await this.lab.qmp.humanMonitorCommand('info mtree', 30_000)).map((w) => ({ ...w, liobn: BigInt(w.liobn) }));
  }

  private async one(c: FuzzCall): Promise<Answer> {
    const hcall = async (args: U64[]) => {
      const r = await this.hc.hcall(HCALL_OPCODES[c.op as keyof typeof HCALL_OPCODES], args);
      return c.op === 'H_GET_TCE' && r.rc === 0 ? { rc: r.rc, tce: r.out[0]! } : { rc: r.rc };
    };
    switch (c.op) {
      case 'H_GET_TCE':
        return hcall([c.liobn, c.ioba]);
      case 'H_PUT_TCE':
        return hcall([c.liobn, c.ioba, c.tce]);
      case 'H_STUFF_TCE':
        return hcall([c.liobn, c.ioba, c.tce, c.npages]);
      case 'H_PUT_TCE_INDIRECT': {
        const r = await this.hc.hcallIndirect({ liobn: c.liobn, ioba: c.ioba, npages: c.npages, tces: listValues(c), list: c.list });
        return { rc: r.rc };
      }
      case 'remove':
        return this.rtas(c.op, [c.liobn], 1);
      case 'query':
        return this.rtas(c.op, this.peArgs(c.buid, c.cfgAddr), 5);
      case 'reset':
        return this.rtas(c.op, this.peArgs(c.buid, c.cfgAddr), 1);
      case 'create':
        return this.rtas(c.op, [...this.peArgs(c.buid, c.cfgAddr), c.pageShift, c.windowShift], 4);
    }
  }

  private async rtas(op: keyof typeof RTAS_SERVICES, args: number[], nret: number): Promise<Answer> {
    const r = await this.hc.rtas(RTAS_SERVICES[op], args, nret);
    return r.status === 0 && nret > 1 ? { status: r.status, out: r.out } : { status: r.status };
  }

  /** The DDW calls' config address and BUID words: the PE's, or the call's own. */
  private peArgs(buid: 'pe' | bigint, cfgAddr: number | undefined): number[] {
    const cfg = cfgAddr ?? this.pe.cfgAddr;
    if (buid === 'pe') return [cfg, this.pe.buidHi, this.pe.buidLo];
    return [cfg, Number((buid >> 32n) & 0xffffffffn), Number(buid & 0xffffffffn)];
  }
}

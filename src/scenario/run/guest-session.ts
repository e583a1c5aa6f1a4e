import type { AgentClient } from '../../agent/agent-client.js';
import type { Lab } from '../../lab/lab.js';
import type { ShutdownMethod } from '../../lab/shutdown.js';
import { describeError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import type { CheckRecorder } from '../checks.js';
import { judgeGuestBalance, takeGuestBalanceBaseline, type GuestBalanceBaseline, type KeptGuestPins } from '../guest-balance.js';
import { judgeKernelLog, KERNEL_REPORT_NAMES, scanKernelLog, type ExpectedKernelReport } from '../kernel-log.js';
import type { GuestShutdownMethod, ScenarioReport } from '../scenario.js';

type RunShutdown = NonNullable<ScenarioReport['shutdown']>;

/** How long the agent may take to answer a ping before the last look at the guest is given up. */
const AGENT_PING_MS = 10_000;

/**
 * The guest's side of a run, from its agent answering to its shutdown: the balance baseline, what the scenario
 * declared it keeps (pins, kernel reports), and the last look at the guest before it goes — its pins and locked
 * memory judged against the baseline, its kernel log read while the agent can still read it.
 */
export class GuestSession {
  agent: AgentClient | undefined;
  private balanceBaseline: GuestBalanceBaseline | undefined;
  keptPins: KeptGuestPins | undefined;
  readonly expectedReports: ExpectedKernelReport[] = [];
  /** The guest's own kernel log, read before it goes (the console shows only what its loglevel lets through). */
  dmesg = '';
  /** How the guest went, once it did. */
  shutdownReport: RunShutdown | undefined;

  constructor(
    private readonly lab: Lab,
    private readonly checks: CheckRecorder,
    private readonly progress: Progress,
    private readonly phase: (name: string) => number,
    keepsGuestPins: string | undefined,
    /** Whether the run was interrupted (a signal) while its steps ran: they may still be pinning and unpinning. */
    private readonly interrupted: () => boolean = () => false,
  ) {
    this.keptPins = keepsGuestPins ? { reason: keepsGuestPins } : undefined;
  }

  /** The agent answered: what the guest holds now is what it must hold again before it goes. */
  async agentUp(agent: AgentClient): Promise<void> {
    this.agent = agent;
    this.balanceBaseline = await takeGuestBalanceBaseline(agent);
  }

  /** The last look at a live guest; runs once, before whichever shutdown comes first. */
  private async beforeGuestGoes(): Promise<void> {
    const { agent, lab } = this;
    const baseline = this.balanceBaseline;
    if (!agent || !baseline || lab.panic || !lab.process.running) return;
    this.balanceBaseline = undefined;
    // An agent that stopped answering (a step timed out on it) would make each read below wait out its own timeout
    // (45 s in all): one short ping decides whether the guest can still be looked at.
    const silent = await agent.ping(AGENT_PING_MS).then(
      () => undefined,
      (err: unknown) => describeError(err),
    );
    if (silent) {
      this.checks.record(
        'guest: balance judged before shutdown',
        false,
        'the agent answers',
        `the agent did not answer a ping within ${AGENT_PING_MS / 1000} s: ${silent}`,
      );
      return;
    }
    if (this.interrupted()) {
      // Steps cut off mid-way leave what they held, or are still changing it: a balance then says nothing, and waiting
      // for one to settle only delays the teardown the user asked for.
      const why = 'not judged: the run was interrupted while its steps ran';
      this.checks.notApplicable('guest: pinned pages back to the agent-up baseline before shutdown', why);
      this.checks.notApplicable('guest: locked memory of its processes (Σ VmLck) back to the agent-up baseline before shutdown', why);
    } else
      await this.progress
        .step('judge the guest balance (pins and locked memory back to the agent-up baseline)', async () => {
          await judgeGuestBalance(agent, baseline, this.checks, this.progress, this.keptPins);
        })
        .catch((err) => this.checks.record('guest: balance judged before shutdown', false, 'the agent answers', describeError(err)));
    this.dmesg = await agent.exec(['dmesg'], 10_000).then(
      (r) => r.stdout,
      () => '',
    );
  }

  /** Shuts the guest down (the scenario's own request, or the runner's at the end), with phase markers. */
  async shutdown(method: GuestShutdownMethod): Promise<RunShutdown> {
    await this.beforeGuestGoes();
    this.phase(`shutdown requested (${method})`);
    const { agent, lab } = this;
    let report: RunShutdown;
    if (method === 'agent' && agent) {
      // The agent replies, then powers the guest off; escalation as for powerdown.
      await agent.poweroff().catch(() => {});
      report = { ...(await lab.shutdown('powerdown', this.progress, { skipRequest: true })), requested: 'agent' };
    } else {
      const labMethod: ShutdownMethod = method === 'agent' ? 'powerdown' : method;
      report = await lab.shutdown(labMethod, this.progress);
    }
    this.shutdownReport = report;
    return report;
  }

  /**
   * A kernel validation run must never miss a kernel report, whatever the scenario checked or how it ended: the
   * console (everything up to the end, a panic included) and the guest's dmesg (read before shutdown).
   */
  recordKernelLogVerdict(): void {
    const verdict = judgeKernelLog(scanKernelLog(`${this.lab.process.console.tail(100_000)}\n${this.dmesg}`), this.expectedReports);
    this.checks.record(
      `guest kernel logged no ${KERNEL_REPORT_NAMES.join(', ')}`,
      verdict.pass,
      'none',
      verdict.measured,
      this.dmesg ? 'console and dmesg' : 'console only (dmesg was not read: the agent was gone)',
      verdict.knownDefect,
    );
  }
}

import { AgentClient } from '../agent/agent-client.js';
import type { Host } from '../host/host.js';
import type { RuntimePaths } from '../qemu/argv.js';
import type { QemuProcess } from '../qemu/qemu-process.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';

/** Connects the lab's guest agent (after init); fails at once if QEMU exits first. */
export function connectAgent(
  lab: { readonly paths: RuntimePaths; readonly host: Host; readonly process: QemuProcess },
  progress: Progress,
): Promise<AgentClient> {
  return progress.step('connect the guest agent', () =>
    Promise.race([
      AgentClient.connect(lab.paths.agentSocket, { transcriptPath: lab.paths.agentTranscript, host: lab.host }),
      lab.process.exited.then((e) => {
        throw new TcelabError(
          'connect the guest agent',
          `QEMU exited (${e.signal ?? `code ${e.code}`}) first`,
          'see console.log in the artifacts',
        );
      }),
    ]),
  );
}

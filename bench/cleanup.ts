import type { ChildProcess } from 'node:child_process';

/**
 * Everything the run creates registers how to undo it here, newest first. Steps run even when
 * earlier ones fail, each within a time limit, so a hung step cannot keep the run alive.
 */
export class Cleanup {
  readonly #steps: Array<{ readonly name: string; readonly undo: () => Promise<unknown> }> = [];
  readonly #children = new Set<ChildProcess>();
  #running: Promise<void> | undefined;

  constructor() {
    // Last resort if the run dies without reaching run(): children must not outlive it.
    process.once('exit', () => {
      for (const child of this.#children) if (isAlive(child)) child.kill('SIGKILL');
    });
  }

  add(name: string, undo: () => Promise<unknown>): void {
    this.#steps.push({ name, undo });
  }

  /** A child process stopped with SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  addChild(name: string, child: ChildProcess, graceMs = 15_000): void {
    this.#children.add(child);
    this.add(name, async () => {
      await stopChild(child, graceMs);
      this.#children.delete(child);
    });
  }

  run(stepTimeoutMs = 30_000): Promise<void> {
    this.#running ??= (async () => {
      for (let step = this.#steps.pop(); step !== undefined; step = this.#steps.pop()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            step.undo(),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`timed out after ${stepTimeoutMs} ms`)),
                stepTimeoutMs,
              );
            }),
          ]);
        } catch (error) {
          process.stderr.write(`cleanup: ${step.name} failed: ${String(error)}\n`);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.#running;
  }
}

function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (!isAlive(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  const outcome = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (outcome === 'late' && isAlive(child)) {
    child.kill('SIGKILL');
    await exited;
  }
}

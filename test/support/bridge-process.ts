import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Runs the built bridge (dist/main.js, the real entrypoint) as a child process, the way an
 * orchestrator would: config file on disk, JSON logs on stdout, signals to stop it.
 * `npm test` builds first; a stale or missing build fails loudly here.
 */

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface LogRecord {
  readonly level: string;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export class BridgeProcess {
  readonly child: ChildProcess;
  readonly logs: LogRecord[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #dir: string;
  #listeners: Array<(record: LogRecord) => void> = [];

  /** `nodeArgs` go before the entrypoint, e.g. --cpu-prof (not allowed in NODE_OPTIONS). */
  constructor(config: unknown, env: Readonly<Record<string, string>> = {}, nodeArgs: readonly string[] = []) {
    this.#dir = mkdtempSync(join(tmpdir(), 'pgq-bridge-test-'));
    const configPath = join(this.#dir, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));
    this.child = spawn(process.execPath, [...nodeArgs, MAIN, 'run', '--config', configPath], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) this.#onLine(line);
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        rmSync(this.#dir, { recursive: true, force: true });
        resolve({ code, signal });
      });
    });
  }

  /** Resolves with the first log record (already seen or future) that matches. */
  waitForLog(predicate: (record: LogRecord) => boolean, timeoutMs = 30_000): Promise<LogRecord> {
    const seen = this.logs.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners = this.#listeners.filter((l) => l !== listener);
        reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${this.tail(10)}`));
      }, timeoutMs);
      const listener = (record: LogRecord): void => {
        if (!predicate(record)) return;
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((l) => l !== listener);
        resolve(record);
      };
      this.#listeners.push(listener);
      void this.exited.then(() => {
        if (!this.#listeners.includes(listener)) return;
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((l) => l !== listener);
        reject(
          new Error(
            `the bridge exited before the log line appeared:\n${this.tail(10)}${this.stderr.join('')}`,
          ),
        );
      });
    });
  }

  waitUntilReady(timeoutMs = 30_000): Promise<LogRecord> {
    return this.waitForLog((r) => r.msg === 'ready', timeoutMs);
  }

  /** Sends a signal and waits for the exit. */
  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  tail(lines: number): string {
    return this.logs
      .slice(-lines)
      .map((r) => JSON.stringify(r))
      .join('\n');
  }

  #onLine(line: string): void {
    if (line.trim() === '') return;
    let record: LogRecord;
    try {
      record = JSON.parse(line) as LogRecord;
    } catch {
      record = { level: 'raw', msg: line };
    }
    this.logs.push(record);
    for (const listener of [...this.#listeners]) listener(record);
  }
}

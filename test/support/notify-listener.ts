/**
 * A stand-in for systemd's notification socket: a Unix datagram socket (Python, since Node
 * has none) that records every sd_notify message with its arrival time and, like PID 1,
 * closes file descriptors passed with BARRIER=1 so `systemd-notify` returns.
 * @module
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const LISTENER = `
import array, json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"ready": True}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    fds = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % 4])
            fds.extend(a)
    for fd in fds:
        os.close(fd)
    print(json.dumps({"atMs": time.monotonic() * 1000, "text": msg.decode(), "fds": len(fds)}), flush=True)
`;

export interface NotifyMessage {
  /** Arrival, the listener's monotonic clock in ms. */
  readonly atMs: number;
  readonly text: string;
  /** File descriptors passed along (BARRIER=1 passes one). */
  readonly fds: number;
}

export interface NotifyListener {
  readonly socketPath: string;
  readonly messages: NotifyMessage[];
  /** Resolves with the first message (from `from` on) whose text matches, or rejects after timeoutMs. */
  waitFor(match: RegExp, timeoutMs?: number, from?: number): Promise<NotifyMessage>;
  close(): Promise<void>;
}

export async function startNotifyListener(dir: string): Promise<NotifyListener> {
  const socketPath = join(dir, 'notify.sock');
  const child: ChildProcess = spawn('python3', ['-u', '-c', LISTENER, socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const messages: NotifyMessage[] = [];
  const waiters = new Set<() => void>();
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`notify listener exited early (${code})`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { ready?: boolean } & NotifyMessage;
      if (parsed.ready) {
        resolve();
        return;
      }
      messages.push({ atMs: parsed.atMs, text: parsed.text, fds: parsed.fds });
      for (const w of [...waiters]) w();
    });
  });
  child.removeAllListeners('exit');
  return {
    socketPath,
    messages,
    waitFor(match, timeoutMs = 10_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.slice(from).find((m) => match.test(m.text));
          if (!found) return false;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(found);
          return true;
        };
        const wake = () => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(
              `no notification matching ${match} within ${timeoutMs} ms; got ${JSON.stringify(messages.map((m) => m.text))}`,
            ),
          );
        }, timeoutMs);
        if (!check()) waiters.add(wake);
      });
    },
    async close() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/**
 * Named crash points for crash-safety tests: with PILEPASS_CRASH_AT=<name> the gateway kills
 * itself with SIGKILL right after that step — no cleanup, exactly like a power cut.
 * @module
 */

export const CrashPoint = {
  AFTER_SPEND_COMMIT: 'after-spend-commit',
  AFTER_START_COMMAND: 'after-start-command',
  MID_RECEIPT: 'mid-receipt',
  AFTER_RECEIPT_COMMIT: 'after-receipt-commit',
} as const;
export type CrashPoint = (typeof CrashPoint)[keyof typeof CrashPoint];

export function crashPoint(name: CrashPoint): void {
  if (process.env.PILEPASS_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
}

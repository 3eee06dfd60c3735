import { type DestinationStream, type Logger, pino } from 'pino';

/**
 * JSON logs on stdout. Secrets are redacted by path as a second line of defence: the bridge never
 * logs its config or request headers, but a future log call must not be able to leak them.
 */
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'bearerToken',
  '*.bearerToken',
  'password',
  '*.password',
  'token',
  '*.token',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      name: 'pgq-bridge',
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

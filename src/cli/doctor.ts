import { runDoctor } from '../doctor/doctor.ts';
import { defineCommand, EXIT } from './command.ts';
import { configOption } from './config-option.ts';

export const doctorCommand = defineCommand({
  name: 'doctor',
  summary: 'check everything a deployment needs and print a checklist, with a fix for each failure',
  details: [
    'Checks the config, the broker (login, vhost, queues and their arguments, the dead-letter',
    "queue), the endpoint (reachable, token accepted, the functions callable with the bridge's",
    "arguments), PostgREST's db-pool against the configured concurrency (from PGRST_DB_POOL) and",
    'the clock skew. Nothing is enqueued or published.',
  ],
  options: { config: configOption },
  readsConfig: true,
  exitCodes: {
    [EXIT.ok]: 'every check passed (warnings say what could not be told from outside)',
    [EXIT.failure]: 'a check failed; its fix is printed under it',
  },
  run: (values) => runDoctor(values.config, process.env, process.stdout),
});

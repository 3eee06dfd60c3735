import { spawnSync } from 'node:child_process';

/**
 * A real `postgrest` on PATH, or undefined. It is asked for `--help`, which every version
 * answers with exit 0: PostgREST 10.x has no `--version` and refuses it.
 */
export function findPostgrest(env: NodeJS.ProcessEnv = process.env): { readonly banner: string } | undefined {
  const help = spawnSync('postgrest', ['--help'], { env, encoding: 'utf8', timeout: 10_000 });
  if (help.status !== 0) return undefined;
  // Its help starts with a line like "PostgREST 10.1.2 / create a REST API to an existing Postgres database".
  const banner = help.stdout.split('\n').find((line) => /PostgREST \d/.test(line));
  return { banner: banner?.trim() || 'postgrest' };
}

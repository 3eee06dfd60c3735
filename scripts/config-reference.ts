import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.ts';

/**
 * The README's configuration table, generated from the zod schema so the two cannot drift:
 * `npm run docs:config` rewrites it, and a unit test fails when it is stale.
 */

interface JsonSchema {
  readonly type?: string;
  readonly description?: string;
  readonly default?: unknown;
  readonly enum?: readonly unknown[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
}

export const START = '<!-- config-reference:start -->';
export const END = '<!-- config-reference:end -->';

function rows(schema: JsonSchema, prefix: string, parentRequired: boolean): string[] {
  const out: string[] = [];
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    const path = `${prefix}${key}`;
    const required = parentRequired && (schema.required ?? []).includes(key) && child.default === undefined;
    const type = child.enum ? child.enum.map((v) => JSON.stringify(v)).join(' \\| ') : (child.type ?? 'any');
    if (child.type === 'object' && child.properties) {
      out.push(...rows(child, `${path}.`, required));
    } else if (child.type === 'array' && child.items?.properties) {
      out.push(`| \`${path}\` | array | | ${required ? 'yes' : ''} | ${child.description ?? ''} |`);
      out.push(...rows(child.items, `${path}[].`, required));
    } else {
      const fallback = child.default === undefined ? '' : `\`${JSON.stringify(child.default)}\``;
      out.push(
        `| \`${path}\` | ${type} | ${fallback} | ${required ? 'yes' : ''} | ${child.description ?? ''} |`,
      );
    }
  }
  return out;
}

export function renderConfigReference(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const lines = rows(schema, '', true);
  // Required keys first, as an operator reads the table top-down to get started.
  const required = lines.filter((l) => l.includes('| yes |'));
  const optional = lines.filter((l) => !l.includes('| yes |'));
  return [
    '| Key | Type | Default | Required | Description |',
    '|---|---|---|---|---|',
    ...required,
    ...optional,
  ].join('\n');
}

export function replaceBetweenMarkers(readme: string, table: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the ${START} … ${END} markers`);
  return `${readme.slice(0, start + START.length)}\n${table}\n${readme.slice(end)}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = new URL('../README.md', import.meta.url);
  writeFileSync(path, replaceBetweenMarkers(readFileSync(path, 'utf8'), renderConfigReference()));
}

import { z } from 'zod';

/** Value kinds that several config sections share. */

/** A wait that a loop repeats: zero would turn the loop into a hot spin. */
export const delayMs = (description: string, defaultValue: number) =>
  z.number().int().min(1).default(defaultValue).describe(description);

export const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, 'must be a plain SQL identifier');

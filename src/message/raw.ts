import { buildArgs, type DecodeOptions, type EnqueueArgs, type IncomingMessage } from './args.ts';
import {
  checkPriority,
  checkText,
  decodeDedupeKey,
  MAX_ENTRYPOINT_BYTES,
  withTraceContext,
} from './fields.ts';
import { invalid, jsonType } from './invalid.ts';

/**
 * Raw mode: the body is the payload, byte for byte; the entrypoint comes from a header or the
 * source's default, the priority from the AMQP priority property.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeRaw(message: IncomingMessage, options: DecodeOptions): EnqueueArgs {
  let entrypoint = options.entrypoint;
  if (options.entrypointHeader !== undefined) {
    const fromHeader = message.properties.headers?.[options.entrypointHeader];
    if (typeof fromHeader === 'string') entrypoint = fromHeader;
    else if (Buffer.isBuffer(fromHeader)) {
      try {
        entrypoint = utf8.decode(fromHeader);
      } catch {
        invalid('invalid_entrypoint', `header ${options.entrypointHeader} is not valid UTF-8`);
      }
    } else if (fromHeader !== undefined && fromHeader !== null) {
      invalid(
        'invalid_entrypoint',
        `header ${options.entrypointHeader} must be a string, got ${jsonType(fromHeader)}`,
      );
    }
  }
  if (entrypoint === undefined) {
    invalid(
      'missing_entrypoint',
      `header ${options.entrypointHeader ?? '(none)'} is missing and no default is set`,
    );
  }
  checkText('invalid_entrypoint', 'entrypoint', entrypoint, MAX_ENTRYPOINT_BYTES);
  const amqpPriority = message.properties.priority;
  const priority =
    amqpPriority === undefined ? undefined : checkPriority(amqpPriority, 'the AMQP priority property');
  const dedupeKey = decodeDedupeKey(undefined, message, options);
  const headersJson = withTraceContext(undefined, message.properties.headers);
  return buildArgs(entrypoint, message.body, priority, undefined, dedupeKey, headersJson);
}

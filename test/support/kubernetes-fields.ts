import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The API server refuses a field it does not know (kubectl's default field validation is
 * Strict), but the kubernetes-models validators ignore one, so a misspelt `readinesProbe` would
 * pass them and be lost. The same package's type declarations list every field of every kind:
 * each object is written out as a TypeScript literal of its kind's interface, and the compiler's
 * excess-property check names what does not belong, at any depth.
 */

export interface KubernetesObject {
  readonly apiVersion: string;
  readonly kind: string;
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const source = `${root}kubernetes-objects.check.ts`;

/** `v1` → `kubernetes-models/v1/Kind`, `apps/v1` → `kubernetes-models/apps/v1/Kind`. */
function modelModule(object: KubernetesObject): string {
  return `kubernetes-models/${object.apiVersion}/${object.kind}`;
}

/** One line per field that an object's kind does not have, naming where the object is and the field. */
export function unknownFields(
  named: ReadonlyArray<{ readonly where: string; readonly object: KubernetesObject }>,
): string[] {
  const lines = named.flatMap(({ object }, index) => [
    `import type { I${object.kind} as T${index} } from '${modelModule(object)}';`,
    `export const object${index}: T${index} = ${JSON.stringify(object)};`,
  ]);
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, ...rest) =>
    name === source
      ? ts.createSourceFile(name, text, version)
      : getSourceFile.call(host, name, version, ...rest);
  host.fileExists = (name) => name === source || fileExists.call(host, name);
  host.readFile = (name) => (name === source ? text : readFile.call(host, name));
  const program = ts.createProgram([source], options, host);
  const file = program.getSourceFile(source);
  return ts.getPreEmitDiagnostics(program, file).map((diagnostic) => {
    const line =
      diagnostic.file && diagnostic.start !== undefined
        ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line
        : 0;
    const where = named[Math.floor(line / 2)]?.where ?? source;
    return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')}`;
  });
}

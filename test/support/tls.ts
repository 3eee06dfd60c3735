/**
 * A throwaway PKI for TLS tests, made with the `openssl` CLI in a temp directory: a CA, a server
 * certificate for `localhost` and 127.0.0.1, a client certificate (its key also in a
 * passphrase-protected copy), and an unrelated second CA to stand in for "the wrong CA".
 *
 * Keys are P-256: generating them takes milliseconds, where RSA-2048 takes a noticeable fraction
 * of a second each. Keys are written in the traditional `EC PRIVATE KEY` form, which every TLS
 * stack involved (Node's OpenSSL, Erlang's ssl in RabbitMQ) reads.
 *
 * The directory is private to this process's user. A broker running as another user (RabbitMQ as
 * `rabbitmq`) needs its own readable copies; `startPrivateNode({ tls })` makes them.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  /** Temp directory holding every file below; removed by cleanup(). */
  readonly dir: string;
  /** PEM certificate of the CA that signed the server and client certificates. */
  readonly caFile: string;
  /** Server certificate (subjectAltName DNS:localhost, IP:127.0.0.1) and its key. */
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  /** Client certificate (CN pgq-bridge-test-client, extendedKeyUsage clientAuth) and its key. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** The same client key, encrypted (PKCS#8, AES-256) with `clientKeyPassphrase`. */
  readonly encryptedClientKeyFile: string;
  readonly clientKeyPassphrase: string;
  /** A CA that signed nothing here: trusting only it must fail verification. */
  readonly otherCaFile: string;
  /** Removes `dir`. Idempotent. */
  cleanup(): Promise<void>;
}

const VALID_DAYS = 2;
const OPENSSL_TIMEOUT_MS = 20_000;

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      args,
      { cwd, timeout: OPENSSL_TIMEOUT_MS, encoding: 'utf8' },
      (error, _stdout, stderr) => {
        if (error) {
          reject(
            new Error(`openssl ${args.join(' ')} failed: ${stderr.trim() || error.message}`, {
              cause: error,
            }),
          );
          return;
        }
        resolve();
      },
    );
  });
}

/** A random positive serial: certificates from one CA must not share serial numbers. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

async function ecKey(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path], dir);
  return path;
}

/**
 * A self-signed CA. Its extensions come from a file of our own rather than the system openssl.cnf,
 * whose defaults differ between distributions; Erlang's path validation insists on
 * basicConstraints CA:TRUE on the issuer.
 */
async function createCa(
  dir: string,
  name: string,
  commonName: string,
): Promise<{ cert: string; key: string }> {
  const key = await ecKey(dir, `${name}.key`);
  const cert = join(dir, `${name}.pem`);
  const config = join(dir, `${name}.cnf`);
  await writeFile(
    config,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      `CN = ${commonName}`,
      '[ca]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  await openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-config',
      config,
      '-extensions',
      'ca',
      '-days',
      String(VALID_DAYS),
      '-set_serial',
      serial(),
      '-sha256',
      '-out',
      cert,
    ],
    dir,
  );
  return { cert, key };
}

async function issue(
  dir: string,
  ca: { cert: string; key: string },
  name: string,
  commonName: string,
  extensions: readonly string[],
): Promise<{ cert: string; key: string }> {
  const key = await ecKey(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const extfile = join(dir, `${name}.ext`);
  await openssl(['req', '-new', '-key', key, '-subj', `/CN=${commonName}`, '-out', csr], dir);
  await writeFile(extfile, `${['basicConstraints = critical, CA:FALSE', ...extensions].join('\n')}\n`);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-set_serial',
      serial(),
      '-days',
      String(VALID_DAYS),
      '-sha256',
      '-extfile',
      extfile,
      '-out',
      cert,
    ],
    dir,
  );
  return { cert, key };
}

/** Generates the PKI; on failure nothing is left behind. */
export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'pgqb-tls-'));
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= rm(dir, { recursive: true, force: true });
    return cleaning;
  };
  try {
    const ca = await createCa(dir, 'ca', 'pgq-bridge test CA');
    const [server, client, other] = await Promise.all([
      issue(dir, ca, 'server', 'localhost', [
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = DNS:localhost, IP:127.0.0.1',
      ]),
      issue(dir, ca, 'client', 'pgq-bridge-test-client', [
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = clientAuth',
      ]),
      createCa(dir, 'other-ca', 'pgq-bridge unrelated test CA'),
    ]);
    const clientKeyPassphrase = randomBytes(12).toString('hex');
    const encryptedClientKeyFile = join(dir, 'client-encrypted.key');
    await openssl(
      [
        'pkcs8',
        '-topk8',
        '-in',
        client.key,
        '-v2',
        'aes-256-cbc',
        '-passout',
        `pass:${clientKeyPassphrase}`,
        '-out',
        encryptedClientKeyFile,
      ],
      dir,
    );
    return {
      dir,
      caFile: ca.cert,
      serverCertFile: server.cert,
      serverKeyFile: server.key,
      clientCertFile: client.cert,
      clientKeyFile: client.key,
      encryptedClientKeyFile,
      clientKeyPassphrase,
      otherCaFile: other.cert,
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * The four SCRAM-SHA-256 messages (RFC 5802 §7), read and written as text. Readers return the
 * fields or `{ error }` with PostgreSQL's detail wording where it has one; they never throw.
 *
 *   client-first  gs2-header client-first-bare    gs2-header = ("n" | "y" | "p=" name) "," [authzid] ","
 *                 client-first-bare = "n=" user ",r=" c-nonce ["," extensions]
 *   server-first  "r=" c-nonce s-nonce ",s=" salt-b64 ",i=" iterations
 *   client-final  "c=" b64(gs2-header) ",r=" nonce ["," extensions] ",p=" proof-b64
 *   server-final  "v=" signature-b64 | "e=" error
 *
 * @see https://www.rfc-editor.org/rfc/rfc5802#section-7
 */

export interface ClientFirst {
  /** "n,," or "y,,": the client's channel-binding flag and an empty authzid. */
  readonly gs2Header: string;
  readonly bare: string;
  readonly nonce: string;
}

export interface ServerFirst {
  readonly nonce: string;
  readonly salt: Buffer;
  readonly iterations: number;
}

export interface ClientFinal {
  readonly channelBinding: string;
  readonly nonce: string;
  /** The message up to (not including) ",p=": part of the AuthMessage. */
  readonly withoutProof: string;
  readonly proof: Buffer;
}

export type ServerFinal = { readonly signature: Buffer } | { readonly serverError: string };

/**
 * Why a message is refused, in PostgreSQL's words. Default: 08P01 "malformed SCRAM message" with
 * `error` as the detail; `as` 'feature-not-supported' (0A000) or 'protocol-violation' (08P01):
 * `error` is the message itself.
 */
export type Malformed = {
  readonly error: string;
  readonly as?: 'feature-not-supported' | 'protocol-violation';
};

/** SHA-256's output: the length of keys, proofs and signatures. */
export const SCRAM_KEY_BYTES = 32;

export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** printable = %x21-2B / %x2D-7E (RFC 5802): no comma. */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

function attribute(part: string | undefined, name: string): string | undefined {
  return part !== undefined && part.startsWith(`${name}=`) ? part.slice(name.length + 1) : undefined;
}

export function readClientFirst(text: string): ClientFirst | Malformed {
  const flag = text[0];
  if (flag === 'p')
    return {
      error:
        'The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.',
    };
  if ((flag !== 'n' && flag !== 'y') || text[1] !== ',')
    return { error: `Unexpected channel-binding flag "${text.slice(0, 1)}".` };
  const authzidEnd = text.indexOf(',', 2);
  if (authzidEnd < 0) return { error: 'Comma expected, but found end of string.' };
  if (authzidEnd !== 2)
    return {
      error: 'client uses authorization identity, but it is not supported',
      as: 'feature-not-supported',
    };
  const gs2Header = text.slice(0, 3);
  const bare = text.slice(3);
  const parts = bare.split(',');
  if (parts[0]?.startsWith('m='))
    return { error: 'client requires an unsupported SCRAM extension', as: 'feature-not-supported' };
  if (attribute(parts[0], 'n') === undefined) return { error: 'Expected attribute "n".' };
  const nonce = attribute(parts[1], 'r');
  if (nonce === undefined) return { error: 'Expected attribute "r".' };
  if (!PRINTABLE.test(nonce))
    return { error: 'non-printable characters in SCRAM nonce', as: 'protocol-violation' };
  return { gs2Header, bare, nonce };
}

export function writeServerFirst(m: ServerFirst): string {
  return `r=${m.nonce},s=${m.salt.toString('base64')},i=${m.iterations}`;
}

export function readServerFirst(text: string): ServerFirst | Malformed {
  const parts = text.split(',');
  const nonce = attribute(parts[0], 'r');
  const salt = attribute(parts[1], 's');
  const iterations = attribute(parts[2], 'i');
  if (nonce === undefined || salt === undefined || iterations === undefined)
    return { error: 'server-first-message is not "r=…,s=…,i=…"' };
  if (!PRINTABLE.test(nonce)) return { error: 'server nonce contains invalid characters' };
  if (salt === '' || !BASE64.test(salt)) return { error: 'server salt is not base64' };
  if (!/^[1-9]\d{0,9}$/.test(iterations))
    return { error: `server iteration count "${iterations}" is not a positive integer` };
  return { nonce, salt: Buffer.from(salt, 'base64'), iterations: Number(iterations) };
}

export function writeClientFinalWithoutProof(gs2Header: string, nonce: string): string {
  return `c=${Buffer.from(gs2Header, 'utf8').toString('base64')},r=${nonce}`;
}

export function readClientFinal(text: string): ClientFinal | Malformed {
  const proofAt = text.lastIndexOf(',p=');
  if (proofAt < 0) return { error: 'Could not find proof in client-final-message.' };
  const withoutProof = text.slice(0, proofAt);
  const proofText = text.slice(proofAt + 3);
  const parts = withoutProof.split(',');
  const channelBinding = attribute(parts[0], 'c');
  if (channelBinding === undefined) return { error: 'Expected attribute "c".' };
  const nonce = attribute(parts[1], 'r');
  if (nonce === undefined) return { error: 'Expected attribute "r".' };
  const proof = Buffer.from(proofText, 'base64');
  if (!BASE64.test(proofText) || proof.length !== SCRAM_KEY_BYTES)
    return { error: 'Malformed proof in client-final-message.' };
  return { channelBinding, nonce, withoutProof, proof };
}

export function readServerFinal(text: string): ServerFinal | Malformed {
  const error = attribute(text, 'e');
  if (error !== undefined) return { serverError: error };
  const signature = attribute(text, 'v');
  if (signature === undefined || signature === '' || !BASE64.test(signature))
    return { error: 'server-final-message is not "v=<signature>"' };
  return { signature: Buffer.from(signature, 'base64') };
}

/**
 * Tracks message boundaries in the server→client byte pipe after startup, so the proxy knows when
 * it may inject a message of its own (an ErrorResponse before closing, say) without cutting one.
 *
 * Every backend message is Byte1 type, Int32 length (including itself, not the type), then
 * length - 4 body bytes. The tracker reads headers and skips bodies: no allocation, no copying;
 * a header straddling chunks is accumulated as a number.
 *
 *   state    | meaning
 *   ---------|-------------------------------------------------------------
 *   boundary | the bytes seen end exactly at a message end (atBoundary)
 *   header   | 1..4 header bytes seen (headerBytes > 0)
 *   body     | skipping `remaining` body bytes
 *   corrupt  | a length below 4 was seen; tracking stops, atBoundary is false forever
 *
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */

const HEADER_BYTES = 5;
const READY_FOR_QUERY = 0x5a; // 'Z'

export class MessageBoundaryTracker {
  #headerBytes = 0;
  #type = 0;
  #length = 0;
  #remaining = 0;
  #messages = 0;
  #lastType = 0;
  #statusPending = false;
  #transactionStatus = '';
  #corrupt = false;
  readonly #countTypes: ReadonlySet<number>;
  #counted = 0;

  /** `countTypes`: message types whose headers `counted` counts (e.g. "QSF" for a client's requests). */
  constructor(countTypes = '') {
    this.#countTypes = new Set([...countTypes].map((c) => c.charCodeAt(0)));
  }

  /** Headers seen of the types given to the constructor. */
  get counted(): number {
    return this.#counted;
  }

  /** A tracker that has lost its place in the stream: never at a boundary again. */
  static lost(): MessageBoundaryTracker {
    const t = new MessageBoundaryTracker();
    t.#corrupt = true;
    return t;
  }

  /** True when the bytes seen so far end exactly at the end of a message. */
  get atBoundary(): boolean {
    return !this.#corrupt && this.#headerBytes === 0 && this.#remaining === 0;
  }

  /** Messages completed so far. */
  get messages(): number {
    return this.#messages;
  }

  /** Type byte of the last completed message, 0 before the first. */
  get lastType(): number {
    return this.#lastType;
  }

  /** Status of the last ReadyForQuery seen: 'I' idle, 'T' in a transaction, 'E' failed one; '' before any. */
  get transactionStatus(): string {
    return this.#transactionStatus;
  }

  /** True once a message length below 4 was seen: the stream is not Postgres protocol. */
  get corrupt(): boolean {
    return this.#corrupt;
  }

  feed(chunk: Buffer): void {
    const end = chunk.length;
    let i = 0;
    while (i < end && !this.#corrupt) {
      if (this.#remaining > 0) {
        if (this.#statusPending) {
          this.#transactionStatus = String.fromCharCode(chunk[i] ?? 0);
          this.#statusPending = false;
        }
        const take = Math.min(this.#remaining, end - i);
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#complete();
      } else if (this.#headerBytes === 0 && end - i >= HEADER_BYTES) {
        this.#type = chunk[i] ?? 0;
        this.#startBody(chunk.readUInt32BE(i + 1));
        i += HEADER_BYTES;
      } else {
        const byte = chunk[i++] ?? 0;
        if (this.#headerBytes === 0) this.#type = byte;
        else this.#length = this.#length * 256 + byte;
        if (++this.#headerBytes === HEADER_BYTES) {
          this.#headerBytes = 0;
          this.#startBody(this.#length);
          this.#length = 0;
        }
      }
    }
  }

  #startBody(length: number): void {
    if (length < 4) {
      this.#corrupt = true;
      return;
    }
    if (this.#countTypes.has(this.#type)) this.#counted++;
    this.#remaining = length - 4;
    this.#statusPending = this.#type === READY_FOR_QUERY && this.#remaining > 0;
    if (this.#remaining === 0) this.#complete();
  }

  #complete(): void {
    this.#messages++;
    this.#lastType = this.#type;
  }
}

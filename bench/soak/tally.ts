/** The load side's counts: bounded maps, whatever the gateway answers. */

/** Counts by key; past `maxKeys` distinct keys, new ones count under `other` (a key may come from a response). */
export class Counter {
  private readonly counts = new Map<string, number>()
  constructor(private readonly maxKeys = 40) {}

  add(key: string, by = 1): void {
    const slot = this.counts.has(key) || this.counts.size < this.maxKeys ? key : "other"
    this.counts.set(slot, (this.counts.get(slot) ?? 0) + by)
  }

  get(key: string): number {
    return this.counts.get(key) ?? 0
  }

  get total(): number {
    let sum = 0
    for (const count of this.counts.values()) sum += count
    return sum
  }

  /** `key:count` pairs, keys in natural order (statuses ascending). */
  format(separator = ":"): string {
    return [...this.counts.entries()]
      .sort(([a], [b]) => a.localeCompare(b, "en", { numeric: true }))
      .map(([key, count]) => `${key}${separator}${count}`)
      .join(" ")
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.counts)
  }
}

/** What the soak calls a gateway misbehaviour when a client sees it. */
export type FindingName =
  | "500 internal_error"
  | "upstream key in a response"
  | "invalid chunk forwarded"
  | "invalid completion forwarded"
  | "invalid usage forwarded"
  | "nesting deeper than 200 forwarded"
  | "data after [DONE]"
  | "error body not in OpenAI's envelope"
  | "stream ended without [DONE] or error frame"
  | "unexpected status for a malformed request"
  | "no answer within the client timeout"
  | "connection broken on a well-behaved request"

const exampleChars = 300

/** Findings with their counts and the first example of each. */
export class Findings {
  readonly counts = new Counter()
  private readonly examples = new Map<FindingName, string>()

  add(name: FindingName, example: string): void {
    this.counts.add(name)
    if (!this.examples.has(name)) this.examples.set(name, example.length > exampleChars ? `${example.slice(0, exampleChars)}…` : example)
  }

  list(): ReadonlyArray<{ readonly name: FindingName; readonly count: number; readonly example: string }> {
    return [...this.examples.entries()].map(([name, example]) => ({ name, count: this.counts.get(name), example }))
  }
}

/** Everything the clients saw. */
export class Tally {
  /** Requests finished, whatever the outcome (clients that left on purpose included). */
  done = 0
  /** Client-visible HTTP statuses. */
  readonly statuses = new Counter()
  /** Transport failures the clients saw, by code and phase. */
  readonly clientErrors = new Counter()
  /** How 200 streams ended: done, error-frame, cut; `left` when the client hung up on purpose. */
  readonly streamEnds = new Counter()
  /** What the clients did, by behaviour. */
  readonly behaviours = new Counter()
  readonly findings = new Findings()
}

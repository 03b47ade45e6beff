/** What the soak (bench/soak.ts) and its fault-injecting upstream child (bench/soak/upstream.ts) share. */

/** Every answer the soak upstream can give; `ok` is the healthy one, the rest are injected faults. */
export const faultNames = [
  "ok",
  "null-choice",
  "deep-json",
  "deep-json-chunk",
  "endless-body",
  "huge-chunks",
  "stall",
  "event-50mb",
  "redirect",
  "bad-usage",
  "key-in-error",
  "junk-choices",
  "html-to-stream",
  "json-to-stream",
  "gzip",
  "reset",
  "rate-limited",
  "server-error"
] as const

export type FaultName = (typeof faultNames)[number]

export const isFaultName = (name: string): name is FaultName => (faultNames as ReadonlyArray<string>).includes(name)

/** The upstream's first message: where its two servers listen. */
export interface UpstreamListening {
  readonly type: "listening"
  readonly port: number
  /** The redirect target: any request reaching it means the gateway followed an upstream redirect. */
  readonly trapPort: number
}

/** The upstream's counts, sent when the soak asks (`{ type: "stats" }`). */
export interface UpstreamStats {
  readonly type: "stats"
  /** Answers served per fault, keyed `<fault> <json|stream>`. */
  readonly served: Readonly<Record<string, number>>
  readonly trapHits: number
  /** Redirected requests that still carried the upstream key to the redirect target. */
  readonly trapHitsWithKey: number
  /** The last answers served, oldest first. */
  readonly recent: ReadonlyArray<{ readonly atMs: number; readonly answer: string }>
  /** Errors the upstream itself hit (it carries on). */
  readonly ownErrors: number
  readonly openConnections: number
}

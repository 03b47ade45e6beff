/** The command line of `npm run bench`. */
import { portkeyVersion } from "./portkey.js"
import type { TargetName } from "./targets.js"

export interface Options {
  readonly peer: "portkey" | undefined
  readonly durationS: number
  readonly repeats: number
  readonly warmupS: number
  readonly only: ReadonlySet<TargetName>
  readonly profile: boolean
  readonly probeCount: number
  readonly largeCount: number
  readonly build: boolean
  readonly quick: boolean
  /** `--governance`: the keyed (memory and Redis) and WORKERS=2 scenarios of the proxy (bench/governance.ts). */
  readonly governance: boolean
  /** `--tracing`: the proxy with tracing off and on (always_on, to a local OTLP receiver), interleaved (bench/tracing.ts). */
  readonly tracing: boolean
  /** `--cache`: the response cache off, enabled with misses only, and hits (bench/cache.ts). */
  readonly cache: boolean
  /** POST /v1/messages beside /v1/chat/completions (bench/messages.ts); on whenever the proxy is measured, off with `--no-messages`. */
  readonly messages: boolean
  /** The Redis of the keyed-Redis scenario (`--redis-url`, default redis://127.0.0.1:6379). */
  readonly redisUrl: string
  /** `--against REF`: this proxy beside the one built from another commit, in alternating slices (bench/compare.ts). */
  readonly against: string | undefined
}

const usage = `usage: npm run bench -- [options]
  --peer portkey       also measure @portkey-ai/gateway@${portkeyVersion} (installed into a temporary folder)
  --duration S         seconds per load run (default 10; --quick: 3)
  --repeats N          repeats of every load run, medians reported (default 3; --quick: 1)
  --quick              --duration 3 --repeats 1, shorter warm-up and probes
  --only LIST          comma-separated targets among direct, proxy, peer
  --profile            also CPU-profile the proxy during a c=50 non-stream run (bench/results/profiles)
  --probe-count N      streams in the time-to-first-token probe (default 100; --quick: 15)
  --no-build           use the existing dist/ instead of running npm run build
  --governance         also measure the proxy with a key (rpm + tpm + max_parallel) on the memory store and on
                       Redis, and with WORKERS=2, against the keyless proxy (a second table)
  --no-messages        leave out the /v1/messages beside /v1/chat/completions table (bench/messages.ts)
  --tracing            also measure the proxy with OpenTelemetry tracing off and on (every request sampled,
                       exported over OTLP/HTTP to a local receiver), interleaved (a third table)
  --cache              also measure the response cache: a model without it, the same with it and every request a
                       miss, and every request a hit, interleaved (a table of its own)
  --against REF        also measure this proxy beside the proxy built from git REF (a temporary worktree),
                       non-stream and streamed at c=50 in alternating slices, with the per-pair CPU ratio
  --redis-url URL      the Redis of --governance (default redis://127.0.0.1:6379); the bench writes under a
                       REDIS_KEY_PREFIX of its own and deletes those keys at the end`

export const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const value = (name: string): string | undefined => {
    const index = argv.indexOf(name)
    if (index < 0) return undefined
    const next = argv[index + 1]
    if (next === undefined || next.startsWith("--")) throw new Error(`${name} needs a value\n${usage}`)
    return next
  }
  const positive = (name: string, fallback: number): number => {
    const text = value(name)
    if (text === undefined) return fallback
    const parsed = Number(text)
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name} must be a positive number, got "${text}"`)
    return parsed
  }
  const known = new Set(["--peer", "--duration", "--repeats", "--quick", "--only", "--profile", "--probe-count", "--no-build", "--governance", "--tracing", "--cache", "--redis-url", "--no-messages", "--against", "--help", "-h"])
  for (const arg of argv) {
    if (arg.startsWith("-") && !known.has(arg)) throw new Error(`unknown option ${arg}\n${usage}`)
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage)
    process.exit(0)
  }
  const quick = argv.includes("--quick")
  const peerName = value("--peer")
  if (peerName !== undefined && peerName !== "portkey") throw new Error(`--peer supports only "portkey", got "${peerName}"`)
  const onlyText = value("--only")
  const only = new Set<TargetName>()
  for (const name of (onlyText ?? "direct,proxy,peer").split(",").map((part) => part.trim())) {
    if (name !== "direct" && name !== "proxy" && name !== "peer" && name !== "portkey") {
      throw new Error(`--only takes direct, proxy, peer; got "${name}"`)
    }
    only.add(name === "portkey" ? "peer" : name)
  }
  if (peerName === undefined) only.delete("peer")
  if (onlyText !== undefined && onlyText.includes("peer") && peerName === undefined) {
    throw new Error("--only peer needs --peer portkey")
  }
  const governance = argv.includes("--governance")
  const tracing = argv.includes("--tracing")
  const cache = argv.includes("--cache")
  if (cache && !only.has("proxy")) throw new Error("--cache measures the proxy: leave proxy in --only")
  if (tracing && !only.has("proxy")) throw new Error("--tracing measures the proxy: leave proxy in --only")
  if (governance && !only.has("proxy")) throw new Error("--governance measures the proxy: leave proxy in --only")
  const against = value("--against")
  if (against !== undefined && !only.has("proxy")) throw new Error("--against measures the proxy: leave proxy in --only")
  if (!governance && argv.includes("--redis-url")) throw new Error("--redis-url is for --governance")
  return {
    peer: peerName,
    durationS: positive("--duration", quick ? 3 : 10),
    repeats: Math.round(positive("--repeats", quick ? 1 : 3)),
    warmupS: quick ? 2 : 3,
    only,
    profile: argv.includes("--profile"),
    probeCount: Math.round(positive("--probe-count", quick ? 15 : 100)),
    largeCount: quick ? 30 : 50,
    build: !argv.includes("--no-build"),
    quick,
    governance,
    tracing,
    cache,
    messages: only.has("proxy") && !argv.includes("--no-messages"),
    redisUrl: value("--redis-url") ?? "redis://127.0.0.1:6379",
    against
  }
}

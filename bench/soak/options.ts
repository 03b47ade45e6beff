/** The command line of `npm run soak`. */
import { faultNames, isFaultName } from "./protocol.js"
import type { FaultName } from "./protocol.js"

export interface SoakOptions {
  readonly minutes: number
  readonly connections: number
  readonly build: boolean
  /** The upstream answers the `/mix` deployments draw from. */
  readonly faults: ReadonlyArray<FaultName>
  /** Seconds of load before RSS is taken as the baseline for growth. */
  readonly warmupS: number
  /** RSS is the median of this many seconds of readings, after the warm-up and at the end. */
  readonly rssWindowS: number
}

const usage = `usage: npm run soak -- [options]
  --minutes N       minutes of load (default 10; --quick: 1)
  --quick           --minutes 1
  --connections N   concurrent clients (default 100)
  --faults LIST     comma-separated upstream answers to draw from (default: all), among
                    ${faultNames.join(", ")}
  --no-build        use the existing dist/ instead of running npm run build

PASS needs: RSS growth < 10 % from the end of the warm-up (the first minute; the first half of runs shorter
than 3 minutes) to the end of the load, the gateway's sockets back near their idle count after the load, and no
crash (a crashed gateway is restarted and the load resumes, up to 5 crashes).`

export const parseSoakOptions = (argv: ReadonlyArray<string>): SoakOptions => {
  const known = new Set(["--minutes", "--quick", "--connections", "--faults", "--no-build", "--help", "-h"])
  for (const arg of argv) {
    if (arg.startsWith("-") && !known.has(arg)) throw new Error(`unknown option ${arg}\n${usage}`)
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage)
    process.exit(0)
  }
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
  const minutes = positive("--minutes", argv.includes("--quick") ? 1 : 10)
  const faultsText = value("--faults")
  const faults = faultsText === undefined ? [...faultNames] : faultsText.split(",").map((name) => name.trim())
  const unknown = faults.filter((name) => !isFaultName(name))
  if (unknown.length > 0) throw new Error(`--faults: unknown ${unknown.join(", ")}; known: ${faultNames.join(", ")}`)
  return {
    minutes,
    connections: Math.round(positive("--connections", 100)),
    build: !argv.includes("--no-build"),
    faults: faults.filter(isFaultName),
    warmupS: minutes >= 3 ? 60 : (minutes * 60) / 2,
    // GC makes RSS swing by tens of MB within seconds: longer runs get longer windows.
    rssWindowS: Math.max(10, Math.min(60, Math.round(minutes * 6)))
  }
}

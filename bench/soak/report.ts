/** The soak's output: one progress line every 10 s, and the summary with its PASS/FAIL verdict. */
import type { TcpSocket } from "../proc.js"
import type { LogSummary } from "./logs.js"
import type { GatewayMonitor, HealthProbe, Reading } from "./monitor.js"
import type { SoakOptions } from "./options.js"
import type { UpstreamStats } from "./protocol.js"
import type { Tally } from "./tally.js"

/** Sockets the gateway may still hold after the load on top of its idle count (a probe's connection closing). */
export const socketSlack = 2
export const maxRssGrowthPercent = 10

const percent = (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)}%` : "?")
const mb = (value: number) => (Number.isFinite(value) ? `${value.toFixed(1)} MB` : "n/a")

export const progressLine = (reading: Reading, monitor: GatewayMonitor, health: HealthProbe, tally: Tally, inFlight: number): string =>
  [
    `[${reading.atS.toFixed(0).padStart(4)} s]`,
    `RSS ${mb(reading.rssMb)}`,
    `sockets ${reading.sockets}`,
    `CPU ${percent(monitor.recentCpuPercent)} (machine ${percent(monitor.recentMachinePercent)})`,
    `/health ${health.last}`,
    `requests ${tally.done} (in flight ${inFlight})`,
    `status ${tally.statuses.format() || "-"}`,
    `client errors ${tally.clientErrors.total === 0 ? "0" : tally.clientErrors.format()}`
  ].join("  ")

export interface Crash {
  /** Which start of the gateway crashed (1, then one more per restart). */
  readonly instance: number
  readonly atS: number
  readonly code: number | null
  readonly signal: string | null
  readonly stderrTail: string
  /** The upstream's last answers before the crash: `<s of load> <fault> <mode>`. */
  readonly recentUpstream: ReadonlyArray<string>
}

export interface SoakOutcome {
  readonly options: SoakOptions
  readonly build: string
  readonly loadS: number
  readonly tally: Tally
  readonly monitor: GatewayMonitor
  readonly idle: Reading
  /** The gateway's sockets once the load stopped and they settled (or the wait ran out). */
  readonly afterLoad: { readonly sockets: number; readonly waitedS: number; readonly leftovers: ReadonlyArray<TcpSocket> } | undefined
  readonly crashes: ReadonlyArray<Crash>
  readonly upstream: UpstreamStats | undefined
  readonly gatewayPort: number
  readonly upstreamPort: number
  /** The slowest `/health` answer to a new connection during the load, ms. */
  readonly healthMaxMs: number
  readonly log: LogSummary
  readonly stderr: LogSummary
  readonly after: ReadonlyArray<string>
}

/** A crash's error line and first frame: crashes of one kind share them. */
const crashKind = (stderrTail: string): string => {
  const lines = stderrTail.split("\n").map((line) => line.trim())
  return `${lines.find((line) => /Error\b/.test(line)) ?? ""} ${lines.find((line) => line.startsWith("at ")) ?? ""}`
}

const verdict = (pass: boolean) => (pass ? "PASS" : "FAIL")

/** Leftover sockets grouped by peer and state, e.g. `upstream ESTABLISHED ×3`. */
const describeLeftovers = (sockets: ReadonlyArray<TcpSocket>, gatewayPort: number, upstreamPort: number): string => {
  const groups = new Map<string, number>()
  for (const socket of sockets) {
    const peer =
      socket.state === "LISTEN"
        ? "listening"
        : socket.remotePort === upstreamPort
          ? "to the upstream"
          : socket.localPort === gatewayPort
            ? "from a client"
            : `port ${socket.remotePort}`
    const key = `${peer} ${socket.state}`
    groups.set(key, (groups.get(key) ?? 0) + 1)
  }
  return [...groups.entries()].map(([key, count]) => `${key} ×${count}`).join(", ")
}

/** Prints the summary; true on PASS. */
export const printSummary = (outcome: SoakOutcome): boolean => {
  const { tally, monitor, idle, afterLoad, crashes, upstream, log, stderr, options } = outcome
  const growth = (100 * (monitor.endRssMb - monitor.warmRssMb)) / monitor.warmRssMb
  const rssPass = Number.isFinite(growth) && growth < maxRssGrowthPercent
  const socketsPass = afterLoad !== undefined && afterLoad.sockets <= idle.sockets + socketSlack
  const crashPass = crashes.length === 0
  const lines: Array<string> = []
  const out = (line = "") => lines.push(line)

  const load = outcome.loadS >= 60 ? `${(outcome.loadS / 60).toFixed(1)} min` : `${outcome.loadS.toFixed(0)} s`
  out(`\n== soak summary: ${load} of load at c=${options.connections}; gateway ${outcome.build}`)
  out(`requests      ${tally.done} finished; behaviours ${tally.behaviours.format()}`)
  out(`statuses      ${tally.statuses.format() || "-"}`)
  out(`200 streams   ${tally.streamEnds.format() || "-"}`)
  out(`client errors ${tally.clientErrors.total === 0 ? "0" : tally.clientErrors.format()}`)
  out(`new clients   the slowest /health answer to a new connection during the load took ${outcome.healthMaxMs.toFixed(0)} ms (one probe at a time, every 10 s)`)
  out(`machine       CPU ${percent(monitor.overallMachinePercent)} busy over the load (all cores; near 100 % the gateway competes for CPU and its latencies are not its own)`)
  if (upstream !== undefined) {
    const served = Object.entries(upstream.served)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, count]) => `${key.replace(" ", "/")}:${count}`)
      .join(" ")
    out(`upstream      answers ${served}`)
    out(`              redirect target reached ${upstream.trapHits} times (${upstream.trapHitsWithKey} with the upstream key); upstream's own errors ${upstream.ownErrors}; its open connections now ${upstream.openConnections}`)
  } else out("upstream      no stats (it did not answer)")
  out(`gateway log   ${log.lines} lines on stdout, ${stderr.lines} on stderr; lines quoting the upstream key: ${log.secretLines + stderr.secretLines}`)
  if (log.lines > 0) out(`              ${log.messages.format(" ×")}`)
  if (stderr.lines > 0 && crashes.length === 0) out(`              stderr: ${stderr.messages.format(" ×")}`)
  for (const line of outcome.after) out(line)
  out()
  out(
    `RSS           idle ${mb(idle.rssMb)}; after warm-up ${mb(monitor.warmRssMb)} (median of ${monitor.warmupEndS.toFixed(0)}–${(monitor.warmupEndS + monitor.windowS).toFixed(0)} s); at the end ${mb(monitor.endRssMb)} (median of the last ${monitor.windowS} s); max ${mb(monitor.maxRssMb)}; growth ${Number.isFinite(growth) ? `${growth >= 0 ? "+" : ""}${growth.toFixed(1)} %` : "n/a"}  ${verdict(rssPass)} (< ${maxRssGrowthPercent} %)`
  )
  out(
    afterLoad === undefined
      ? `sockets       idle ${idle.sockets}; max ${monitor.maxSockets}; not measured after the load (the gateway is gone)  FAIL`
      : `sockets       idle ${idle.sockets}; max ${monitor.maxSockets}; ${afterLoad.sockets} after the load (${afterLoad.waitedS.toFixed(1)} s idle)  ${verdict(socketsPass)} (≤ idle + ${socketSlack})`
  )
  if (afterLoad !== undefined && !socketsPass) out(`              still open: ${describeLeftovers(afterLoad.leftovers, outcome.gatewayPort, outcome.upstreamPort)}`)
  out(`crashes       ${crashes.length}${crashes.length === 0 ? "" : " (each restarted; the load resumed)"}  ${verdict(crashPass)}`)
  const firstOfKind = new Map<string, number>()
  crashes.forEach((crash, index) => {
    const kind = crashKind(crash.stderrTail)
    const same = firstOfKind.get(kind)
    out(`  ${index + 1}. gateway #${crash.instance} exited at ${crash.atS.toFixed(0)} s with code ${String(crash.code)}, signal ${String(crash.signal)}${same === undefined ? "; stderr tail:" : `: the same as ${same}`}`)
    if (same === undefined) {
      firstOfKind.set(kind, index + 1)
      for (const line of crash.stderrTail.trim().split("\n").slice(-25)) out(`       ${line.slice(0, 300)}`)
    }
    out(`     the upstream's last answers before it: ${crash.recentUpstream.slice(-12).join(", ") || "unknown"}`)
  })

  const findings = tally.findings.list()
  out()
  out(`findings (misbehaviour the clients saw; reported, not part of PASS/FAIL): ${findings.length === 0 ? "none" : ""}`)
  for (const finding of findings) out(`  - ${finding.name} ×${finding.count}; first: ${finding.example.replace(/\s+/g, " ")}`)
  const pass = rssPass && socketsPass && crashPass
  out()
  out(`RESULT: ${verdict(pass)}`)
  console.log(lines.join("\n"))
  return pass
}

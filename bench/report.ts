/** The benchmark's report: one table of medians (printed) and bench/results/<timestamp>.json. */
import { execFileSync } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, release, totalmem } from "node:os"
import { join } from "node:path"
import { governanceRows, governanceTable } from "./governance.js"
import type { GovernanceReport } from "./governance.js"
import { cacheTable } from "./cache.js"
import type { CacheReport } from "./cache.js"
import { messagesTable } from "./messages.js"
import type { MessagesReport } from "./messages.js"
import { tracingTable } from "./tracing.js"
import type { TracingReport } from "./tracing.js"
import { failures } from "./measure.js"
import type { RunSample, ScenarioName, TargetReport } from "./measure.js"
import type { Options } from "./options.js"
import { resultsDir, rootDir } from "./paths.js"
import { portkeyVersion } from "./portkey.js"
import { tasksetWorks } from "./processes.js"
import { median } from "./stats.js"
import type { ProfileSummary } from "./summarize-profile.js"
import { targetOrder, ttftChunks, ttftDelayMs } from "./targets.js"
import type { TargetName } from "./targets.js"

const med = (report: TargetReport | undefined, scenario: ScenarioName, pick: (run: RunSample) => number | undefined): number =>
  report === undefined ? Number.NaN : median(report.runs[scenario].map((run) => pick(run) ?? Number.NaN))

interface Row {
  readonly metric: string
  readonly direct: number
  readonly proxy: number
  readonly peer: number
  /** Whether the ratio columns make sense for this row. */
  readonly ratios: boolean
  readonly target?: string
  readonly pass?: boolean | undefined
  readonly digits: number
}

const buildRows = (reports: Partial<Record<TargetName, TargetReport>>): ReadonlyArray<Row> => {
  const { direct, proxy, peer } = reports
  const each = (pick: (report: TargetReport) => number) => ({
    direct: direct === undefined ? Number.NaN : pick(direct),
    proxy: proxy === undefined ? Number.NaN : pick(proxy),
    peer: peer === undefined ? Number.NaN : pick(peer)
  })
  const scenario = (name: ScenarioName, pick: (run: RunSample) => number | undefined) => each((report) => med(report, name, pick))
  const check = (value: number, ok: (value: number) => boolean): boolean | undefined => (Number.isFinite(value) ? ok(value) : undefined)
  const versusDirect = (values: { direct: number; proxy: number; peer: number }) => ({
    direct: Number.NaN,
    proxy: values.proxy - values.direct,
    peer: values.peer - values.direct
  })
  const totalFailures = (name: ScenarioName) => each((report) => report.runs[name].reduce((sum, run) => sum + failures(run), 0))

  const rps50 = scenario("ns-c50", (run) => run.reqPerSec)
  const streamRps = scenario("stream-c50", (run) => run.reqPerSec)
  const cpu = scenario("ns-c50", (run) => run.cpuUsPerRequest)
  const p99c1 = scenario("ns-c1", (run) => run.latencyMs.p99)
  const ttftP50 = each((report) => report.probe?.firstTokenMs.p50 ?? Number.NaN)
  const rss = scenario("ns-c200", (run) => run.peakRssMb)
  const errors200 = totalFailures("ns-c200")
  const tinyP50 = each((report) => report.tiny?.latencyMs.p50 ?? Number.NaN)
  const largeP50 = each((report) => report.large?.latencyMs.p50 ?? Number.NaN)
  const largeAdded = { direct: largeP50.direct - tinyP50.direct, proxy: largeP50.proxy - tinyP50.proxy, peer: largeP50.peer - tinyP50.peer }

  return [
    { metric: "non-stream c=1 req/s", ...scenario("ns-c1", (run) => run.reqPerSec), ratios: true, digits: 0 },
    { metric: "non-stream c=1 p50 ms", ...scenario("ns-c1", (run) => run.latencyMs.p50), ratios: true, digits: 3 },
    { metric: "non-stream c=1 p99 ms", ...p99c1, ratios: true, digits: 3 },
    {
      metric: "  added p99 c=1 vs direct, ms",
      ...versusDirect(p99c1),
      ratios: false,
      target: "≤ 1 ms",
      pass: check(p99c1.proxy - p99c1.direct, (value) => value <= 1),
      digits: 3
    },
    {
      metric: "non-stream c=50 req/s",
      ...rps50,
      ratios: true,
      target: "≥ 3× peer",
      pass: check(rps50.proxy / rps50.peer, (value) => value >= 3),
      digits: 0
    },
    { metric: "non-stream c=50 p50 ms", ...scenario("ns-c50", (run) => run.latencyMs.p50), ratios: true, digits: 2 },
    { metric: "non-stream c=50 p99 ms", ...scenario("ns-c50", (run) => run.latencyMs.p99), ratios: true, digits: 2 },
    { metric: "non-stream c=200 req/s", ...scenario("ns-c200", (run) => run.reqPerSec), ratios: true, digits: 0 },
    { metric: "non-stream c=200 p99 ms", ...scenario("ns-c200", (run) => run.latencyMs.p99), ratios: true, digits: 2 },
    {
      metric: "stream(20) c=50 req/s",
      ...streamRps,
      ratios: true,
      target: "≥ 3× peer",
      pass: check(streamRps.proxy / streamRps.peer, (value) => value >= 3),
      digits: 0
    },
    { metric: "stream(20) c=50 p99 ms", ...scenario("stream-c50", (run) => run.latencyMs.p99), ratios: true, digits: 2 },
    {
      metric: "gateway CPU µs/req (ns c=50)",
      ...cpu,
      ratios: true,
      target: "≤ 250 µs",
      pass: check(cpu.proxy, (value) => value <= 250),
      digits: 0
    },
    { metric: "load core busy % (ns c=50)", ...scenario("ns-c50", (run) => run.loadCorePercent), ratios: false, digits: 0 },
    {
      metric: "other CPU on machine %, max",
      ...each((report) => Math.max(...Object.values(report.runs).flatMap((runs) => runs.map((run) => run.otherCpuPercent ?? 0)))),
      ratios: false,
      digits: 0
    },
    { metric: "TTFT probe: headers p50 ms", ...each((report) => report.probe?.headersMs.p50 ?? Number.NaN), ratios: true, digits: 2 },
    { metric: "TTFT probe: first token p50 ms", ...ttftP50, ratios: true, digits: 2 },
    { metric: "TTFT probe: first token p99 ms", ...each((report) => report.probe?.firstTokenMs.p99 ?? Number.NaN), ratios: true, digits: 2 },
    {
      metric: "  added TTFT p50 vs direct, ms",
      ...versusDirect(ttftP50),
      ratios: false,
      target: "≤ 1 ms",
      pass: check(ttftP50.proxy - ttftP50.direct, (value) => value <= 1),
      digits: 3
    },
    {
      metric: "peak RSS c=200, MB",
      ...rss,
      ratios: true,
      target: "≤ 150 MB",
      pass: check(rss.proxy, (value) => value <= 150),
      digits: 0
    },
    {
      metric: "failures at c=200 (all repeats)",
      ...errors200,
      ratios: false,
      target: "0",
      pass: check(errors200.proxy, (value) => value === 0),
      digits: 0
    },
    {
      metric: "failures, other load runs",
      ...each((report) =>
        (["ns-c1", "ns-c50", "stream-c50"] as const).reduce(
          (sum, name) => sum + report.runs[name].reduce((inner, run) => inner + failures(run), 0),
          (report.probe?.errors ?? 0) + (report.tiny?.errors ?? 0) + (report.large?.errors ?? 0)
        )
      ),
      ratios: false,
      digits: 0
    },
    { metric: "tiny request p50 ms (sequential)", ...tinyP50, ratios: true, digits: 3 },
    { metric: "~100k-token request p50 ms", ...largeP50, ratios: true, digits: 2 },
    {
      metric: "  added by ~100k tokens, ms",
      ...largeAdded,
      ratios: true,
      target: "≤ 5 ms",
      pass: check(largeAdded.proxy, (value) => value <= 5),
      digits: 2
    }
  ]
}

const formatNumber = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : "—")
const formatRatio = (a: number, b: number, enabled: boolean): string =>
  enabled && Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : "—"

const renderTable = (rows: ReadonlyArray<Row>, shown: ReadonlySet<TargetName>): string => {
  const header = ["metric", "direct", "proxy", "peer", "proxy÷direct", "proxy÷peer", "target", "pass?"]
  const body = rows.map((row) => [
    row.metric,
    shown.has("direct") ? formatNumber(row.direct, row.digits) : "—",
    shown.has("proxy") ? formatNumber(row.proxy, row.digits) : "—",
    shown.has("peer") ? formatNumber(row.peer, row.digits) : "—",
    formatRatio(row.proxy, row.direct, row.ratios),
    formatRatio(row.proxy, row.peer, row.ratios),
    row.target ?? "",
    row.pass === undefined ? (row.target === undefined ? "" : "n/a") : row.pass ? "PASS" : "FAIL"
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => (cells[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, column) => (column === 0 || column >= 6 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join(" | ")} |`
  return [line(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...body.map(line)].join("\n")
}

export const machineInfo = () => {
  let cpuModel = cpus()[0]?.model ?? "unknown"
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))
    if (match?.[1] !== undefined) cpuModel = match[1].trim()
  } catch {
    // not Linux
  }
  const git = (args: ReadonlyArray<string>) => {
    try {
      return execFileSync("git", args, { cwd: rootDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    } catch {
      return undefined
    }
  }
  return {
    cpu: cpuModel,
    cores: availableParallelism(),
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    os: `${process.platform} ${release()}`,
    pinning: tasksetWorks ? "gateway on core 0; load generator + upstream on core 1 (taskset)" : "none (taskset unavailable or < 2 cores)",
    commit: git(["rev-parse", "--short", "HEAD"]),
    dirtyTree: (git(["status", "--porcelain", "--untracked-files=no"]) ?? "") !== ""
  }
}

export type MachineInfo = ReturnType<typeof machineInfo>

export interface BenchOutcome {
  readonly options: Options
  readonly machine: MachineInfo
  readonly started: Date
  readonly reports: Partial<Record<TargetName, TargetReport>>
  readonly profile: ProfileSummary | undefined
  /** `--governance` only. */
  readonly governance?: GovernanceReport | undefined
  /** `--tracing` only. */
  readonly tracing?: TracingReport | undefined
  /** `--cache` only. */
  readonly cache?: CacheReport | undefined
  /** Whenever the proxy is measured, unless `--no-messages`. */
  readonly messages?: MessagesReport | undefined
}

/** Prints the table (and which targets failed or ran disturbed) and writes it, with every sample, to bench/results. */
export const publishReport = ({ options, machine, started, reports, profile, governance, tracing, cache, messages }: BenchOutcome): void => {
  const rows = buildRows(reports)
  const shown = new Set(targetOrder.filter((name) => reports[name] !== undefined && reports[name]?.error === undefined))
  const table = renderTable(rows, shown)
  const finished = new Date()
  console.log(
    `\n## llm-proxy bench — ${finished.toISOString()}\n${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, node ${machine.node}, ${machine.os}; ${machine.pinning}`
  )
  console.log(
    `runs: ${options.durationS} s × ${options.repeats} (medians); TTFT probe ${options.probeCount} streams of ${ttftChunks}×${ttftDelayMs} ms; large request ${options.largeCount} sequential; peer: ${options.peer === undefined ? "none" : `portkey ${portkeyVersion}`}\n`
  )
  console.log(table)
  for (const report of Object.values(reports)) {
    if (report.error !== undefined) console.log(`\n${report.name} FAILED: ${report.error}`)
  }
  const governanceRowList = governance === undefined ? undefined : governanceRows(governance)
  const secondTable = governance === undefined || governanceRowList === undefined ? undefined : governanceTable(governance, governanceRowList)
  if (governance !== undefined && secondTable !== undefined) {
    console.log(`\n### governance (--governance): llm-proxy with a key, on Redis, with WORKERS=2\n\n${secondTable}`)
    for (const [part, error] of Object.entries(governance.errors)) console.log(`\ngovernance ${part} FAILED: ${error}`)
  }
  if (messages !== undefined) {
    console.log(`\n### messages: POST /v1/messages and POST /v1/responses (streamed) beside POST /v1/chat/completions (medians)\n\n${messagesTable(messages)}`)
    for (const error of messages.errors) console.log(`\nmessages FAILED: ${error}`)
  }
  if (tracing !== undefined) {
    console.log(`\n### tracing (--tracing): llm-proxy with OpenTelemetry tracing off and on (always_on)\n\n${tracingTable(tracing)}`)
    for (const error of tracing.errors) console.log(`\ntracing FAILED: ${error}`)
  }
  const disturbed = [
    ...Object.values(reports).flatMap((report) =>
      Object.entries(report.runs).flatMap(([scenario, runs]) =>
        runs.filter((run) => (run.otherCpuPercent ?? 0) >= 10).map((run) => `${report.name} ${scenario} (${(run.otherCpuPercent ?? 0).toFixed(0)}%)`)
      )
    ),
    ...Object.entries(governance?.runs ?? {}).flatMap(([scenario, runs]) =>
      runs.filter((run) => (run.otherCpuPercent ?? 0) >= 10).map((run) => `governance ${scenario} (${(run.otherCpuPercent ?? 0).toFixed(0)}%)`)
    )
  ]
  if (disturbed.length > 0) {
    console.log(`\nWARNING: other processes used ≥ 10% of a core during: ${disturbed.join(", ")}; those numbers are disturbed.`)
  }

  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${started.toISOString().replace(/[:.]/g, "-")}.json`)
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date: started.toISOString(),
        finished: finished.toISOString(),
        machine,
        options: { ...options, only: [...options.only] },
        targets: reports,
        rows: rows.map((row) => ({
          ...row,
          proxyOverDirect: row.ratios ? row.proxy / row.direct : null,
          proxyOverPeer: row.ratios ? row.proxy / row.peer : null
        })),
        table,
        profile,
        ...(governance === undefined ? {} : { governance: { ...governance, rows: governanceRowList, table: secondTable } }),
        ...(tracing === undefined ? {} : { tracing: { ...tracing, table: tracingTable(tracing) } }),
        ...(cache === undefined ? {} : { cache: { ...cache, table: cacheTable(cache) } }),
        ...(messages === undefined ? {} : { messages: { ...messages, table: messagesTable(messages) } })
      },
      (_key, value: unknown) => (typeof value === "number" && !Number.isFinite(value) ? null : value),
      2
    )}\n`
  )
  console.log(`\nwritten ${file.slice(rootDir.length + 1)} (${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s)`)
}

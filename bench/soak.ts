/**
 * `npm run soak`: llm-proxy, built and started as users run it, under N minutes of mixed traffic at c=100 against
 * an upstream that answers with a fault drawn at random per request (bench/soak/faults.ts). Every 10 s one line:
 * the gateway's RSS and open sockets, requests done, client-visible statuses, client errors. At the end: RSS
 * growth after the warm-up, sockets after the load, crashes — PASS or FAIL (exit code 0 on PASS) — and what
 * misbehaviour the clients saw.
 *
 *   npm run soak -- [--minutes N] [--quick] [--connections N] [--faults LIST] [--no-build]
 */
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { request as httpRequest } from "node:http"
import { rootDir } from "./paths.js"
import { socketInodesOf, tcpSocketsOf } from "./proc.js"
import { isAlive, killAllNow, makeTempDir, sleep, stopChild, tail } from "./processes.js"
import { startGateway, startSoakUpstream, upstreamStats } from "./soak/children.js"
import type { Gateway } from "./soak/children.js"
import { summarizeLog } from "./soak/logs.js"
import { GatewayMonitor, HealthProbe, readGateway } from "./soak/monitor.js"
import { parseSoakOptions } from "./soak/options.js"
import { faultNames } from "./soak/protocol.js"
import { printSummary, progressLine, socketSlack } from "./soak/report.js"
import type { Crash, SoakOutcome } from "./soak/report.js"
import { Traffic } from "./soak/traffic.js"
import { buildProxy } from "./targets.js"

const progressEveryS = 10
/** How long the gateway gets, once the load stops, to close what it held. */
const settleS = 20
/** A gateway that crashes is restarted (same port, same key) and the load resumes, up to this many crashes. */
const maxCrashes = 5

/** The commit the gateway was built from, and whether src/ had uncommitted changes. */
const buildLabel = (): string => {
  const git = (args: ReadonlyArray<string>) => {
    try {
      return execFileSync("git", args, { cwd: rootDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    } catch {
      return ""
    }
  }
  const commit = git(["rev-parse", "--short", "HEAD"]) || "unknown commit"
  return git(["status", "--porcelain", "--", "src"]) === "" ? commit : `${commit} + uncommitted changes in src/`
}

/** A GET on its own connection (no kept-alive socket left on the gateway): status and at most 1 MB of body. */
const get = (url: string, headers: Readonly<Record<string, string>> = {}): Promise<{ readonly status: number; readonly body: string }> =>
  new Promise((done) => {
    const request = httpRequest(url, { headers, agent: false }, (response) => {
      const pieces: Array<Buffer> = []
      let size = 0
      response.on("data", (piece: Buffer) => {
        if (size < 1024 * 1024) pieces.push(piece)
        size += piece.length
      })
      response.on("end", () => done({ status: response.statusCode ?? 0, body: Buffer.concat(pieces).toString("utf8") }))
      response.on("error", () => done({ status: response.statusCode ?? 0, body: "" }))
    })
    request.setTimeout(10_000, () => request.destroy())
    request.on("error", (error) => done({ status: 0, body: error.message }))
    request.end()
  })

/** The token counters the gateway kept (the upstreams' usage values end up there) and any non-finite sample. */
const metricsLines = (body: string): ReadonlyArray<string> => {
  const samples = body.split("\n").filter((line) => line.startsWith("llm_proxy_"))
  const tokens = samples.filter((line) => line.startsWith("llm_proxy_tokens_total"))
  const odd = samples.filter((line) => /\s(NaN|[+-]?Inf)\b|\s-\d/.test(line))
  return [
    `              tokens: ${tokens.length === 0 ? "none" : tokens.map((line) => line.replace("llm_proxy_tokens_total", "")).join("; ")}`,
    ...(odd.length === 0 ? [] : [`              negative or non-finite samples: ${odd.slice(0, 10).join("; ")}`])
  ]
}

const main = async () => {
  const options = parseSoakOptions(process.argv.slice(2))
  const build = buildLabel()
  console.log(
    `llm-proxy soak: ${options.minutes} min at c=${options.connections}; upstream answers: ${options.faults.length === faultNames.length ? "all" : options.faults.join(", ")}; gateway ${build}`
  )
  if (options.build) buildProxy()

  const work = makeTempDir("llm-proxy-soak-")
  const upstreamKey = `sk-soak-${randomBytes(20).toString("hex")}`
  const upstream = await startSoakUpstream(work, upstreamKey, options.faults)
  let gateway = await startGateway(work, upstream.origin, upstreamKey)
  const gateways = [gateway]
  console.log(`gateway ${gateway.origin} (pid ${gateway.pid}); upstream ${upstream.origin}, redirect target ${upstream.trapOrigin}`)

  const traffic = new Traffic({
    host: gateway.host,
    port: gateway.port,
    apiKey: gateway.apiKey,
    upstreamKey,
    connections: options.connections,
    hugeChunks: options.faults.includes("huge-chunks")
  })
  let loadStarted = performance.now()
  const loadSeconds = () => (performance.now() - loadStarted) / 1000
  let stopping = false
  const watch = (current: Gateway) =>
    current.child.once("exit", () => {
      // What clients would see from here on is a closed port, not the gateway's behaviour.
      if (!stopping) void traffic.stop()
    })
  watch(gateway)

  await sleep(1_000)
  const idle = readGateway(gateway.pid, 0)
  console.log(`idle: RSS ${idle.rssMb.toFixed(1)} MB, ${idle.sockets} sockets; warm-up ${options.warmupS.toFixed(0)} s\n`)
  const monitor = new GatewayMonitor(gateway.pid, options.warmupS, options.rssWindowS)
  const health = new HealthProbe(`${gateway.origin}/health`)
  const crashes: Array<Crash> = []
  const durationS = options.minutes * 60
  loadStarted = performance.now()
  const loadStartedAtMs = Date.now()
  traffic.start()
  const stamp = (atS: number) => `[${atS.toFixed(0).padStart(4)} s]`
  let nextProgressS = progressEveryS
  let nextProbeS = progressEveryS / 2
  while (loadSeconds() < durationS) {
    // One reading a second, on the second.
    await sleep(1000 - ((performance.now() - loadStarted) % 1000))
    const atS = Math.round(loadSeconds())
    if (isAlive(gateway.child)) {
      traffic.countBreaks()
      const reading = monitor.read(atS)
      // Gone between the check and the reading: the next turn handles the crash.
      if (!Number.isFinite(reading.rssMb)) continue
      if (atS >= nextProgressS) {
        console.log(progressLine(reading, monitor, health, traffic.tally, traffic.inFlightCount))
        nextProgressS += progressEveryS
      }
      // Half-way between two progress lines, so that the next one shows the answer.
      if (atS >= nextProbeS) {
        health.probe()
        nextProbeS += progressEveryS
      }
      continue
    }
    await traffic.stop()
    traffic.blameBreaksOnCrash()
    const crash: Crash = {
      instance: gateway.instance,
      atS: loadSeconds(),
      code: gateway.child.exitCode,
      signal: gateway.child.signalCode,
      stderrTail: tail(gateway.stderrFile, 8_000),
      recentUpstream: ((await upstreamStats(upstream))?.recent ?? []).map(
        ({ atMs, answer }) => `${((atMs - loadStartedAtMs) / 1000).toFixed(1)} s ${answer}`
      )
    }
    crashes.push(crash)
    const errorLine = crash.stderrTail.split("\n").find((line) => /Error\b/.test(line)) ?? ""
    console.log(`${stamp(atS)}  CRASH: the gateway exited with code ${String(crash.code)}, signal ${String(crash.signal)}: ${errorLine.trim().slice(0, 160)}`)
    if (crashes.length >= maxCrashes || durationS - loadSeconds() < 15) break
    gateway = await startGateway(work, upstream.origin, upstreamKey, gateway)
    gateways.push(gateway)
    watch(gateway)
    console.log(`${stamp(loadSeconds())}  restarted the gateway (pid ${gateway.pid}); the load resumes`)
    monitor.follow(gateway.pid, loadSeconds())
    traffic.start()
  }
  const loadS = Math.min(loadSeconds(), durationS)
  await traffic.stop()
  if (isAlive(gateway.child)) traffic.countBreaks(true)
  else traffic.blameBreaksOnCrash()

  let afterLoad: SoakOutcome["afterLoad"]
  const after: Array<string> = []
  if (isAlive(gateway.child)) {
    const settleStarted = performance.now()
    let sockets = socketInodesOf(gateway.pid)
    while (sockets.length > idle.sockets + socketSlack && performance.now() - settleStarted < settleS * 1000) {
      await sleep(500)
      sockets = socketInodesOf(gateway.pid)
    }
    afterLoad = { sockets: sockets.length, waitedS: (performance.now() - settleStarted) / 1000, leftovers: tcpSocketsOf(sockets) }
    const health = await get(`${gateway.origin}/health`)
    const metrics = await get(`${gateway.origin}/metrics`, { authorization: `Bearer ${gateway.apiKey}` })
    after.push(`after load    /health ${health.status}; /metrics ${metrics.status} (${metrics.body.length} bytes)`)
    after.push(...metricsLines(metrics.body))
  }

  const upstreamCounts = await upstreamStats(upstream)
  stopping = true
  if (isAlive(gateway.child)) {
    const stopStarted = performance.now()
    await stopChild(gateway.child, 15_000)
    after.push(
      `shutdown      SIGTERM: exit code ${String(gateway.child.exitCode)}${gateway.child.signalCode === null ? "" : ` (signal ${gateway.child.signalCode})`} after ${(performance.now() - stopStarted).toFixed(0)} ms`
    )
  }
  await stopChild(upstream.child)

  const pass = printSummary({
    options,
    build,
    loadS,
    tally: traffic.tally,
    monitor,
    idle,
    afterLoad,
    crashes,
    upstream: upstreamCounts,
    gatewayPort: gateway.port,
    upstreamPort: Number(new URL(upstream.origin).port),
    healthMaxMs: health.maxMs,
    log: await summarizeLog(gateways.map((each) => each.stdoutFile), upstreamKey),
    stderr: await summarizeLog(gateways.map((each) => each.stderrFile), upstreamKey),
    after
  })
  process.exitCode = pass ? 0 : 1
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : String(error))
  killAllNow()
  process.exit(2)
})

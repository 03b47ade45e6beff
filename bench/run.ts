/**
 * `npm run bench`: llm-proxy against the bare upstream ("direct") and, with `--peer portkey`, against
 * Portkey's gateway, all routed to the same fast local OpenAI-compatible upstream (bench/upstream.ts).
 *
 * The gateway under test runs on core 0 and the load generator (bench/load.ts, autocannon) and the upstream
 * on core 1 when `taskset` exists. Each target is warmed up, then every scenario is repeated and the
 * medians are printed in one table and written to bench/results/<timestamp>.json.
 *
 * Two diagnostic rows say whether a number can be trusted: "load core busy %" (load generator + upstream;
 * near 100 % means the load side, not the gateway, is the limit) and "other CPU on machine %" (CPU used by
 * processes outside the benchmark during a run, e.g. tests running alongside; runs with ≥ 10 % are listed
 * in a warning under the table).
 *
 *   npm run bench -- [--peer portkey] [--duration S] [--repeats N] [--quick] [--only direct,proxy,peer]
 *                    [--profile] [--probe-count N] [--no-build]
 */
import { execFileSync, spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs"
import { get as httpGet } from "node:http"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { availableParallelism, cpus, release, tmpdir, totalmem } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { chatBody, largeChatBody } from "./payloads.js"
import type { Job, JobResult, LoaderMessage, LoadResult, ProbeResult, SequentialResult } from "./protocol.js"
import { median } from "./stats.js"
import { formatSummary, monotonicUs, newestProfile, summarizeProfile } from "./summarize-profile.js"
import type { ProfileSummary } from "./summarize-profile.js"

const benchDir = dirname(fileURLToPath(import.meta.url))
const rootDir = resolve(benchDir, "..")
const resultsDir = join(benchDir, "results")
const profilesDir = join(resultsDir, "profiles")

const portkeyVersion = "1.15.2"
const honoNodeServerPin = "1.14.1"
const ttftChunks = 20
const ttftDelayMs = 50

// ---------------------------------------------------------------------------------------------------------
// Options

type TargetName = "direct" | "proxy" | "peer"

interface Options {
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
}

const usage = `usage: npm run bench -- [options]
  --peer portkey       also measure @portkey-ai/gateway@${portkeyVersion} (installed into a temporary folder)
  --duration S         seconds per load run (default 10; --quick: 3)
  --repeats N          repeats of every load run, medians reported (default 3; --quick: 1)
  --quick              --duration 3 --repeats 1, shorter warm-up and probes
  --only LIST          comma-separated targets among direct, proxy, peer
  --profile            also CPU-profile the proxy during a c=50 non-stream run (bench/results/profiles)
  --probe-count N      streams in the time-to-first-token probe (default 100; --quick: 15)
  --no-build           use the existing dist/ instead of running npm run build`

const parseOptions = (argv: ReadonlyArray<string>): Options => {
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
  const known = new Set(["--peer", "--duration", "--repeats", "--quick", "--only", "--profile", "--probe-count", "--no-build", "--help", "-h"])
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
    quick
  }
}

// ---------------------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed on exit, failure or Ctrl-C.

const children = new Set<ChildProcess>()
let tempRoot: string | undefined

const isAlive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

const killAllNow = () => {
  for (const child of children) {
    if (isAlive(child)) child.kill("SIGKILL")
  }
}

process.on("exit", () => {
  killAllNow()
  if (tempRoot !== undefined) rmSync(tempRoot, { recursive: true, force: true })
})
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping the benchmark`)
    killAllNow()
    process.exit(130)
  })
}

const tasksetWorks = (() => {
  if (process.platform !== "linux" || availableParallelism() < 2) return false
  const probe = spawnSync("taskset", ["-c", "0", "true"], { stdio: "ignore" })
  return probe.status === 0
})()

/** `command` prefixed with `taskset -c <core>` where that works. */
const pinned = (core: number, command: ReadonlyArray<string>): ReadonlyArray<string> =>
  tasksetWorks ? ["taskset", "-c", String(core), ...command] : command

/** The node flags of `npm start` (e.g. `--max-semi-space-size=2`): the proxy is measured as users run it. */
const startNodeFlags = (): ReadonlyArray<string> => {
  const manifest = JSON.parse(readFileSync(join(rootDir, "package.json"), "utf8")) as { scripts?: Record<string, string> }
  return (manifest.scripts?.["start"] ?? "").split(/\s+/).filter((word) => word.startsWith("--"))
}

const tsxCommand = (script: string): ReadonlyArray<string> => [process.execPath, "--import", "tsx", join(benchDir, script)]

interface SpawnOptions {
  readonly name: string
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
  /** Where stdout and stderr go; the tail is shown when the process fails. */
  readonly logFile?: string
  readonly ipc?: boolean
}

const spawnTracked = (command: ReadonlyArray<string>, options: SpawnOptions): ChildProcess => {
  const [file, ...args] = command
  if (file === undefined) throw new Error("empty command")
  const log = options.logFile === undefined ? "inherit" : openSync(options.logFile, "a")
  const child = spawn(file, args, {
    cwd: options.cwd ?? rootDir,
    env: options.env ?? process.env,
    stdio: ["ignore", log, log, ...(options.ipc === true ? (["ipc"] as const) : [])]
  })
  if (typeof log === "number") closeSync(log)
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
const stopChild = async (child: ChildProcess, graceMs = 5_000): Promise<void> => {
  if (!isAlive(child)) return
  const exited = new Promise<void>((done) => child.once("exit", () => done()))
  child.kill("SIGTERM")
  const timer = setTimeout(() => {
    if (isAlive(child)) child.kill("SIGKILL")
  }, graceMs)
  await exited
  clearTimeout(timer)
}

const tail = (file: string | undefined, bytes = 4_000): string => {
  if (file === undefined || !existsSync(file)) return ""
  const size = statSync(file).size
  const fd = openSync(file, "r")
  const buffer = Buffer.alloc(Math.min(bytes, size))
  readSync(fd, buffer, 0, buffer.length, Math.max(0, size - buffer.length))
  closeSync(fd)
  return buffer.toString("utf8")
}

const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => done(port))
    })
  })

/** Polls `url` until it answers with one of `statuses` (any status when omitted). */
const waitForHttp = async (url: string, child: ChildProcess, name: string, logFile?: string, timeoutMs = 60_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(child)) {
      throw new Error(`${name} exited (code ${String(child.exitCode)}, signal ${String(child.signalCode)}) before it answered ${url}\n${tail(logFile)}`)
    }
    const status = await new Promise<number>((done) => {
      const request = httpGet(url, (response) => {
        response.resume()
        done(response.statusCode ?? 0)
      })
      request.setTimeout(1_000, () => request.destroy())
      request.on("error", () => done(0))
    })
    if (status >= 200 && status < 500) return
    await sleep(100)
  }
  throw new Error(`${name} did not answer ${url} within ${timeoutMs / 1000} s\n${tail(logFile)}`)
}

/** Resolves with the first IPC message of `type` from `child`. */
const waitForMessage = (child: ChildProcess, type: string, name: string, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
  new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start within ${timeoutMs / 1000} s`)), timeoutMs)
    const onExit = () => {
      clearTimeout(timer)
      fail(new Error(`${name} exited before it started`))
    }
    child.once("exit", onExit)
    const onMessage = (message: unknown) => {
      if (typeof message === "object" && message !== null && (message as { type?: unknown }).type === type) {
        clearTimeout(timer)
        child.off("exit", onExit)
        child.off("message", onMessage)
        done(message as Record<string, unknown>)
      }
    }
    child.on("message", onMessage)
  })

// ---------------------------------------------------------------------------------------------------------
// /proc readings of the gateway process

const clockTicks = (() => {
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
})()

/** CPU time (user + system, all threads) of `pid` in seconds. */
const cpuSecondsOf = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields after the command name start at field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    const text = execFileSync("ps", ["-o", "cputime=", "-p", String(pid)], { encoding: "utf8" }).trim()
    const [days, clock] = text.includes("-") ? text.split("-") : ["0", text]
    const parts = (clock ?? "0").split(":").map(Number).reverse()
    return Number(days) * 86_400 + (parts[0] ?? 0) + (parts[1] ?? 0) * 60 + (parts[2] ?? 0) * 3_600
  }
}

/** Resident set size and its high-water mark, in MB. */
const memoryOf = (pid: number): { readonly rssMb: number; readonly hwmMb: number } => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN)
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 }
  } catch {
    const rss = Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" }).trim()) / 1024
    return { rssMb: rss, hwmMb: Number.NaN }
  }
}

/**
 * Busy and steal CPU time of the whole machine (all cores) in seconds, from /proc/stat; used to spot other
 * work (tests, builds, noisy neighbours) running during a measurement.
 */
const machineCpu = (): { readonly busyS: number; readonly stealS: number } | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? ""
    // irq and softirq time is left out: the benchmark's own loopback traffic is processed there and
    // is not charged to any process.
    const [user, nice, system, , , , , steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return {
      busyS: ((user ?? 0) + (nice ?? 0) + (system ?? 0)) / clockTicks,
      stealS: (steal ?? 0) / clockTicks
    }
  } catch {
    return undefined
  }
}

const ownCpuSeconds = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

// ---------------------------------------------------------------------------------------------------------
// The load generator child

class Loader {
  private nextId = 1
  private readonly pending = new Map<number, { readonly done: (result: JobResult) => void; readonly fail: (error: Error) => void }>()
  private constructor(readonly child: ChildProcess) {
    child.on("message", (message: unknown) => this.onMessage(message))
    child.once("exit", (code, signal) => {
      for (const { fail } of this.pending.values()) fail(new Error(`the load generator exited (code ${String(code)}, signal ${String(signal)})`))
      this.pending.clear()
    })
  }

  static async start(): Promise<Loader> {
    const child = spawnTracked(pinned(1, tsxCommand("load.ts")), { name: "load generator", ipc: true })
    await waitForMessage(child, "ready", "the load generator")
    return new Loader(child)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  private onMessage(raw: unknown) {
    const message = raw as LoaderMessage
    if (!("id" in message)) return
    const waiter = this.pending.get(message.id)
    if (waiter === undefined) return
    this.pending.delete(message.id)
    if (message.ok) waiter.done(message.result)
    else waiter.fail(new Error(`load generator: ${message.error}`))
  }

  run(job: Job): Promise<JobResult> {
    const id = this.nextId++
    return new Promise((done, fail) => {
      this.pending.set(id, { done, fail })
      this.child.send({ id, job })
    })
  }

  async load(job: Omit<Extract<Job, { kind: "load" }>, "kind">): Promise<LoadResult> {
    const result = await this.run({ kind: "load", ...job })
    if (result.kind !== "load") throw new Error("unexpected reply from the load generator")
    return result
  }

  async probe(job: Omit<Extract<Job, { kind: "probe" }>, "kind">): Promise<ProbeResult> {
    const result = await this.run({ kind: "probe", ...job })
    if (result.kind !== "probe") throw new Error("unexpected reply from the load generator")
    return result
  }

  async sequential(job: Omit<Extract<Job, { kind: "sequential" }>, "kind">): Promise<SequentialResult> {
    const result = await this.run({ kind: "sequential", ...job })
    if (result.kind !== "sequential") throw new Error("unexpected reply from the load generator")
    return result
  }

  async stop(): Promise<void> {
    if (isAlive(this.child)) this.child.disconnect()
    await stopChild(this.child, 2_000)
  }
}

// ---------------------------------------------------------------------------------------------------------
// Upstreams and targets

interface Upstream {
  readonly child: ChildProcess
  readonly origin: string
}

const startUpstream = async (core: number, name: string): Promise<Upstream> => {
  const child = spawnTracked(pinned(core, tsxCommand("upstream.ts")), { name, ipc: true })
  const message = await waitForMessage(child, "listening", name)
  const port = message["port"]
  if (typeof port !== "number") throw new Error(`${name} reported no port`)
  return { child, origin: `http://127.0.0.1:${port}` }
}

/** How one target is called: URL and headers of a chat request, and the model name to put in it. */
interface Endpoint {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly model: string
}

type StreamShape = "fast" | "ttft"

interface RunningTarget {
  readonly name: TargetName
  readonly label: string
  /** The process whose CPU and memory are measured (the gateway, or the upstream itself for "direct"). */
  readonly pid: number
  /** The upstream this target forwards to, if it is not the target itself (its CPU runs on the load core). */
  readonly upstreamPid: number | undefined
  readonly endpoint: (shape: StreamShape) => Endpoint
  readonly stop: () => Promise<void>
}

const ttftPath = `/bench/c${ttftChunks}-d${ttftDelayMs}`

const startDirect = async (): Promise<RunningTarget> => {
  const upstream = await startUpstream(0, "direct upstream")
  return {
    name: "direct",
    label: "direct (bench upstream)",
    pid: upstream.child.pid ?? -1,
    upstreamPid: undefined,
    endpoint: (shape) => ({
      url: `${upstream.origin}${shape === "ttft" ? ttftPath : ""}/v1/chat/completions`,
      headers: {},
      model: "bench"
    }),
    stop: () => stopChild(upstream.child)
  }
}

const buildProxy = () => {
  console.log("building the proxy (npm run build)…")
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const result = spawnSync(npm, ["run", "build", "--silent"], { cwd: rootDir, stdio: "inherit" })
  if (result.status !== 0) throw new Error(`npm run build failed (exit ${String(result.status)})`)
}

const proxyKey = "bench-key"

const startProxy = async (
  backend: Upstream,
  work: string,
  extraNodeArgs: ReadonlyArray<string> = [],
  tag = "proxy"
): Promise<RunningTarget & { readonly child: ChildProcess }> => {
  const configFile = join(work, "registry.yaml")
  writeFileSync(
    configFile,
    [
      "models:",
      "  - name: bench",
      "    provider: openai",
      `    base_url: ${backend.origin}/v1`,
      "  - name: bench-ttft",
      "    provider: openai",
      `    base_url: ${backend.origin}${ttftPath}/v1`,
      ""
    ].join("\n")
  )
  const port = await freePort()
  const logFile = join(work, `${tag}.log`)
  const entry = join(rootDir, "dist", "main.js")
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: build the proxy first`)
  const child = spawnTracked(pinned(0, [process.execPath, ...startNodeFlags(), ...extraNodeArgs, entry]), {
    name: tag,
    logFile,
    env: {
      ...process.env,
      NODE_ENV: "production",
      INTERNAL_API_KEY: proxyKey,
      LOG_LEVEL: "warn",
      PORT: String(port),
      HOST: "127.0.0.1",
      CONFIG_FILE: configFile
    }
  })
  const origin = `http://127.0.0.1:${port}`
  await waitForHttp(`${origin}/health`, child, "the proxy", logFile)
  return {
    name: "proxy",
    label: "llm-proxy",
    child,
    pid: child.pid ?? -1,
    upstreamPid: backend.child.pid,
    endpoint: (shape) => ({
      url: `${origin}/v1/chat/completions`,
      headers: { authorization: `Bearer ${proxyKey}` },
      model: shape === "ttft" ? "bench-ttft" : "bench"
    }),
    stop: async () => {
      await stopChild(child, 20_000)
      const log = tail(logFile, 2_000).trim()
      if (log !== "") console.log(`  (${tag} log tail)\n${log.split("\n").map((line) => `    ${line}`).join("\n")}`)
    }
  }
}

/** Installs @portkey-ai/gateway with the @hono/node-server pin, reusing an earlier install in the temp dir. */
const installPortkey = (): string => {
  const dir = join(tmpdir(), `llm-proxy-bench-portkey-${portkeyVersion}-hono-${honoNodeServerPin}`)
  const installed = (name: string) => {
    const file = join(dir, "node_modules", ...name.split("/"), "package.json")
    if (!existsSync(file)) return undefined
    const parsed: unknown = JSON.parse(readFileSync(file, "utf8"))
    const version = typeof parsed === "object" && parsed !== null ? (parsed as { version?: unknown }).version : undefined
    return typeof version === "string" ? version : undefined
  }
  if (installed("@portkey-ai/gateway") === portkeyVersion && installed("@hono/node-server") === honoNodeServerPin) {
    console.log(`using @portkey-ai/gateway@${portkeyVersion} from ${dir}`)
    return dir
  }
  console.log(`installing @portkey-ai/gateway@${portkeyVersion} into ${dir} (with @hono/node-server pinned to ${honoNodeServerPin})…`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify(
      {
        name: "llm-proxy-bench-peer",
        private: true,
        type: "module",
        dependencies: { "@portkey-ai/gateway": portkeyVersion },
        // Without the pin, streams fail with "TypeError: immutable" (Portkey-AI/gateway#1389).
        overrides: { "@hono/node-server": honoNodeServerPin }
      },
      null,
      2
    )
  )
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const result = spawnSync(npm, ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel", "error"], {
    cwd: dir,
    stdio: "inherit"
  })
  if (result.status !== 0) throw new Error(`npm install of @portkey-ai/gateway@${portkeyVersion} failed`)
  const hono = installed("@hono/node-server")
  if (hono !== honoNodeServerPin) throw new Error(`@hono/node-server resolved to ${String(hono)}, not ${honoNodeServerPin}`)
  return dir
}

const startPortkey = async (backend: Upstream, work: string, dir: string): Promise<RunningTarget> => {
  const entry = join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
  if (!existsSync(entry)) throw new Error(`${entry} is missing`)
  const port = await freePort()
  const logFile = join(work, "portkey.log")
  const child = spawnTracked(pinned(0, [process.execPath, entry, `--port=${port}`, "--headless"]), {
    name: "portkey",
    logFile,
    cwd: dir,
    env: { ...process.env, NODE_ENV: "production" }
  })
  const origin = `http://127.0.0.1:${port}`
  await waitForHttp(`${origin}/`, child, "Portkey's gateway", logFile)
  return {
    name: "peer",
    label: `portkey ${portkeyVersion}`,
    pid: child.pid ?? -1,
    upstreamPid: backend.child.pid,
    endpoint: (shape) => ({
      url: `${origin}/v1/chat/completions`,
      headers: {
        authorization: "Bearer sk-bench",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": `${backend.origin}${shape === "ttft" ? ttftPath : ""}/v1`
      },
      model: "bench"
    }),
    stop: () => stopChild(child)
  }
}

// ---------------------------------------------------------------------------------------------------------
// Measurements

type ScenarioName = "ns-c1" | "ns-c50" | "ns-c200" | "stream-c50"

const scenarios: ReadonlyArray<{ readonly name: ScenarioName; readonly stream: boolean; readonly connections: number }> = [
  { name: "ns-c1", stream: false, connections: 1 },
  { name: "ns-c50", stream: false, connections: 50 },
  { name: "ns-c200", stream: false, connections: 200 },
  { name: "stream-c50", stream: true, connections: 50 }
]

interface RunSample extends LoadResult {
  /** Gateway CPU per completed request, µs (ns-c50 only). */
  readonly cpuUsPerRequest?: number
  /** CPU used on the load core (load generator + upstream) as a share of one core, % (ns-c50 only). */
  readonly loadCorePercent?: number
  /** Highest sampled RSS of the gateway during the run, MB (ns-c200 only). */
  readonly peakRssMb?: number
  /** CPU used by processes other than the benchmark's own during the run, % of one core. */
  readonly otherCpuPercent?: number
  /** CPU stolen by the hypervisor during the run, % of one core. */
  readonly stealPercent?: number
}

interface TargetReport {
  readonly name: TargetName
  readonly label: string
  readonly runs: Record<ScenarioName, Array<RunSample>>
  probe?: ProbeResult
  tiny?: SequentialResult
  large?: SequentialResult
  rssHighWaterMb?: number
  error?: string
}

/** Failed requests of a run: connection errors (timeouts included), non-2xx, broken streams. */
const failures = (run: LoadResult) => run.errors + run.non2xx + run.mismatches

const measureTarget = async (target: RunningTarget, loader: Loader, options: Options, largeBody: (model: string) => string): Promise<TargetReport> => {
  const report: TargetReport = {
    name: target.name,
    label: target.label,
    runs: { "ns-c1": [], "ns-c50": [], "ns-c200": [], "stream-c50": [] }
  }
  const fast = target.endpoint("fast")
  const job = (stream: boolean, connections: number, durationS: number) => ({
    url: fast.url,
    headers: fast.headers,
    body: chatBody(fast.model, stream),
    connections,
    durationS,
    expectSseDone: stream
  })

  // Sanity check before loading: one request of each kind must succeed.
  const check = await loader.sequential({ ...job(false, 1, 1), count: 1, warmup: 0 })
  const streamCheck = await loader.probe({ ...job(true, 1, 1), count: 1, warmup: 0 })
  if (check.errors > 0 || streamCheck.errors > 0) {
    throw new Error(
      `${target.label} does not answer the benchmark requests (non-stream: ${JSON.stringify(check.statuses)}, stream: ${JSON.stringify(streamCheck.statuses)})`
    )
  }

  process.stdout.write(`  warm-up ${options.warmupS} s…`)
  await loader.load(job(false, 50, options.warmupS))
  await loader.load(job(true, 50, Math.max(1, Math.round(options.warmupS / 2))))
  await loader.load(job(false, 1, 1))
  process.stdout.write(" done\n")

  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    for (const scenario of scenarios) {
      const machineBefore = machineCpu()
      const ownBefore = ownCpuSeconds()
      const cpuBefore = cpuSecondsOf(target.pid)
      const upstreamCpuBefore = target.upstreamPid === undefined ? 0 : cpuSecondsOf(target.upstreamPid)
      let peakRssMb = 0
      const sampler =
        scenario.name === "ns-c200"
          ? setInterval(() => {
              peakRssMb = Math.max(peakRssMb, memoryOf(target.pid).rssMb)
            }, 50)
          : undefined
      let result: LoadResult
      try {
        result = await loader.load(job(scenario.stream, scenario.connections, options.durationS))
      } finally {
        if (sampler !== undefined) clearInterval(sampler)
      }
      const cpu = cpuSecondsOf(target.pid) - cpuBefore
      const upstreamCpu = target.upstreamPid === undefined ? 0 : cpuSecondsOf(target.upstreamPid) - upstreamCpuBefore
      const machineAfter = machineCpu()
      const ownCpu = ownCpuSeconds() - ownBefore
      const completed = result.ok + result.non2xx + result.mismatches
      const sample: RunSample = {
        ...result,
        ...(machineBefore !== undefined && machineAfter !== undefined
          ? {
              otherCpuPercent: Math.max(
                0,
                (100 * (machineAfter.busyS - machineBefore.busyS - cpu - upstreamCpu - result.loaderCpuS - ownCpu)) / result.durationS
              ),
              stealPercent: (100 * (machineAfter.stealS - machineBefore.stealS)) / result.durationS
            }
          : {}),
        ...(scenario.name === "ns-c50"
          ? {
              cpuUsPerRequest: completed > 0 ? (cpu * 1e6) / completed : Number.NaN,
              loadCorePercent: (100 * (result.loaderCpuS + upstreamCpu)) / result.durationS
            }
          : {}),
        ...(scenario.name === "ns-c200" ? { peakRssMb: Math.max(peakRssMb, memoryOf(target.pid).rssMb) } : {})
      }
      report.runs[scenario.name].push(sample)
      const interference =
        (sample.otherCpuPercent ?? 0) >= 5 || (sample.stealPercent ?? 0) >= 5
          ? `  [other CPU ${sample.otherCpuPercent?.toFixed(0) ?? "?"}%, steal ${sample.stealPercent?.toFixed(0) ?? "?"}%]`
          : ""
      const extra =
        sample.cpuUsPerRequest !== undefined
          ? `, ${sample.cpuUsPerRequest.toFixed(0)} µs CPU/req, load core ${sample.loadCorePercent?.toFixed(0) ?? "?"}%`
          : sample.peakRssMb !== undefined
            ? `, peak RSS ${sample.peakRssMb.toFixed(0)} MB`
            : ""
      console.log(
        `  [${repeat}/${options.repeats}] ${scenario.name.padEnd(10)} ${result.reqPerSec.toFixed(0).padStart(7)} req/s  p50 ${result.latencyMs.p50.toFixed(2)} ms  p99 ${result.latencyMs.p99.toFixed(2)} ms  failures ${failures(result)}${extra}${interference}`
      )
    }
  }

  const ttft = target.endpoint("ttft")
  process.stdout.write(`  TTFT probe: ${options.probeCount} sequential streams of ${ttftChunks} chunks × ${ttftDelayMs} ms…`)
  report.probe = await loader.probe({ url: ttft.url, headers: ttft.headers, body: chatBody(ttft.model, true), count: options.probeCount, warmup: 3 })
  console.log(
    ` headers p50 ${report.probe.headersMs.p50.toFixed(2)} ms, first token p50 ${report.probe.firstTokenMs.p50.toFixed(2)} / p99 ${report.probe.firstTokenMs.p99.toFixed(2)} ms, errors ${report.probe.errors}`
  )

  process.stdout.write(`  large request: ${options.largeCount} sequential tiny and ~100k-token requests…`)
  report.tiny = await loader.sequential({ url: fast.url, headers: fast.headers, body: chatBody(fast.model, false), count: options.largeCount, warmup: 10 })
  report.large = await loader.sequential({ url: fast.url, headers: fast.headers, body: largeBody(fast.model), count: options.largeCount, warmup: 5 })
  console.log(
    ` tiny p50 ${report.tiny.latencyMs.p50.toFixed(2)} ms, large p50 ${report.large.latencyMs.p50.toFixed(2)} ms, errors ${report.tiny.errors + report.large.errors}`
  )
  report.rssHighWaterMb = memoryOf(target.pid).hwmMb
  return report
}

// ---------------------------------------------------------------------------------------------------------
// Report

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

const machineInfo = () => {
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

// ---------------------------------------------------------------------------------------------------------
// Profile

const profileProxy = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<ProfileSummary | undefined> => {
  mkdirSync(profilesDir, { recursive: true })
  const startedAt = Date.now()
  console.log(`\n== profile: llm-proxy under --cpu-prof, non-stream c=50 for ${options.durationS} s`)
  const proxy = await startProxy(backend, work, ["--cpu-prof", `--cpu-prof-dir=${profilesDir}`], "proxy-profiled")
  let window: { startUs: number; endUs: number } | undefined
  try {
    const fast = proxy.endpoint("fast")
    const job = { url: fast.url, headers: fast.headers, body: chatBody(fast.model, false), connections: 50 }
    await loader.load({ ...job, durationS: options.warmupS })
    const startUs = monotonicUs()
    const result = await loader.load({ ...job, durationS: options.durationS })
    window = { startUs, endUs: monotonicUs() }
    console.log(`  ${result.reqPerSec.toFixed(0)} req/s under the profiler, failures ${failures(result)}`)
  } finally {
    await proxy.stop()
  }
  // The profile is written as the process exits.
  const file = newestProfile(profilesDir)
  if (file === undefined || statSync(file).mtimeMs < startedAt) {
    console.log(`  no new .cpuprofile in ${profilesDir} (did the proxy exit cleanly on SIGTERM?)`)
    return undefined
  }
  // Only the samples of the measured run (not start-up or warm-up), unless the clocks do not line up.
  const windowed = window === undefined ? undefined : summarizeProfile(file, 15, window)
  const summary = windowed !== undefined && windowed.sampleCount > 0 ? windowed : summarizeProfile(file, 15)
  console.log(formatSummary(summary))
  return summary
}

// ---------------------------------------------------------------------------------------------------------
// Main

const main = async () => {
  const options = parseOptions(process.argv.slice(2))
  const machine = machineInfo()
  const started = new Date()
  console.log(
    `llm-proxy bench: ${[...options.only].join(", ")}; ${options.durationS} s × ${options.repeats} repeat(s) per run; ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`
  )
  console.log(`pinning: ${machine.pinning}`)
  if (!tasksetWorks) console.log("WARNING: without pinning, gateway and load generator share cores; numbers are not comparable with pinned runs")

  if ((options.only.has("proxy") || options.profile) && options.build) buildProxy()
  const peerDir = options.only.has("peer") ? installPortkey() : undefined

  tempRoot = mkdtempSync(join(tmpdir(), "llm-proxy-bench-"))
  const work = tempRoot
  const loader = await Loader.start()
  const backend = await startUpstream(1, "upstream")
  const largeBody = (model: string) => largeChatBody(model, 100_000)
  console.log(`upstream ${backend.origin}; ~100k-token request body ${(Buffer.byteLength(largeBody("bench")) / 1024).toFixed(0)} KB`)

  const reports: Partial<Record<TargetName, TargetReport>> = {}
  const order: ReadonlyArray<TargetName> = ["direct", "proxy", "peer"]
  for (const name of order) {
    if (!options.only.has(name)) continue
    console.log(`\n== ${name}`)
    let target: RunningTarget | undefined
    try {
      target =
        name === "direct"
          ? await startDirect()
          : name === "proxy"
            ? await startProxy(backend, work)
            : await startPortkey(backend, work, peerDir ?? installPortkey())
      reports[name] = await measureTarget(target, loader, options, largeBody)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      console.error(`  ${name} failed: ${message}`)
      reports[name] = { name, label: name, runs: { "ns-c1": [], "ns-c50": [], "ns-c200": [], "stream-c50": [] }, error: message }
    } finally {
      await target?.stop()
    }
  }

  let profile: ProfileSummary | undefined
  if (options.profile) {
    try {
      profile = await profileProxy(backend, loader, work, options)
    } catch (error) {
      console.error(`profile failed: ${error instanceof Error ? error.message : String(error)}`)
    }
  }

  await loader.stop()
  await stopChild(backend.child)

  const rows = buildRows(reports)
  const shown = new Set(order.filter((name) => reports[name] !== undefined && reports[name]?.error === undefined))
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
  const disturbed = Object.values(reports).flatMap((report) =>
    Object.entries(report.runs).flatMap(([scenario, runs]) =>
      runs.filter((run) => (run.otherCpuPercent ?? 0) >= 10).map((run) => `${report.name} ${scenario} (${(run.otherCpuPercent ?? 0).toFixed(0)}%)`)
    )
  )
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
        profile
      },
      (_key, value: unknown) => (typeof value === "number" && !Number.isFinite(value) ? null : value),
      2
    )}\n`
  )
  console.log(`\nwritten ${file.slice(rootDir.length + 1)} (${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s)`)
  const failedTargets = Object.values(reports).filter((report) => report.error !== undefined)
  process.exitCode = failedTargets.length > 0 ? 1 : 0
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : String(error))
  killAllNow()
  process.exit(1)
})

/**
 * The soak's two children: the fault-injecting upstream (bench/soak/upstream.ts), and the gateway under soak,
 * built dist/main.js started as users run it (the node flags of `npm start`, NODE_ENV=production, LOG_LEVEL=warn)
 * with a temporary registry that routes every model to that upstream.
 */
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, writeFileSync } from "node:fs"
import { globalAgent } from "node:http"
import { join } from "node:path"
import { rootDir } from "../paths.js"
import { freePort, spawnTracked, startNodeFlags, tail, tsxCommand, waitForHttp, waitForMessage } from "../processes.js"
import type { FaultName, UpstreamStats } from "./protocol.js"

export interface SoakUpstream {
  readonly child: ChildProcess
  readonly origin: string
  readonly trapOrigin: string
}

export const startSoakUpstream = async (work: string, upstreamKey: string, faults: ReadonlyArray<FaultName>): Promise<SoakUpstream> => {
  const child = spawnTracked([...tsxCommand("soak/upstream.ts"), "--key", upstreamKey, "--faults", faults.join(",")], {
    name: "soak upstream",
    logFile: join(work, "upstream.log"),
    ipc: true
  })
  const message = await waitForMessage(child, "listening", "the soak upstream")
  const { port, trapPort } = message
  if (typeof port !== "number" || typeof trapPort !== "number") throw new Error("the soak upstream reported no ports")
  return { child, origin: `http://127.0.0.1:${port}`, trapOrigin: `http://127.0.0.1:${trapPort}` }
}

/** The upstream's counts so far; undefined when it does not answer within 5 s. */
export const upstreamStats = async (upstream: SoakUpstream): Promise<UpstreamStats | undefined> => {
  if (!upstream.child.connected) return undefined
  const reply = waitForMessage(upstream.child, "stats", "the soak upstream", 5_000).catch(() => undefined)
  upstream.child.send({ type: "stats" })
  // The upstream is this script's own child: its message is an UpstreamStats.
  return (await reply) as UpstreamStats | undefined
}

export interface Gateway {
  /** 1 for the first start, then one more per restart after a crash. */
  readonly instance: number
  readonly child: ChildProcess
  readonly pid: number
  readonly host: string
  readonly port: number
  readonly origin: string
  /** INTERNAL_API_KEY */
  readonly apiKey: string
  readonly stdoutFile: string
  readonly stderrFile: string
}

/**
 * The registry: `soak` has two deployments and falls back to `soak-backup` (retries, cooldowns and fallbacks
 * all meet the faults); `soak-direct` is one deployment, so its faults reach the client; `soak-large` always
 * streams 4 MB chunks. Deadlines are short so that stalled upstreams end within the soak.
 */
const registryYaml = (upstreamOrigin: string): string => {
  const deployment = (name: string, path: string, extra: ReadonlyArray<string> = []) => [
    `  - name: ${name}`,
    "    provider: openai",
    `    model: ${name}`,
    `    base_url: ${upstreamOrigin}${path}/v1`,
    "    api_key_env: SOAK_UPSTREAM_KEY",
    ...extra
  ]
  return [
    "models:",
    ...deployment("soak", "/mix", ["    fallbacks: [soak-backup]"]),
    ...deployment("soak", "/mix", ["    fallbacks: [soak-backup]"]),
    ...deployment("soak-backup", "/mix"),
    ...deployment("soak-direct", "/mix"),
    ...deployment("soak-large", "/fault/huge-chunks"),
    "settings:",
    "  retry: { max_retries: 1, initial_delay_ms: 50, max_delay_ms: 500 }",
    "  timeouts: { request_ms: 30000, first_token_ms: 5000 }",
    "  cooldown: { failures: 3, duration_ms: 5000 }",
    ""
  ].join("\n")
}

/**
 * Starts the gateway; `previous` (one that crashed) gives its port and key to the new one, so clients carry on.
 * Each start logs to its own files.
 */
export const startGateway = async (work: string, upstreamOrigin: string, upstreamKey: string, previous?: Gateway): Promise<Gateway> => {
  const entry = join(rootDir, "dist", "main.js")
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: build the gateway first (or drop --no-build)`)
  const configFile = join(work, "registry.yaml")
  writeFileSync(configFile, registryYaml(upstreamOrigin))
  const host = "127.0.0.1"
  const port = previous?.port ?? (await freePort())
  const apiKey = previous?.apiKey ?? `soak-${randomBytes(16).toString("hex")}`
  const instance = (previous?.instance ?? 0) + 1
  const stdoutFile = join(work, `gateway-${instance}.stdout.log`)
  const stderrFile = join(work, `gateway-${instance}.stderr.log`)
  const child = spawnTracked([process.execPath, ...startNodeFlags(), entry], {
    name: "gateway",
    logFile: stdoutFile,
    stderrFile,
    env: {
      ...process.env,
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      INTERNAL_API_KEY: apiKey,
      SOAK_UPSTREAM_KEY: upstreamKey,
      CONFIG_FILE: configFile,
      HOST: host,
      PORT: String(port)
    }
  })
  const origin = `http://${host}:${port}`
  try {
    await waitForHttp(`${origin}/health`, child, "the gateway", stderrFile)
  } catch (error) {
    // Start-up failures may go to stdout, or (below LOG_LEVEL) nowhere.
    const stdout = tail(stdoutFile).trim()
    const hint = stdout === "" && tail(stderrFile).trim() === "" ? "(no output: LOG_LEVEL=debug shows why)" : `stdout:\n${stdout}`
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${hint}`)
  }
  // The health probe's kept-alive connection would count as one of the gateway's sockets.
  globalAgent.destroy()
  return { instance, child, pid: child.pid ?? -1, host, port, origin, apiKey, stdoutFile, stderrFile }
}

/**
 * What the benchmark measures: the bench upstream itself ("direct") and llm-proxy in front of it, each started
 * as a child process and called through an `Endpoint`. Portkey's gateway, the peer, is in bench/portkey.ts.
 */
import type { ChildProcess } from "node:child_process"
import { spawnSync } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { rootDir } from "./paths.js"
import { freePort, pinned, pinnedTo, spawnTracked, startNodeFlags, stopChild, tail, tsxCommand, waitForHttp, waitForMessage } from "./processes.js"

export type TargetName = "direct" | "proxy" | "peer"

/** The order targets are measured and listed in. */
export const targetOrder: ReadonlyArray<TargetName> = ["direct", "proxy", "peer"]

/** The time-to-first-token probe's stream: this many chunks, this far apart. */
export const ttftChunks = 20
export const ttftDelayMs = 50

export interface Upstream {
  readonly child: ChildProcess
  readonly origin: string
}

export const startUpstream = async (core: number, name: string): Promise<Upstream> => {
  const child = spawnTracked(pinned(core, tsxCommand("upstream.ts")), { name, ipc: true })
  const message = await waitForMessage(child, "listening", name)
  const port = message["port"]
  if (typeof port !== "number") throw new Error(`${name} reported no port`)
  return { child, origin: `http://127.0.0.1:${port}` }
}

/** How one target is called: URL and headers of a chat request, and the model name to put in it. */
export interface Endpoint {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly model: string
}

export type StreamShape = "fast" | "ttft"

export interface RunningTarget {
  readonly name: TargetName
  readonly label: string
  /** The process whose CPU and memory are measured (the gateway, or the upstream itself for "direct"). */
  readonly pid: number
  /** The upstream this target forwards to, if it is not the target itself (its CPU runs on the load core). */
  readonly upstreamPid: number | undefined
  readonly endpoint: (shape: StreamShape) => Endpoint
  readonly stop: () => Promise<void>
}

export const ttftPath = `/bench/c${ttftChunks}-d${ttftDelayMs}`

export const startDirect = async (): Promise<RunningTarget> => {
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

export const buildProxy = () => {
  console.log("building the proxy (npm run build)…")
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const result = spawnSync(npm, ["run", "build", "--silent"], { cwd: rootDir, stdio: "inherit" })
  if (result.status !== 0) throw new Error(`npm run build failed (exit ${String(result.status)})`)
}

/** The proxy's INTERNAL_API_KEY: the operator's key, keyless (no limits, no admission). */
export const proxyKey = "bench-key"

/** How a proxy started for `--governance` differs from the one the main table measures. */
export interface ProxyVariant {
  /** Lines appended to the registry file, e.g. a `keys:` section. */
  readonly registryLines?: ReadonlyArray<string>
  /**
   * Environment of this proxy on top of the default one. WORKERS, REDIS_URL and REDIS_KEY_PREFIX are taken
   * from here only (never inherited from the shell), so that a variant measures what it says.
   */
  readonly env?: Readonly<Record<string, string>>
  /** taskset core list (default "0"). */
  readonly cores?: string
  /** Another checkout whose dist/main.js and `npm start` flags are run (`--against`); default this one. */
  readonly rootDir?: string
}

export const startProxy = async (
  backend: Upstream,
  work: string,
  extraNodeArgs: ReadonlyArray<string> = [],
  tag = "proxy",
  variant?: ProxyVariant
): Promise<RunningTarget & { readonly child: ChildProcess; readonly origin: string }> => {
  const configFile = join(work, variant === undefined ? "registry.yaml" : `registry-${tag}.yaml`)
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
      ...(variant?.registryLines ?? []),
      ""
    ].join("\n")
  )
  const port = await freePort()
  const logFile = join(work, `${tag}.log`)
  const checkout = variant?.rootDir ?? rootDir
  const entry = join(checkout, "dist", "main.js")
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: build the proxy first`)
  const inherited: NodeJS.ProcessEnv = { ...process.env }
  if (variant !== undefined) {
    for (const name of ["WORKERS", "REDIS_URL", "REDIS_KEY_PREFIX"]) delete inherited[name]
  }
  const child = spawnTracked(pinnedTo(variant?.cores ?? "0", [process.execPath, ...startNodeFlags(checkout), ...extraNodeArgs, entry]), {
    name: tag,
    cwd: checkout,
    logFile,
    env: {
      ...inherited,
      NODE_ENV: "production",
      INTERNAL_API_KEY: proxyKey,
      LOG_LEVEL: "warn",
      PORT: String(port),
      HOST: "127.0.0.1",
      CONFIG_FILE: configFile,
      ...variant?.env
    }
  })
  const origin = `http://127.0.0.1:${port}`
  await waitForHttp(`${origin}/health`, child, "the proxy", logFile)
  return {
    name: "proxy",
    label: "llm-proxy",
    child,
    origin,
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

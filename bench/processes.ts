/**
 * Child processes of the benchmark: every one is tracked and killed on exit, failure or Ctrl-C, and the
 * temporary folders made here are removed on exit.
 */
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs"
import { get as httpGet } from "node:http"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { benchDir, rootDir } from "./paths.js"

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

export const isAlive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

export const killAllNow = () => {
  for (const child of children) {
    if (isAlive(child)) child.kill("SIGKILL")
  }
}

process.on("exit", () => {
  killAllNow()
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping the benchmark`)
    killAllNow()
    process.exit(130)
  })
}

/** A fresh folder under the system's temp dir, removed when this process exits. */
export const makeTempDir = (prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

export const tasksetWorks = (() => {
  if (process.platform !== "linux" || availableParallelism() < 2) return false
  const probe = spawnSync("taskset", ["-c", "0", "true"], { stdio: "ignore" })
  return probe.status === 0
})()

/** `command` prefixed with `taskset -c <core>` where that works. */
export const pinned = (core: number, command: ReadonlyArray<string>): ReadonlyArray<string> => pinnedTo(String(core), command)

/** `command` prefixed with `taskset -c <cores>` (a list such as "0-1") where that works; forked children inherit it. */
export const pinnedTo = (cores: string, command: ReadonlyArray<string>): ReadonlyArray<string> =>
  tasksetWorks ? ["taskset", "-c", cores, ...command] : command

/** The node flags of `npm start` (e.g. `--max-semi-space-size=2`): the proxy is measured as users run it. */
export const startNodeFlags = (checkout: string = rootDir): ReadonlyArray<string> => {
  const manifest = JSON.parse(readFileSync(join(checkout, "package.json"), "utf8")) as { scripts?: Record<string, string> }
  return (manifest.scripts?.["start"] ?? "").split(/\s+/).filter((word) => word.startsWith("--"))
}

export const tsxCommand = (script: string): ReadonlyArray<string> => [process.execPath, "--import", "tsx", join(benchDir, script)]

export interface SpawnOptions {
  readonly name: string
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
  /** Where stdout and stderr go; the tail is shown when the process fails. */
  readonly logFile?: string
  /** Where stderr goes instead, when it should be read apart from stdout. */
  readonly stderrFile?: string
  readonly ipc?: boolean
}

export const spawnTracked = (command: ReadonlyArray<string>, options: SpawnOptions): ChildProcess => {
  const [file, ...args] = command
  if (file === undefined) throw new Error("empty command")
  const log = options.logFile === undefined ? "inherit" : openSync(options.logFile, "a")
  const errorLog = options.stderrFile === undefined ? log : openSync(options.stderrFile, "a")
  const child = spawn(file, args, {
    cwd: options.cwd ?? rootDir,
    env: options.env ?? process.env,
    stdio: ["ignore", log, errorLog, ...(options.ipc === true ? (["ipc"] as const) : [])]
  })
  if (typeof log === "number") closeSync(log)
  if (typeof errorLog === "number" && errorLog !== log) closeSync(errorLog)
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export const stopChild = async (child: ChildProcess, graceMs = 5_000): Promise<void> => {
  if (!isAlive(child)) return
  const exited = new Promise<void>((done) => child.once("exit", () => done()))
  child.kill("SIGTERM")
  const timer = setTimeout(() => {
    if (isAlive(child)) child.kill("SIGKILL")
  }, graceMs)
  await exited
  clearTimeout(timer)
}

export const tail = (file: string | undefined, bytes = 4_000): string => {
  if (file === undefined || !existsSync(file)) return ""
  const size = statSync(file).size
  const fd = openSync(file, "r")
  const buffer = Buffer.alloc(Math.min(bytes, size))
  readSync(fd, buffer, 0, buffer.length, Math.max(0, size - buffer.length))
  closeSync(fd)
  return buffer.toString("utf8")
}

export const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => done(port))
    })
  })

/** Polls `url` until it answers with a status below 500. */
export const waitForHttp = async (url: string, child: ChildProcess, name: string, logFile?: string, timeoutMs = 60_000): Promise<void> => {
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
export const waitForMessage = (child: ChildProcess, type: string, name: string, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
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

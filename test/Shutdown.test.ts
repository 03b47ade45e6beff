/**
 * Graceful shutdown of the real process, as users run it: `tsc -p tsconfig.build.json`, then
 * `node dist/main.js`, then SIGTERM. In-flight streams get SHUTDOWN_GRACE_MS to finish; what remains ends with
 * one `server_shutting_down` error frame; new connections are refused; the process exits 0.
 */
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { request } from "node:http"
import type { IncomingMessage } from "node:http"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { performance } from "node:perf_hooks"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { completeFrames, isErrorFrame, ssePayloads, streamedContent } from "./support/Sse.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const mainJs = fileURLToPath(new URL("../dist/main.js", import.meta.url))
const tscJs = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url))
const key = "shutdown-test-key"
const tokenDelayMs = 50

/** A port nobody listens on right now: the OS picks it for a throwaway server. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** performance.now() when the exit was seen. */
  readonly at: number
}

interface Gateway {
  readonly port: number
  readonly child: ChildProcess
  readonly exited: Promise<Exited>
  /** What the process printed, for failure messages. */
  readonly output: () => string
  /** Sends SIGTERM; returns performance.now() at the moment it was sent. */
  readonly terminate: () => number
}

const running = new Set<ChildProcess>()

/** Starts `node dist/main.js` with the built-in mock model and waits until /health answers. */
const startGateway = async (shutdownGraceMs: number): Promise<Gateway> => {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    INTERNAL_API_KEY: key,
    MOCK_TOKEN_DELAY_MS: String(tokenDelayMs),
    LOG_LEVEL: "error",
    LOG_FORMAT: "json",
    SHUTDOWN_GRACE_MS: String(shutdownGraceMs),
    NODE_ENV: "test"
  }
  delete env["CONFIG_FILE"]
  const child = spawn(process.execPath, [mainJs], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
  running.add(child)
  let output = ""
  child.stdout?.setEncoding("utf8").on("data", (text: string) => (output += text))
  child.stderr?.setEncoding("utf8").on("data", (text: string) => (output += text))
  const exited = new Promise<Exited>((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child)
      resolve({ code, signal, at: performance.now() })
    })
  })
  let hasExited = false
  void exited.then(() => (hasExited = true))
  const deadline = Date.now() + 15_000
  for (;;) {
    if (hasExited) throw new Error(`gateway exited before it was healthy:\n${output}`)
    const healthy = await fetch(`http://127.0.0.1:${port}/health`).then(
      (response) => response.ok,
      () => false
    )
    if (healthy) break
    if (Date.now() > deadline) throw new Error(`gateway not healthy within 15 s:\n${output}`)
    await sleep(50)
  }
  return {
    port,
    child,
    exited,
    output: () => output,
    terminate: () => {
      const at = performance.now()
      child.kill("SIGTERM")
      return at
    }
  }
}

interface StreamResult {
  readonly status: number
  readonly text: string
  /** The response ended normally (not cut off by a reset socket). */
  readonly complete: boolean
  readonly at: number
}

interface OpenStream {
  /** Resolves once `count` whole frames have arrived. */
  readonly frames: (count: number) => Promise<void>
  readonly result: Promise<StreamResult>
}

/** Posts a streaming chat completion whose answer is `words` words, and reads the SSE body as it arrives. */
const openStream = (port: number, words: number): OpenStream => {
  const content = Array.from({ length: words }, (_, index) => `word${index}`).join(" ")
  const body = JSON.stringify({ model: "mock", stream: true, messages: [{ role: "user", content }] })
  let text = ""
  const waiters: Array<{ count: number; resolve: () => void }> = []
  const notify = () => {
    for (const waiter of [...waiters]) {
      if (completeFrames(text) >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve()
      }
    }
  }
  const result = new Promise<StreamResult>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/v1/chat/completions",
        agent: false,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          authorization: `Bearer ${key}`
        }
      },
      (response: IncomingMessage) => {
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          text += chunk
          notify()
        })
        // "close" comes after "end" on a normal finish and alone when the socket is cut.
        response.on("error", () => undefined)
        response.once("close", () =>
          resolve({ status: response.statusCode ?? 0, text, complete: response.complete, at: performance.now() })
        )
      }
    )
    req.once("error", reject)
    req.end(body)
  })
  const frames = (count: number) =>
    new Promise<void>((resolve, reject) => {
      waiters.push({ count, resolve })
      notify()
      result.then(() => reject(new Error(`stream ended with ${completeFrames(text)} frames, before ${count}:\n${text}`)), reject)
    })
  return { frames, result }
}

/** Tries a brand-new connection; resolves with the connect error's code, or "connected". */
const tryNewConnection = (port: number): Promise<string> =>
  new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/health", agent: false }, (response) => {
      response.resume()
      resolve("connected")
    })
    req.setTimeout(2_000, () => req.destroy(new Error("timeout")))
    req.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end()
  })

beforeAll(() => {
  // Build as `npm start` does (prestart), so the test runs the same dist/main.js users run.
  const build = spawnSync(process.execPath, [tscJs, "-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" })
  if (build.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed:\n${build.stdout}\n${build.stderr}`)
}, 120_000)

afterEach(() => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
})

describe("graceful shutdown of node dist/main.js", () => {
  it("lets an in-flight stream finish within the grace period, refuses new connections, exits 0", async () => {
    const graceMs = 5_000
    const gateway = await startGateway(graceMs)
    const words = 20
    const stream = openStream(gateway.port, words)
    await stream.frames(3) // role frame and two tokens: about 18 tokens (~900 ms) still to come
    const sigtermAt = gateway.terminate()

    // The listener closes at once: a new connection is refused while the stream is still running.
    let refused = "connected"
    for (let attempt = 0; attempt < 40 && refused !== "ECONNREFUSED"; attempt++) {
      refused = await tryNewConnection(gateway.port)
      if (refused !== "ECONNREFUSED") await sleep(25)
    }
    expect(refused).toBe("ECONNREFUSED")
    const refusedAt = performance.now()

    const result = await stream.result
    const exited = await gateway.exited
    expect(refusedAt, "refused before the stream ended").toBeLessThan(result.at)
    expect(result.status).toBe(200)
    expect(result.complete).toBe(true)
    expect(ssePayloads(result.text).at(-1)).toBe("[DONE]")
    expect(result.text).not.toContain('"error"')
    expect(streamedContent(result.text)).toBe(Array.from({ length: words }, (_, index) => `word${index}`).join(" "))
    expect(exited, gateway.output()).toMatchObject({ code: 0, signal: null })
    // It exits once the stream is done, without sitting out the rest of the grace period.
    expect(exited.at - sigtermAt).toBeLessThan(graceMs)
  }, 30_000)

  it("ends a stream still running after the grace period with one server_shutting_down frame, exits 0 in time", async () => {
    const graceMs = 500
    const gateway = await startGateway(graceMs)
    const stream = openStream(gateway.port, 400) // 400 tokens x 50 ms: 20 s, far past the grace period
    await stream.frames(3)
    const sigtermAt = gateway.terminate()

    const result = await stream.result
    const exited = await gateway.exited
    expect(result.status).toBe(200)
    expect(result.complete).toBe(true)
    const frames = ssePayloads(result.text)
    expect(frames).not.toContain("[DONE]")
    const errors = frames.filter(isErrorFrame)
    expect(errors).toHaveLength(1)
    expect(frames.at(-1)).toBe(errors[0])
    expect(errors[0]?.error).toMatchObject({ code: "server_shutting_down", type: "server_error" })
    // Some tokens went out during the grace period, far from all of them.
    expect(frames.length).toBeGreaterThan(3)
    expect(frames.length).toBeLessThan(100)

    expect(exited, gateway.output()).toMatchObject({ code: 0, signal: null })
    const shutdownMs = exited.at - sigtermAt
    expect(shutdownMs).toBeGreaterThanOrEqual(graceMs - 50)
    expect(shutdownMs).toBeLessThan(graceMs + 1_000)
  }, 30_000)

  it("exits 0 promptly on SIGTERM with nothing in flight", async () => {
    const gateway = await startGateway(10_000)
    const sigtermAt = gateway.terminate()
    const exited = await gateway.exited
    expect(exited, gateway.output()).toMatchObject({ code: 0, signal: null })
    expect(exited.at - sigtermAt).toBeLessThan(1_000)
  }, 30_000)
})

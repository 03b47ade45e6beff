/**
 * `WORKERS=2` as users run it: `tsc -p tsconfig.build.json`, then `node dist/main.js`, real sockets on loopback.
 * The primary forks two workers, replaces one killed with SIGKILL, gives up on a crash loop, forwards SIGTERM
 * (both workers drain their streams, the primary exits 0) and SIGHUP, and /metrics answers for the whole group.
 */
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { request } from "node:http"
import type { IncomingHttpHeaders, IncomingMessage } from "node:http"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { completeFrames, isErrorFrame, ssePayloads, streamedContent } from "../support/Sse.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))
const tscJs = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url))
const key = "cluster-test-key"
const auth = { authorization: `Bearer ${key}` }
const chatRoute = 'llm_proxy_http_requests_total{route="/v1/chat/completions",status="200"}'

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

/** Polls `check` every 50 ms until it gives a value, at most `timeoutMs`. */
const eventually = async <A>(what: string, timeoutMs: number, check: () => Promise<A | undefined> | A | undefined): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(50)
  }
}

interface LogLine {
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Run {
  readonly port: number
  readonly child: ChildProcess
  readonly exited: Promise<Exited>
  readonly stdout: () => string
  readonly stderr: () => string
  /** The JSON log lines printed so far, the primary's and the workers'. */
  readonly logs: () => ReadonlyArray<LogLine>
}

const running = new Set<ChildProcess>()
const directory = mkdtempSync(join(tmpdir(), "llm-proxy-group-"))

/** Starts `node dist/main.js` with the built-in mock model, JSON logs at INFO, and `env` on top. */
const launch = async (env: Readonly<Record<string, string>>, detached = false): Promise<Run> => {
  const port = await freePort()
  const fullEnv: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    INTERNAL_API_KEY: key,
    LOG_LEVEL: "info",
    LOG_FORMAT: "json",
    NODE_ENV: "test",
    SHUTDOWN_GRACE_MS: "5000",
    ...env
  }
  if (env["CONFIG_FILE"] === undefined) delete fullEnv["CONFIG_FILE"]
  if (env["REDIS_URL"] === undefined) delete fullEnv["REDIS_URL"]
  const child = spawn(process.execPath, [mainJs], { cwd: root, env: fullEnv, stdio: ["ignore", "pipe", "pipe"], detached })
  running.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout?.setEncoding("utf8").on("data", (text: string) => (stdout += text))
  child.stderr?.setEncoding("utf8").on("data", (text: string) => (stderr += text))
  const exited = new Promise<Exited>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  )
  const logs = () =>
    stdout.split("\n").flatMap((line) => {
      if (!line.startsWith("{")) return []
      try {
        const parsed = JSON.parse(line) as { message?: unknown; annotations?: Record<string, unknown> }
        return typeof parsed.message === "string" ? [{ message: parsed.message, annotations: parsed.annotations ?? {} }] : []
      } catch {
        return []
      }
    })
  return { port, child, exited, stdout: () => stdout, stderr: () => stderr, logs }
}

/** Starts a group of `workers` and waits until every worker serves. */
const startGroup = async (env: Readonly<Record<string, string>> = {}, detached = false): Promise<Run> => {
  const run = await launch({ WORKERS: "2", ...env }, detached)
  let gone = false
  void run.exited.then(() => (gone = true))
  await eventually(`group serving\n${run.stdout()}${run.stderr()}`, 20_000, () => {
    if (gone) throw new Error(`the group exited before it served:\n${run.stdout()}\n${run.stderr()}`)
    return run.logs().some((line) => line.message === "group serving") ? true : undefined
  })
  return run
}

/** Waits for the process to exit, at most `timeoutMs`. */
const exitOf = (run: Run, timeoutMs: number): Promise<Exited> =>
  Promise.race([
    run.exited,
    sleep(timeoutMs).then(() => {
      throw new Error(`did not exit within ${timeoutMs} ms:\n${run.stdout()}\n${run.stderr()}`)
    })
  ])

/** The pid of each slot's current worker, from the primary's "worker started" lines. */
const workerPids = (run: Run): ReadonlyMap<number, number> => {
  const pids = new Map<number, number>()
  for (const line of run.logs()) {
    if (line.message === "worker started") pids.set(Number(line.annotations["worker"]), Number(line.annotations["pid"]))
  }
  return pids
}

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly text: string
}

/** One request on a connection of its own (so that the primary hands each to the next worker). */
const send = (port: number, method: string, path: string, body?: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: false,
        headers: { ...auth, ...(body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }) }
      },
      (response) => {
        let text = ""
        response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk))
        response.once("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text }))
        response.once("error", reject)
      }
    )
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)))
    req.once("error", reject)
    req.end(body)
  })

const chat = (port: number) => send(port, "POST", "/v1/chat/completions", JSON.stringify({ model: "mock", messages: [{ role: "user", content: "hello group" }] }))

const metrics = (port: number) => send(port, "GET", "/metrics")

/** A sample's value in Prometheus text (0 when absent). */
const sample = (text: string, series: string): number => {
  const line = text.split("\n").find((each) => each.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

/** Scrapes until each worker has answered a scrape once; returns the texts by worker. */
const scrapeEach = async (port: number): Promise<ReadonlyMap<string, string>> => {
  const texts = new Map<string, string>()
  return eventually("a scrape answered by each worker", 10_000, async () => {
    const answer = await metrics(port)
    expect(answer.status).toBe(200)
    texts.set(String(answer.headers["x-llm-proxy-worker"]), answer.text)
    return texts.size === 2 ? texts : undefined
  })
}

/** A streamed chat completion on a connection of its own: `started` once 3 frames arrived, `done` at its end. */
const openStream = (port: number, body: string) => {
  let text = ""
  let worker = ""
  let onStarted = () => {}
  const started = new Promise<void>((resolve) => (onStarted = resolve))
  const done = new Promise<{ readonly text: string; readonly complete: boolean }>((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method: "POST", path: "/v1/chat/completions", agent: false, headers: { ...auth, "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (response: IncomingMessage) => {
        worker = String(response.headers["x-llm-proxy-worker"])
        response.setEncoding("utf8").on("data", (chunk: string) => {
          text += chunk
          if (completeFrames(text) >= 3) onStarted()
        })
        response.on("error", () => undefined)
        response.once("close", () => resolve({ text, complete: response.complete }))
      }
    )
    req.setTimeout(20_000, () => req.destroy(new Error("stream: no progress within 20 s")))
    req.once("error", reject)
    req.end(body)
  })
  // A stream that fails before its third frame fails `started` too.
  return { started: Promise.race([started, done.then(() => {})]), done, worker: () => worker }
}

beforeAll(() => {
  const build = spawnSync(process.execPath, [tscJs, "-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" })
  if (build.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed:\n${build.stdout}\n${build.stderr}`)
}, 120_000)

afterEach(() => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
})

afterAll(() => rmSync(directory, { recursive: true, force: true }))

describe("WORKERS=2", () => {
  it("serves from both workers, and /metrics answers the group's sums whichever worker is scraped", async () => {
    const group = await startGroup()
    const before = sample((await metrics(group.port)).text, chatRoute)
    const served = new Set<string>()
    const requests = 12
    for (let index = 0; index < requests; index++) {
      const answer = await chat(group.port)
      expect(answer.status).toBe(200)
      served.add(String(answer.headers["x-llm-proxy-worker"]))
    }
    expect([...served].sort()).toEqual(["1", "2"])

    const texts = await scrapeEach(group.port)
    for (const text of texts.values()) {
      expect(sample(text, chatRoute) - before).toBe(requests)
      expect(sample(text, "llm_proxy_workers")).toBe(2)
      expect(sample(text, "llm_proxy_workers_scraped")).toBe(2)
      expect(sample(text, 'llm_proxy_tokens_total{model="mock",kind="completion"}')).toBe(requests * 2)
      expect(text).toContain("# TYPE llm_proxy_http_request_duration_seconds histogram")
      expect(sample(text, 'llm_proxy_http_request_duration_seconds_count{route="/v1/chat/completions"}')).toBe(requests)
      expect(sample(text, "effect_fiber_started")).toBeGreaterThan(0)
      expect(sample(text, 'effect_fiber_lifetimes_bucket{time_unit="milliseconds",le="+Inf"}')).toBeGreaterThan(0)
      expect(text).not.toMatch(/worker="/)
      expect(text).not.toContain("# llm-proxy:")
    }
  }, 60_000)

  it("replaces a worker killed with SIGKILL, keeps answering meanwhile, and its counts stay in the sums", async () => {
    const group = await startGroup()
    for (let index = 0; index < 6; index++) expect((await chat(group.port)).status).toBe(200)
    expect(sample((await metrics(group.port)).text, chatRoute)).toBe(6)

    const killed = workerPids(group).get(1)!
    process.kill(killed, "SIGKILL")
    await eventually("the primary saw the death", 10_000, () =>
      group.logs().some((line) => line.message === "worker exited unexpectedly: replacing it" && line.annotations["pid"] === killed) ? true : undefined
    )
    for (let index = 0; index < 6; index++) expect((await chat(group.port)).status).toBe(200)

    await eventually("a new worker 1", 15_000, () => (workerPids(group).get(1) !== killed ? true : undefined))
    await eventually("worker 1 serving again", 15_000, async () =>
      (await send(group.port, "GET", "/v1/models")).headers["x-llm-proxy-worker"] === "1" ? true : undefined
    )
    const texts = await scrapeEach(group.port)
    for (const text of texts.values()) {
      expect(sample(text, chatRoute)).toBe(12)
      expect(sample(text, "llm_proxy_workers_scraped")).toBe(2)
    }
    expect(group.child.exitCode).toBeNull()
  }, 60_000)

  it("drains the streams of both workers on SIGTERM and exits 0", async () => {
    const group = await startGroup({ MOCK_TOKEN_DELAY_MS: "50" })
    const words = Array.from({ length: 20 }, (_, index) => `word${index}`).join(" ")
    const body = JSON.stringify({ model: "mock", stream: true, messages: [{ role: "user", content: words }] })
    const streams = Array.from({ length: 4 }, () => openStream(group.port, body))
    await Promise.all(streams.map((stream) => stream.started))
    expect(new Set(streams.map((stream) => stream.worker()))).toEqual(new Set(["1", "2"]))

    group.child.kill("SIGTERM")
    const results = await Promise.all(streams.map((stream) => stream.done))
    for (const result of results) {
      expect(result.complete).toBe(true)
      expect(ssePayloads(result.text).at(-1)).toBe("[DONE]")
      expect(ssePayloads(result.text).filter(isErrorFrame)).toEqual([])
      expect(streamedContent(result.text)).toBe(words)
    }
    expect(await exitOf(group, 15_000)).toEqual({ code: 0, signal: null })
    expect(group.logs().filter((line) => line.message === "worker stopped").map((line) => line.annotations["code"])).toEqual([0, 0])
    await expect(send(group.port, "GET", "/health")).rejects.toMatchObject({ code: "ECONNREFUSED" })
  }, 60_000)

  it("drains once on a terminal's Ctrl-C (SIGINT to the whole process group, then forwarded) and exits 0", async () => {
    // Its own process group, as a shell gives a foreground job: the workers get SIGINT twice.
    const group = await startGroup({ MOCK_TOKEN_DELAY_MS: "50" }, true)
    const words = Array.from({ length: 20 }, (_, index) => `word${index}`).join(" ")
    const body = JSON.stringify({ model: "mock", stream: true, messages: [{ role: "user", content: words }] })
    const streams = Array.from({ length: 2 }, () => openStream(group.port, body))
    await Promise.all(streams.map((stream) => stream.started))
    process.kill(-group.child.pid!, "SIGINT")
    for (const result of await Promise.all(streams.map((stream) => stream.done))) {
      expect(result.complete).toBe(true)
      expect(ssePayloads(result.text).at(-1)).toBe("[DONE]")
      expect(streamedContent(result.text)).toBe(words)
    }
    expect(await exitOf(group, 15_000)).toEqual({ code: 0, signal: null })
    expect(group.logs().filter((line) => line.message === "worker stopped").map((line) => line.annotations["code"])).toEqual([0, 0])
  }, 60_000)

  it("forwards SIGHUP: every worker reloads its registry and keeps serving", async () => {
    const group = await startGroup()
    const pids = workerPids(group)
    group.child.kill("SIGHUP")
    const reloads = 'llm_proxy_config_reloads_total{outcome="ok"}'
    await eventually("both workers reloaded", 10_000, async () => (sample((await metrics(group.port)).text, reloads) === 2 ? true : undefined))
    const served = new Set<string>()
    await eventually("both workers serving", 10_000, async () => {
      const answer = await send(group.port, "GET", "/v1/models")
      expect(answer.status).toBe(200)
      served.add(String(answer.headers["x-llm-proxy-worker"]))
      return served.size === 2 ? true : undefined
    })
    expect(workerPids(group)).toEqual(pids)
    expect(group.logs().filter((line) => line.message.startsWith("worker exited"))).toEqual([])
    expect(group.child.exitCode).toBeNull()
  }, 60_000)

  it("gives up after 5 worker deaths within 30 s: one clear line, exit 1", async () => {
    const group = await startGroup()
    const killed = new Set<number>()
    await eventually("5 workers killed", 30_000, () => {
      for (const pid of workerPids(group).values()) {
        if (killed.size < 5 && !killed.has(pid)) {
          killed.add(pid)
          try {
            process.kill(pid, "SIGKILL")
          } catch {
            // it died already
          }
        }
      }
      return killed.size === 5 ? true : undefined
    })
    expect((await exitOf(group, 20_000)).code).toBe(1)
    expect(group.logs().filter((line) => line.message.includes("giving up"))).toHaveLength(1)
    expect(group.logs().find((line) => line.message.includes("giving up"))?.message).toBe("workers died 5 times within 30 s: giving up")
  }, 60_000)
})

/** Runs the gateway to its exit (bounded); the non-blank lines of its stderr. */
const startUpFailure = async (env: Readonly<Record<string, string>>) => {
  const run = await launch(env)
  const exited = await exitOf(run, 20_000)
  return { exited, lines: run.stderr().split("\n").filter((line) => line.trim() !== ""), run }
}

describe("refused start-ups", () => {
  for (const workers of ["0", "65", "abc", "2.5"]) {
    it(`WORKERS=${workers}: exit 1, one line naming WORKERS`, async () => {
      const { exited, lines } = await startUpFailure({ WORKERS: workers })
      expect(exited.code).toBe(1)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain("WORKERS")
    }, 30_000)
  }

  it("keys with limits and no REDIS_URL: exit 1 before any worker starts, one line", async () => {
    const configFile = join(directory, "limited.yaml")
    writeFileSync(configFile, ["models:", "  - { name: mock, provider: mock }", "keys:", `  - { id: batch, key_sha256: ${"c".repeat(64)}, limits: { rpm: 60 } }`].join("\n"))
    const { exited, lines, run } = await startUpFailure({ WORKERS: "2", CONFIG_FILE: configFile })
    expect(exited.code).toBe(1)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("REDIS_URL")
    expect(lines[0]).toContain("batch")
    expect(run.logs().filter((line) => line.message === "worker started")).toEqual([])
  }, 30_000)

  it("a worker that cannot start stops the group: exit 1, its one line, no second worker", async () => {
    const configFile = join(directory, "missing-key.yaml")
    writeFileSync(configFile, ["models:", "  - { name: gpt, provider: openai, api_key_env: LLM_PROXY_CLUSTER_TEST_UNSET }"].join("\n"))
    const { exited, lines, run } = await startUpFailure({ WORKERS: "2", CONFIG_FILE: configFile })
    expect(exited.code).toBe(1)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("LLM_PROXY_CLUSTER_TEST_UNSET")
    expect(run.logs().filter((line) => line.message === "worker started")).toHaveLength(1)
  }, 30_000)
})

describe("WORKERS=1", () => {
  it("serves in one process as before: no worker header, no group metrics", async () => {
    const run = await launch({ WORKERS: "1" })
    await eventually("healthy", 15_000, async () => ((await send(run.port, "GET", "/health").catch(() => undefined))?.status === 200 ? true : undefined))
    const answer = await chat(run.port)
    expect(answer.status).toBe(200)
    expect(answer.headers["x-llm-proxy-worker"]).toBeUndefined()
    const text = (await metrics(run.port)).text
    expect(sample(text, chatRoute)).toBe(1)
    expect(text).not.toContain("llm_proxy_workers")
    expect(run.logs().filter((line) => line.message === "worker started")).toEqual([])
  }, 30_000)
})

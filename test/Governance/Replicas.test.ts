/**
 * Governance shared across replicas and kept through trouble, against real Redis: two gateway processes on one
 * Redis admit exactly a key's rpm between them; a store that goes away is served through (`open`) or refused
 * (`closed`) and recovers when it returns; the registry reloads on SIGHUP and on a change of CONFIG_FILE.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { sha256Hex } from "../../src/Governance/Keys.js"
import * as RedisStore from "../../src/Governance/RedisStore.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import * as Registry from "../../src/Router/Registry.js"
import { NodeFileSystem } from "@effect/platform-node"
import { Layer } from "effect"
import { startGateway, testKey } from "../support/Gateway.js"
import { registryFromDocument } from "../support/FakeUpstreams.js"
import { call, chatRequest, expectEnvelope, postChat } from "../support/Http.js"
import { deleteKeys, ownRedis, sparePort } from "./RedisServer.js"

const sharedRedis = "redis://127.0.0.1:6379"
const root = fileURLToPath(new URL("../..", import.meta.url))

const secretOf = (id: string) => `sk-llmp-${id}-${"r".repeat(24)}`
const asKey = (id: string) => ({ authorization: `Bearer ${secretOf(id)}` })
const operator = { authorization: `Bearer ${testKey}` }

/** A key prefix of this test's own on the shared Redis, deleted with the scope. */
const testPrefix = Effect.acquireRelease(
  Effect.sync(() => `llmp-test-${crypto.randomUUID().slice(0, 8)}`),
  (prefix) => Effect.promise(() => deleteKeys(sharedRedis, prefix))
)

/** A temporary folder, removed with the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "llmp-gov-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** `node --import tsx src/main.ts` with `env`, until it listens; killed with the scope. */
const gatewayProcess = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly child: ChildProcess; readonly baseUrl: string }, Error>((resume) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: root,
        env: { ...process.env, NODE_ENV: "development", LOG_LEVEL: "INFO", LOG_FORMAT: "json", HOST: "127.0.0.1", PORT: "0", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const timer = setTimeout(() => resume(Effect.fail(new Error(`the gateway did not start:\n${output}`))), 30_000)
      child.stdout?.on("data", (piece: Buffer) => {
        output += piece.toString()
        const listening = /Listening on http:\/\/[^:]+:(\d+)/.exec(output)
        if (listening !== null) {
          clearTimeout(timer)
          resume(Effect.succeed({ child, baseUrl: `http://127.0.0.1:${listening[1]}` }))
        }
      })
      child.stderr?.on("data", (piece: Buffer) => (output += piece.toString()))
      child.once("exit", (code) => {
        clearTimeout(timer)
        resume(Effect.fail(new Error(`the gateway exited (${code}):\n${output}`)))
      })
    }),
    ({ child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  )

describe("two gateway processes on one Redis", () => {
  it.scopedLive("admit exactly a key's rpm between them: rpm 10, 30 requests alternating, 10 admitted", () =>
    Effect.gen(function* () {
      const prefix = yield* testPrefix
      const dir = yield* tempDir
      const configFile = join(dir, "registry.yaml")
      writeFileSync(
        configFile,
        `models:\n  - { name: mock, provider: mock }\nkeys:\n  - { id: shared, key_env: LLMP_SHARED_KEY, limits: { rpm: 10 } }\n`
      )
      const env = { REDIS_URL: sharedRedis, REDIS_KEY_PREFIX: prefix, CONFIG_FILE: configFile, INTERNAL_API_KEY: testKey, LLMP_SHARED_KEY: secretOf("shared") }
      const [first, second] = yield* Effect.all([gatewayProcess(env), gatewayProcess(env)], { concurrency: 2 })
      const statuses: Array<number> = []
      for (let index = 0; index < 30; index++) {
        const gateway = index % 2 === 0 ? first : second
        statuses.push((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("shared"))).status)
      }
      expect(statuses.filter((status) => status === 200)).toHaveLength(10)
      expect(statuses.filter((status) => status === 429)).toHaveLength(20)
      // both processes see the same usage: 30 requests (the refused ones count), 10 of them with tokens
      for (const gateway of [first, second]) {
        let rows: ReadonlyArray<{ requests: number; prompt_tokens: number }> = []
        for (let attempt = 0; attempt < 100; attempt++) {
          rows = (JSON.parse((yield* call(`${gateway.baseUrl}/admin/usage?key=shared`, { headers: operator })).text) as { rows: typeof rows }).rows
          if (rows[0]?.requests === 30) break
          yield* Effect.sleep("20 millis")
        }
        expect(rows[0]?.requests).toBe(30)
        expect(rows[0]?.prompt_tokens).toBe(10 * 1)
      }
    }), 60_000)
})

/** A gateway on a Redis of the test's own, with key `guarded` (rpm 2) and `on_store_failure` as given. */
const gatewayOnOwnRedis = (onStoreFailure: "open" | "closed") =>
  Effect.gen(function* () {
    const port = yield* sparePort
    const redis = yield* ownRedis(port)
    yield* redis.start
    const registry = registryFromDocument({
      models: [{ name: "mock", provider: "mock" }],
      keys: [{ id: "guarded", key_sha256: sha256Hex(secretOf("guarded")), limits: { rpm: 2 } }],
      settings: { limits: { on_store_failure: onStoreFailure } }
    })
    const store = RedisStore.layer(`redis://127.0.0.1:${port}`, { prefix: "llmp-failure" })
    const gateway = yield* startGateway({ registry, store })
    return { gateway, redis }
  })

const storeErrors = (baseUrl: string) =>
  Effect.map(call(`${baseUrl}/metrics`, { headers: operator }), (answer) =>
    answer.text
      .split("\n")
      .filter((line) => line.startsWith("llm_proxy_store_errors_total"))
      .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
  )

/** Polls (bounded) until a request of `guarded` gets `status`. */
const untilStatus = (baseUrl: string, status: number) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 100; attempt++) {
      const answer = yield* postChat(baseUrl, chatRequest("mock"), asKey("guarded"))
      if (answer.status === status) return answer
      yield* Effect.sleep("50 millis")
    }
    return yield* postChat(baseUrl, chatRequest("mock"), asKey("guarded"))
  })

describe("the store unreachable", () => {
  it.scopedLive("open: requests are served and counted as store errors; limits apply again once it returns", () =>
    Effect.gen(function* () {
      const { gateway, redis } = yield* gatewayOnOwnRedis("open")
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("guarded"))).status).toBe(200)
      yield* redis.stop
      const before = yield* storeErrors(gateway.baseUrl)
      for (let index = 0; index < 4; index++) expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("guarded"))).status).toBe(200)
      expect((yield* storeErrors(gateway.baseUrl)) - before).toBeGreaterThanOrEqual(4)
      yield* redis.start
      // the window still holds the first request: one more is admitted, then rpm 2 refuses
      const refused = yield* untilStatus(gateway.baseUrl, 429)
      expectEnvelope(refused, 429, "rate_limit_exceeded")
      expect((yield* call(`${gateway.baseUrl}/health`)).status).toBe(200)
    }), 60_000)

  it.scopedLive("closed: 503 limits_unavailable while it is down, served again once it returns", () =>
    Effect.gen(function* () {
      const { gateway, redis } = yield* gatewayOnOwnRedis("closed")
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("guarded"))).status).toBe(200)
      yield* redis.stop
      const refused = yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("guarded"))
      const error = expectEnvelope(refused, 503, "limits_unavailable")
      expect(error.type).toBe("server_error")
      // the operator key has no limits: it is served without the store
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), operator)).status).toBe(200)
      yield* redis.start
      expect((yield* untilStatus(gateway.baseUrl, 200)).status).toBe(200)
    }), 60_000)
})

describe("configuration without restarts", () => {
  /** The registry as `npm start` builds it: from CONFIG_FILE (the test's settings name it), reloading. */
  const reloading = () =>
    Registry.layer.pipe(Layer.provide(Layer.merge(NodeFileSystem.layer, Transport.layer())), Layer.orDie)

  const document = (keys: string) => `models:\n  - { name: mock, provider: mock }\nkeys:\n${keys}`

  it.scopedLive("a new key works after the file changes; an invalid file is refused and the old registry keeps serving; SIGHUP reloads", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const configFile = join(dir, "models.yaml")
      writeFileSync(configFile, document(`  - { id: first, key_sha256: ${sha256Hex(secretOf("first"))} }\n`))
      const gateway = yield* startGateway({ registry: reloading(), settings: { configFile: Option.some(configFile) } })
      const reloads = (outcome: string) =>
        Effect.map(call(`${gateway.baseUrl}/metrics`, { headers: operator }), (answer) =>
          Number(answer.text.split("\n").find((line) => line.startsWith(`llm_proxy_config_reloads_total{outcome="${outcome}"}`))?.split(" ").at(-1) ?? "0")
        )
      const status = (id: string) => Effect.map(postChat(gateway.baseUrl, chatRequest("mock"), asKey(id)), (answer) => answer.status)
      const eventually = (check: Effect.Effect<boolean, unknown>) =>
        Effect.gen(function* () {
          for (let attempt = 0; attempt < 100; attempt++) {
            if (yield* check) return true
            yield* Effect.sleep("50 millis")
          }
          return false
        })
      expect(yield* status("first")).toBe(200)
      expect(yield* status("second")).toBe(401)

      // a new key, written by renaming a new file over the old one (as config managers do)
      writeFileSync(join(dir, "next.yaml"), document(`  - { id: first, key_sha256: ${sha256Hex(secretOf("first"))} }\n  - { id: second, key_sha256: ${sha256Hex(secretOf("second"))} }\n`))
      yield* Effect.promise(() => import("node:fs/promises").then((fs) => fs.rename(join(dir, "next.yaml"), configFile)))
      expect(yield* eventually(Effect.map(status("second"), (code) => code === 200))).toBe(true)
      expect(yield* reloads("ok")).toBeGreaterThanOrEqual(1)

      // an invalid file: refused, the old registry keeps serving both keys
      const rejectedBefore = yield* reloads("rejected")
      writeFileSync(configFile, "models: [ this is not: a registry\n")
      expect(yield* eventually(Effect.map(reloads("rejected"), (count) => count > rejectedBefore))).toBe(true)
      expect(yield* status("first")).toBe(200)
      expect(yield* status("second")).toBe(200)

      // SIGHUP reads the file again: a valid one that drops `first`
      writeFileSync(configFile, document(`  - { id: second, key_sha256: ${sha256Hex(secretOf("second"))} }\n`))
      process.emit("SIGHUP", "SIGHUP")
      expect(yield* eventually(Effect.map(status("first"), (code) => code === 401))).toBe(true)
      expect(yield* status("second")).toBe(200)
    }), 60_000)
})

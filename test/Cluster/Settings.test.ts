import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Option, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { refuseLocalLimits } from "../../src/Cluster/Primary.js"
import * as Config from "../../src/Config.js"
import { loadSettings } from "../../src/Config.js"

const workersOf = (value: string | undefined) =>
  loadSettings.pipe(
    Effect.map((settings) => settings.workers),
    Effect.either,
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(value === undefined ? [] : [["WORKERS", value]])))
  )

describe("WORKERS", () => {
  it.effect("is 1 by default, an integer from 1 to 64, or auto: the machine's cores", () =>
    Effect.gen(function* () {
      expect(yield* workersOf(undefined)).toEqual(Either.right(1))
      expect(yield* workersOf("1")).toEqual(Either.right(1))
      expect(yield* workersOf(" 4 ")).toEqual(Either.right(4))
      expect(yield* workersOf("64")).toEqual(Either.right(64))
      expect(yield* workersOf("auto")).toEqual(Either.right(Math.min(64, availableParallelism())))
      expect(yield* workersOf("AUTO")).toEqual(Either.right(Math.min(64, availableParallelism())))
    }))

  for (const bad of ["0", "65", "-1", "1.5", "abc", "", "2x", "0x2", "1e1"]) {
    it.effect(`refuses WORKERS=${JSON.stringify(bad)}, naming WORKERS`, () =>
      Effect.map(workersOf(bad), (result) => {
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) expect(String(result.left)).toContain("WORKERS")
      }))
  }
})

describe("limits without a shared store", () => {
  const dir = mkdtempSync(join(tmpdir(), "llm-proxy-cluster-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }
  const limited = file(
    "limited.yaml",
    [
      "models:",
      "  - { name: mock, provider: mock }",
      "keys:",
      "  - { id: team-a, key_sha256: " + "a".repeat(64) + ", limits: { rpm: 10 } }",
      "  - { id: team-b, key_sha256: " + "b".repeat(64) + " }"
    ].join("\n")
  )
  const unlimited = file("unlimited.yaml", ["models:", "  - { name: mock, provider: mock }", "keys:", "  - { id: team-b, key_sha256: " + "b".repeat(64) + ", limits: {} }"].join("\n"))

  const check = (overrides: Partial<Config.ProxySettings>) =>
    Effect.gen(function* () {
      const settings = yield* Effect.provide(Config.ProxyConfig, Config.layerTest(overrides))
      return yield* refuseLocalLimits(settings).pipe(Effect.provide(NodeFileSystem.layer), Effect.either)
    })

  it.effect("refuses several workers when a key has limits and REDIS_URL is unset, in one line naming the key", () =>
    Effect.map(check({ workers: 2, configFile: Option.some(limited) }), (result) => {
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("GroupRefused")
        expect(result.left.message).toContain("REDIS_URL")
        expect(result.left.message).toContain("team-a")
        expect(result.left.message).not.toContain("team-b")
        expect(result.left.message).not.toContain("\n")
      }
    }))

  it.effect("accepts one worker, a shared store, or keys without limits", () =>
    Effect.gen(function* () {
      expect(Either.isRight(yield* check({ workers: 1, configFile: Option.some(limited) }))).toBe(true)
      expect(Either.isRight(yield* check({ workers: 2, configFile: Option.some(limited), redisUrl: Option.some(Redacted.make("redis://127.0.0.1:6379")) }))).toBe(true)
      expect(Either.isRight(yield* check({ workers: 2, configFile: Option.some(unlimited) }))).toBe(true)
      expect(Either.isRight(yield* check({ workers: 2 }))).toBe(true)
    }))
})

import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, LogLevel, Option, Redacted } from "effect"
import type { ConfigError } from "effect"
import { defaultInternalApiKey, loadSettings } from "../src/Config.js"
import type { ProxySettings } from "../src/Config.js"
import { runMainUntilExit } from "./support/Main.js"

const load = (env: Record<string, string>): Effect.Effect<Either.Either<ProxySettings, ConfigError.ConfigError>> =>
  loadSettings.pipe(Effect.either, Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

const settingsOf = (env: Record<string, string>) =>
  Effect.flatMap(load(env), (result) =>
    Either.isRight(result) ? Effect.succeed(result.right) : Effect.dieMessage(`unexpected ConfigError: ${String(result.left)}`)
  )

const errorOf = (env: Record<string, string>) =>
  Effect.flatMap(load(env), (result) =>
    Either.isLeft(result) ? Effect.succeed(String(result.left)) : Effect.dieMessage("expected a ConfigError")
  )

describe("loadSettings", () => {
  it.effect("uses the defaults on an empty environment", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf({})
      expect(settings.port).toBe(8002)
      expect(settings.host).toBe("0.0.0.0")
      expect(Option.isNone(settings.configFile)).toBe(true)
      expect(settings.maxBodyBytes).toBe(4 * 1024 * 1024)
      expect(settings.shutdownGraceMs).toBe(10_000)
      expect(settings.mockTokenDelayMs).toBe(0)
      expect(settings.logLevel).toBe(LogLevel.Info)
      expect(settings.production).toBe(false)
      expect(settings.usesDefaultKey).toBe(true)
      expect(Redacted.value(settings.internalApiKey)).toBe(defaultInternalApiKey)
    }))

  it.effect("reads every variable it is given", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf({
        PORT: "9000",
        HOST: "127.0.0.1",
        CONFIG_FILE: "/etc/llm-proxy/models.yaml",
        MAX_BODY_BYTES: "2048",
        SHUTDOWN_GRACE_MS: "0",
        MOCK_TOKEN_DELAY_MS: "5",
        LOG_FORMAT: "pretty",
        INTERNAL_API_KEY: "k-123"
      })
      expect(settings).toMatchObject({
        port: 9000,
        host: "127.0.0.1",
        maxBodyBytes: 2048,
        shutdownGraceMs: 0,
        mockTokenDelayMs: 5,
        logFormat: "pretty",
        usesDefaultKey: false
      })
      expect(Option.getOrNull(settings.configFile)).toBe("/etc/llm-proxy/models.yaml")
    }))

  const spellings: ReadonlyArray<readonly [string, LogLevel.LogLevel]> = [
    ["DEBUG", LogLevel.Debug],
    ["debug", LogLevel.Debug],
    ["INFO", LogLevel.Info],
    ["Info", LogLevel.Info],
    ["WARNING", LogLevel.Warning],
    ["warning", LogLevel.Warning],
    ["WARN", LogLevel.Warning],
    ["ERROR", LogLevel.Error],
    ["error", LogLevel.Error],
    ["CRITICAL", LogLevel.Fatal],
    ["critical", LogLevel.Fatal],
    ["Trace", LogLevel.Trace],
    ["Fatal", LogLevel.Fatal],
    ["None", LogLevel.None],
    ["All", LogLevel.All],
    [" info ", LogLevel.Info]
  ]
  for (const [text, level] of spellings) {
    it.effect(`LOG_LEVEL=${JSON.stringify(text)} is ${level._tag}`, () =>
      Effect.map(settingsOf({ LOG_LEVEL: text }), (settings) => expect(settings.logLevel).toBe(level)))
  }

  it.effect("refuses an unknown LOG_LEVEL, naming it", () =>
    Effect.map(errorOf({ LOG_LEVEL: "verbose" }), (message) => {
      expect(message).toContain("LOG_LEVEL")
      expect(message).toContain("verbose")
    }))

  const badNumbers: ReadonlyArray<readonly [string, string]> = [
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["MAX_BODY_BYTES", "lots"],
    ["MAX_BODY_BYTES", "10"],
    ["SHUTDOWN_GRACE_MS", "-1"],
    ["SHUTDOWN_GRACE_MS", "10s"],
    ["MOCK_TOKEN_DELAY_MS", "fast"]
  ]
  for (const [name, value] of badNumbers) {
    it.effect(`refuses ${name}=${value}, naming ${name}`, () =>
      Effect.map(errorOf({ [name]: value }), (message) => expect(message).toContain(name)))
  }

  it.effect("refuses production without a key of its own", () =>
    Effect.gen(function* () {
      expect(yield* errorOf({ NODE_ENV: "production" })).toContain("INTERNAL_API_KEY")
      expect(yield* errorOf({ NODE_ENV: "production", INTERNAL_API_KEY: defaultInternalApiKey })).toContain("INTERNAL_API_KEY")
    }))

  it.effect("accepts production with a key of its own, logging JSON", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf({ NODE_ENV: "production", INTERNAL_API_KEY: "a-real-secret" })
      expect(settings.production).toBe(true)
      expect(settings.usesDefaultKey).toBe(false)
      expect(settings.logFormat).toBe("json")
    }))

  it.effect("flags the default key outside production", () =>
    Effect.map(settingsOf({ INTERNAL_API_KEY: defaultInternalApiKey }), (settings) => expect(settings.usesDefaultKey).toBe(true)))

  it.effect("refuses an empty or blank INTERNAL_API_KEY", () =>
    Effect.gen(function* () {
      expect(yield* errorOf({ INTERNAL_API_KEY: "" })).toContain("INTERNAL_API_KEY")
      expect(yield* errorOf({ INTERNAL_API_KEY: "   " })).toContain("INTERNAL_API_KEY")
    }))

  it.effect("keeps the key Redacted", () =>
    Effect.map(settingsOf({ INTERNAL_API_KEY: "sk-very-secret-value" }), (settings) => {
      expect(Redacted.isRedacted(settings.internalApiKey)).toBe(true)
      expect(Redacted.value(settings.internalApiKey)).toBe("sk-very-secret-value")
      expect(String(settings.internalApiKey)).not.toContain("sk-very-secret-value")
      expect(JSON.stringify(settings)).not.toContain("sk-very-secret-value")
    }))
})

describe("start-up with a bad variable", () => {
  it("exits 1 with one line on stderr naming PORT, without a stack trace", async () => {
    const { code, stderr } = await runMainUntilExit({ PORT: "abc", NODE_ENV: "development" })
    expect(code).toBe(1)
    const lines = stderr.split("\n").filter((line) => line.trim() !== "")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("PORT")
    expect(stderr).not.toMatch(/^\s+at /m)
  }, 25_000)
})

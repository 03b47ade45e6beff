/**
 * ProxyConfig: the gateway's settings, read once from the environment and validated. A bad value stops
 * start-up with a message that names the variable.
 */
import { Config, ConfigError, Context, Effect, Either, Layer, LogLevel, Option, Redacted } from "effect"
import { availableParallelism } from "node:os"
import { traceSettingsOf, variableNames } from "./Tracing/Settings.js"
import type { TraceSettings, VariableName } from "./Tracing/Settings.js"

/** The key used when `INTERNAL_API_KEY` is unset; refused in production. */
export const defaultInternalApiKey = "change-me-internal-key"

/** The service's settings. `internalApiKey` is `Redacted` so it never reaches a log line. */
export interface ProxySettings {
  readonly internalApiKey: Redacted.Redacted<string>
  /** True when `INTERNAL_API_KEY` was not set and the development default is in use. */
  readonly usesDefaultKey: boolean
  readonly logLevel: LogLevel.LogLevel
  readonly logFormat: "json" | "pretty"
  readonly port: number
  readonly host: string
  /** Path of the YAML/JSON model registry; without it the built-in registry serves `mock`. */
  readonly configFile: Option.Option<string>
  /** The shared governance store (`redis://…`); without it limits, leases, spend and usage live in memory. */
  readonly redisUrl: Option.Option<Redacted.Redacted<string>>
  /** Prefix of every Redis key the gateway writes (several gateways, or tests, may share one Redis). */
  readonly redisKeyPrefix: string
  /** Request bodies larger than this are refused with 413 before they are read. */
  readonly maxBodyBytes: number
  /** A client must have sent a request's headers within this (Node's `headersTimeout`); else 408. */
  readonly headersTimeoutMs: number
  /** A client must have sent a whole request, body included, within this (Node's `requestTimeout`); else 408. */
  readonly bodyTimeoutMs: number
  /** A non-streamed upstream answer larger than this (after decompression) is refused as malformed (502). */
  readonly upstreamMaxResponseBytes: number
  /** One server-sent event of an upstream stream larger than this is refused as malformed. */
  readonly upstreamMaxEventBytes: number
  /** Stream data held for a client that reads slower than the upstream writes; past it the upstream waits. */
  readonly upstreamStreamBufferBytes: number
  /** Upstream answers held at once by every request together (bodies being read, events being assembled). */
  readonly upstreamMaxHeldBytes: number
  /** How long in-flight requests may run after SIGTERM before they are ended. */
  readonly shutdownGraceMs: number
  /** Delay between the built-in mock model's tokens when streaming. */
  readonly mockTokenDelayMs: number
  /** A stream silent this long gets an SSE comment (`: keepalive`); 0: never. */
  readonly sseKeepaliveMs: number
  /** Gateway processes serving the port (`WORKERS`, 1-64 or `auto`); more than 1 runs a node:cluster group. */
  readonly workers: number
  /** OpenTelemetry tracing (the standard `OTEL_*` variables); `undefined`: off, at no cost per request. */
  readonly tracing: TraceSettings | undefined
  readonly production: boolean
}

/** The gateway's validated settings, as a service. */
export class ProxyConfig extends Context.Tag("llm-proxy/ProxyConfig")<ProxyConfig, ProxySettings>() {}

const logLevelSpellings: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  critical: LogLevel.Fatal,
  fatal: LogLevel.Fatal,
  none: LogLevel.None,
  off: LogLevel.None
}

/** Parses `LOG_LEVEL` in the original service's spellings (DEBUG, INFO, WARNING, ERROR) and Effect's, any case. */
export const parseLogLevel = (text: string): Either.Either<LogLevel.LogLevel, string> => {
  const level = logLevelSpellings[text.trim().toLowerCase()]
  return level === undefined
    ? Either.left(`expected one of DEBUG, INFO, WARNING, ERROR (or ${Object.keys(logLevelSpellings).join(", ")}), got "${text}"`)
    : Either.right(level)
}

const logLevel = Config.string("LOG_LEVEL").pipe(
  Config.withDefault("INFO"),
  Config.mapOrFail((text) =>
    Either.mapLeft(parseLogLevel(text), (message) => ConfigError.InvalidData(["LOG_LEVEL"], message))
  )
)

const integerInRange = (name: string, fallback: number, min: number, max: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.mapOrFail((value) =>
      value >= min && value <= max
        ? Either.right(value)
        : Either.left(ConfigError.InvalidData([name], `${name} must be an integer from ${min} to ${max}, got ${value}`))
    )
  )

const mebibyte = 1024 * 1024

/** Node wants the whole request's timeout to be at least the headers'. */
const receiveTimeouts = Effect.gen(function* () {
  const headersTimeoutMs = yield* integerInRange("HEADERS_TIMEOUT_MS", 60_000, 100, 3_600_000)
  const bodyTimeoutMs = yield* integerInRange("BODY_TIMEOUT_MS", 120_000, 100, 3_600_000)
  if (bodyTimeoutMs < headersTimeoutMs) {
    return yield* Effect.fail(
      ConfigError.InvalidData(["BODY_TIMEOUT_MS"], `BODY_TIMEOUT_MS (${bodyTimeoutMs}) must be at least HEADERS_TIMEOUT_MS (${headersTimeoutMs})`)
    )
  }
  return { headersTimeoutMs, bodyTimeoutMs }
})

/** The most worker processes `WORKERS` may ask for. */
export const maxWorkers = 64

/** `WORKERS`: an integer from 1 to 64, or `auto` for the machine's cores (at most 64). */
export const parseWorkers = (text: string): Either.Either<number, string> => {
  const trimmed = text.trim()
  if (trimmed.toLowerCase() === "auto") return Either.right(Math.min(maxWorkers, Math.max(1, availableParallelism())))
  const value = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN
  return value >= 1 && value <= maxWorkers
    ? Either.right(value)
    : Either.left(`WORKERS must be an integer from 1 to ${maxWorkers} or auto, got "${text}"`)
}

const workers = Config.string("WORKERS").pipe(
  Config.withDefault("1"),
  Config.mapOrFail((text) => Either.mapLeft(parseWorkers(text), (message) => ConfigError.InvalidData(["WORKERS"], message)))
)

/** The `OTEL_*` variables, read all at once and checked together (Tracing/Settings.ts). */
const tracing = Effect.gen(function* () {
  const values = new Map<VariableName, string>()
  for (const name of variableNames) {
    const value = yield* Config.option(Config.string(name))
    if (Option.isSome(value)) values.set(name, value.value)
  }
  return yield* Either.match(traceSettingsOf((name) => values.get(name)), {
    onLeft: (problem) => Effect.fail(ConfigError.InvalidData([problem.variable], problem.message)),
    onRight: (settings) => Effect.succeed(settings)
  })
})

/** Reads and validates every setting from the current ConfigProvider (the environment by default). */
export const loadSettings: Effect.Effect<ProxySettings, ConfigError.ConfigError> = Effect.gen(function* () {
  const nodeEnv = yield* Config.string("NODE_ENV").pipe(Config.withDefault("development"))
  const production = nodeEnv === "production"
  const key = yield* Config.option(Config.redacted("INTERNAL_API_KEY"))
  const usesDefaultKey = Option.isNone(key) || Redacted.value(key.value) === defaultInternalApiKey
  if (Option.isSome(key) && Redacted.value(key.value).trim() === "") {
    return yield* Effect.fail(ConfigError.InvalidData(["INTERNAL_API_KEY"], "INTERNAL_API_KEY is set but empty"))
  }
  if (production && usesDefaultKey) {
    return yield* Effect.fail(
      ConfigError.InvalidData(
        ["INTERNAL_API_KEY"],
        "INTERNAL_API_KEY must be set to a secret of your own when NODE_ENV=production (the development default is refused)"
      )
    )
  }
  const logFormat = yield* Config.literal("json", "pretty")("LOG_FORMAT").pipe(
    Config.withDefault(production || !process.stdout.isTTY ? ("json" as const) : ("pretty" as const))
  )
  return {
    internalApiKey: Option.getOrElse(key, () => Redacted.make(defaultInternalApiKey)),
    usesDefaultKey,
    logLevel: yield* logLevel,
    logFormat,
    port: yield* integerInRange("PORT", 8002, 0, 65535),
    host: yield* Config.string("HOST").pipe(Config.withDefault("0.0.0.0")),
    configFile: yield* Config.option(Config.nonEmptyString("CONFIG_FILE")),
    redisUrl: yield* Config.option(
      Config.redacted("REDIS_URL").pipe(
        Config.validate({
          message: "REDIS_URL must be a redis:// or rediss:// URL",
          validation: (url) => /^rediss?:\/\/[^\s]+$/.test(Redacted.value(url))
        })
      )
    ),
    redisKeyPrefix: yield* Config.string("REDIS_KEY_PREFIX").pipe(
      Config.withDefault("llmp"),
      Config.validate({ message: "REDIS_KEY_PREFIX must be 1-64 of A-Z a-z 0-9 . _ : -", validation: (prefix) => /^[A-Za-z0-9._:-]{1,64}$/.test(prefix) })
    ),
    maxBodyBytes: yield* integerInRange("MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    ...(yield* receiveTimeouts),
    upstreamMaxResponseBytes: yield* integerInRange("UPSTREAM_MAX_RESPONSE_BYTES", 64 * mebibyte, 1024, 4096 * mebibyte),
    upstreamMaxEventBytes: yield* integerInRange("UPSTREAM_MAX_EVENT_BYTES", 16 * mebibyte, 1024, 1024 * mebibyte),
    upstreamStreamBufferBytes: yield* integerInRange("UPSTREAM_STREAM_BUFFER_BYTES", mebibyte, 16 * 1024, 1024 * mebibyte),
    upstreamMaxHeldBytes: yield* integerInRange("UPSTREAM_MAX_HELD_BYTES", 256 * mebibyte, mebibyte, 64 * 1024 * mebibyte),
    shutdownGraceMs: yield* integerInRange("SHUTDOWN_GRACE_MS", 10_000, 0, 3_600_000),
    mockTokenDelayMs: yield* integerInRange("MOCK_TOKEN_DELAY_MS", 0, 0, 60_000),
    sseKeepaliveMs: yield* integerInRange("SSE_KEEPALIVE_MS", 15_000, 0, 3_600_000),
    workers: yield* workers,
    tracing: yield* tracing,
    production
  }
})

/** Settings from the environment. */
export const layer: Layer.Layer<ProxyConfig, ConfigError.ConfigError> = Layer.effect(ProxyConfig, loadSettings)

/** Fixed settings for tests and embedding apps; unspecified fields take the defaults. */
export const layerTest = (overrides: Partial<ProxySettings> = {}): Layer.Layer<ProxyConfig> =>
  Layer.succeed(ProxyConfig, {
    internalApiKey: Redacted.make("test-internal-key"),
    usesDefaultKey: false,
    logLevel: LogLevel.Warning,
    logFormat: "json",
    port: 0,
    host: "127.0.0.1",
    configFile: Option.none(),
    redisUrl: Option.none(),
    redisKeyPrefix: "llmp",
    maxBodyBytes: 4 * 1024 * 1024,
    headersTimeoutMs: 60_000,
    bodyTimeoutMs: 120_000,
    upstreamMaxResponseBytes: 64 * mebibyte,
    upstreamMaxEventBytes: 16 * mebibyte,
    upstreamStreamBufferBytes: mebibyte,
    upstreamMaxHeldBytes: 256 * mebibyte,
    shutdownGraceMs: 10_000,
    mockTokenDelayMs: 0,
    sseKeepaliveMs: 15_000,
    workers: 1,
    tracing: undefined,
    production: false,
    ...overrides
  })

/**
 * The model registry file (`CONFIG_FILE`, YAML or JSON): public model names, their deployments and the
 * router's settings. This format is a contract: extend it, don't change it.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Either, ParseResult, Schema } from "effect"
import * as Yaml from "yaml"

/** The provider kinds a deployment may speak. */
export const ProviderKind = Schema.Literal("openai", "anthropic", "gemini", "mock").annotations({
  // One line for the union, not one per literal.
  message: (issue) => ({
    message: `Expected "openai" | "anthropic" | "gemini" | "mock", actual ${JSON.stringify(issue.actual)}`,
    override: true
  })
})
export type ProviderKind = typeof ProviderKind.Type

const NonNegativeInt = Schema.Int.pipe(Schema.greaterThanOrEqualTo(0))
const NonNegativeNumber = Schema.Number.pipe(Schema.nonNegative(), Schema.finite())
const PositiveInt = Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))

/**
 * A model's exact response cache: answers kept `ttl_s` seconds, per caller key unless `shared` (then every key
 * that may use the model shares them). Off when absent.
 */
export const CacheEntry = Schema.Struct({
  ttl_s: PositiveInt.pipe(Schema.lessThanOrEqualTo(365 * 24 * 3600)),
  shared: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false })
})
export type CachePolicy = typeof CacheEntry.Type

/**
 * A model's hedged requests: when an attempt has produced nothing (no first chunk, no completion) after `after_ms`,
 * another one starts on the next deployment, up to `max` more. Off when absent.
 */
export const HedgeEntry = Schema.Struct({
  after_ms: PositiveInt.pipe(Schema.lessThanOrEqualTo(600_000)),
  max: Schema.optionalWith(PositiveInt.pipe(Schema.lessThanOrEqualTo(4)), { exact: true, default: () => 1 })
})
export type HedgePolicy = typeof HedgeEntry.Type

/** One line of `models:`: a deployment of the public model `name`. */
export const ModelEntry = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1)),
  provider: ProviderKind,
  model: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { exact: true }),
  base_url: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^https?:\/\/[^\s]+$/, { message: () => "must be an http(s) URL" })), { exact: true }),
  api_key_env: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: () => "must be an environment variable name" })), { exact: true }),
  weight: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { exact: true }),
  fallbacks: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  /** Extra headers for every upstream request of this deployment (values are not secrets; keys go in api_key_env). */
  headers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { exact: true }),
  /** USD per million tokens; spend and budgets use it. Without it the deployment's tokens cost nothing. */
  price: Schema.optionalWith(
    Schema.Struct({ input_per_mtok: NonNegativeNumber, output_per_mtok: NonNegativeNumber }),
    { exact: true }
  ),
  /** The model's exact response cache (the same on every entry of the name that gives one). */
  cache: Schema.optionalWith(CacheEntry, { exact: true }),
  /** The model's hedged requests (the same on every entry of the name that gives one). */
  hedge: Schema.optionalWith(HedgeEntry, { exact: true }),
  /**
   * Which API of an `openai` upstream serves `/v1/responses` requests: `responses` sends them natively to
   * `{base_url}/responses`; `chat` (the default) translates them through chat completions.
   */
  api: Schema.optionalWith(Schema.Literal("chat", "responses"), { exact: true })
})
export type ModelEntry = typeof ModelEntry.Type

/** Retry, timeout and streaming settings, with their defaults. */
export const RouterSettings = Schema.Struct({
  retry: Schema.optionalWith(
    Schema.Struct({
      max_retries: Schema.optionalWith(NonNegativeInt.pipe(Schema.lessThanOrEqualTo(10)), { exact: true, default: () => 2 }),
      initial_delay_ms: Schema.optionalWith(NonNegativeInt, { exact: true, default: () => 200 }),
      max_delay_ms: Schema.optionalWith(NonNegativeInt, { exact: true, default: () => 8000 })
    }),
    { exact: true, default: () => ({ max_retries: 2, initial_delay_ms: 200, max_delay_ms: 8000 }) }
  ),
  timeouts: Schema.optionalWith(
    Schema.Struct({
      request_ms: Schema.optionalWith(PositiveInt, { exact: true, default: () => 600_000 }),
      first_token_ms: Schema.optionalWith(PositiveInt, { exact: true, default: () => 60_000 })
    }),
    { exact: true, default: () => ({ request_ms: 600_000, first_token_ms: 60_000 }) }
  ),
  /**
   * A deployment that failed `failures` requests in a row (after its retries; the caller's own mistakes do not
   * count) goes to the back of its model's order for `duration_ms`. `failures: 0` turns this off.
   */
  cooldown: Schema.optionalWith(
    Schema.Struct({
      failures: Schema.optionalWith(NonNegativeInt, { exact: true, default: () => 3 }),
      duration_ms: Schema.optionalWith(NonNegativeInt, { exact: true, default: () => 30_000 })
    }),
    { exact: true, default: () => ({ failures: 3, duration_ms: 30_000 }) }
  )
})
export type RouterSettings = typeof RouterSettings.Type

/** What governance does when its store cannot be reached: serve anyway (`open`) or refuse with 503 (`closed`). */
export const LimitSettings = Schema.Struct({
  on_store_failure: Schema.optionalWith(Schema.Literal("open", "closed"), { exact: true, default: () => "open" as const })
})
export type LimitSettings = typeof LimitSettings.Type

/**
 * Bounds of the response cache. The memory store keeps at most `max_entries` entries and `max_bytes` bytes (their
 * serialized size), dropping the least recently used; Redis keeps entries for their ttl only. An answer larger than
 * `max_entry_bytes` is not stored (a stream stops being buffered past it).
 */
export const CacheSettings = Schema.Struct({
  max_entries: Schema.optionalWith(PositiveInt, { exact: true, default: () => 10_000 }),
  max_bytes: Schema.optionalWith(PositiveInt, { exact: true, default: () => 268_435_456 }),
  max_entry_bytes: Schema.optionalWith(PositiveInt, { exact: true, default: () => 4_194_304 })
})
export type CacheSettings = typeof CacheSettings.Type

const defaultCacheSettings = (): CacheSettings => ({ max_entries: 10_000, max_bytes: 268_435_456, max_entry_bytes: 4_194_304 })

/**
 * The stored responses of the Responses API (`store: true`, `previous_response_id`, `GET`/`DELETE /v1/responses/{id}`):
 * each kept `ttl_s` seconds (default 30 days). In memory at most `max_entries` entries and `max_bytes` bytes, least
 * recently used first out; on Redis each key expires with its ttl. A response whose stored form (its input, history
 * included, and output) is over `max_entry_bytes` is not stored: continuing from it is a 404, as for an expired one.
 */
export const ResponsesSettings = Schema.Struct({
  ttl_s: Schema.optionalWith(PositiveInt.pipe(Schema.lessThanOrEqualTo(365 * 24 * 3600)), { exact: true, default: () => 30 * 24 * 3600 }),
  max_entries: Schema.optionalWith(PositiveInt, { exact: true, default: () => 10_000 }),
  max_bytes: Schema.optionalWith(PositiveInt, { exact: true, default: () => 268_435_456 }),
  max_entry_bytes: Schema.optionalWith(PositiveInt, { exact: true, default: () => 4_194_304 })
})
export type ResponsesSettings = typeof ResponsesSettings.Type

const defaultResponsesSettings = (): ResponsesSettings => ({ ttl_s: 30 * 24 * 3600, max_entries: 10_000, max_bytes: 268_435_456, max_entry_bytes: 4_194_304 })

/** Everything under `settings:`: the router's, governance's, the cache's and the stored responses'. */
export const Settings = Schema.extend(
  RouterSettings,
  Schema.Struct({
    limits: Schema.optionalWith(LimitSettings, { exact: true, default: () => ({ on_store_failure: "open" as const }) }),
    cache: Schema.optionalWith(CacheSettings, { exact: true, default: defaultCacheSettings }),
    responses: Schema.optionalWith(ResponsesSettings, { exact: true, default: defaultResponsesSettings })
  })
)
export type Settings = typeof Settings.Type

const PositiveInteger = Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))

/** A virtual key's limits; each optional. */
export const KeyLimitsEntry = Schema.Struct({
  rpm: Schema.optionalWith(PositiveInteger, { exact: true }),
  tpm: Schema.optionalWith(PositiveInteger, { exact: true }),
  max_parallel: Schema.optionalWith(PositiveInteger, { exact: true }),
  budget: Schema.optionalWith(
    Schema.Struct({ usd: Schema.Number.pipe(Schema.positive(), Schema.finite()), period: Schema.Literal("daily", "monthly") }),
    { exact: true }
  )
})
export type KeyLimitsEntry = typeof KeyLimitsEntry.Type

/**
 * One line of `keys:`: a virtual key of one service. Its secret comes from the environment (`key_env`) or is given
 * as its SHA-256 (`key_sha256`), never written in the file.
 */
export const KeyEntry = Schema.Struct({
  id: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9._-]{1,64}$/, { message: () => "must be 1-64 of A-Z a-z 0-9 . _ -" })),
  key_env: Schema.optionalWith(
    Schema.String.pipe(Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: () => "must be an environment variable name" })),
    { exact: true }
  ),
  key_sha256: Schema.optionalWith(
    Schema.String.pipe(Schema.pattern(/^[0-9a-fA-F]{64}$/, { message: () => "must be 64 hexadecimal digits" })),
    { exact: true }
  ),
  /** Public model names it may use; `*` matches any run of characters. Omitted: every model. */
  models: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.minLength(1))), { exact: true }),
  limits: Schema.optionalWith(KeyLimitsEntry, { exact: true })
})
export type KeyEntry = typeof KeyEntry.Type

/** The whole registry file. */
export const RegistryFile = Schema.Struct({
  models: Schema.Array(ModelEntry).pipe(Schema.minItems(1, { message: () => "must list at least one model" })),
  keys: Schema.optionalWith(Schema.Array(KeyEntry), { exact: true, default: () => [] }),
  settings: Schema.optionalWith(Settings, { exact: true, default: () => Schema.decodeSync(Settings)({}) })
})
export type RegistryFile = typeof RegistryFile.Type

/** The registry used without `CONFIG_FILE`: the built-in `mock` model. */
export const builtInRegistry: RegistryFile = {
  models: [{ name: "mock", provider: "mock" }],
  keys: [],
  settings: Schema.decodeSync(Settings)({})
}

/** Start-up failure of the registry, naming the file, the entry and the field. */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  message: Schema.String
}) {}

const describePath = (raw: unknown, path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<{ text: string; node: unknown }>(
    ({ node, text }, key) => {
      const child = typeof node === "object" && node !== null ? (node as Record<PropertyKey, unknown>)[key] : undefined
      if (typeof key === "number") {
        const name = typeof child === "object" && child !== null ? (child as Record<string, unknown>)["name"] : undefined
        return { node: child, text: `${text}[${key}]${typeof name === "string" ? ` (${name})` : ""}` }
      }
      return { node: child, text: text === "" ? String(key) : `${text}.${String(key)}` }
    },
    { text: "", node: raw }
  ).text

/** Decodes and cross-checks a parsed registry document. */
export const decodeRegistry = (raw: unknown, source: string): Either.Either<RegistryFile, RegistryError> =>
  Schema.decodeUnknownEither(RegistryFile, { errors: "all", onExcessProperty: "error" })(raw).pipe(
    Either.mapLeft((error) => {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
      const lines = issues.map((issue) => `  ${describePath(raw, issue.path) || "(root)"}: ${issue.message}`)
      return new RegistryError({ message: `${source} is not a valid model registry:\n${lines.join("\n")}` })
    }),
    Either.flatMap((registry) => {
      const names = new Set(registry.models.map((entry) => entry.name))
      const problems = registry.models.flatMap((entry, index) =>
        (entry.fallbacks ?? []).flatMap((fallback) =>
          names.has(fallback) && fallback !== entry.name
            ? []
            : [`  models[${index}] (${entry.name}).fallbacks: "${fallback}" ${fallback === entry.name ? "is the model itself" : "is not a model name in this file"}`]
        )
      )
      // A model's cache and hedging belong to its name: entries of one name that give them must agree.
      for (const field of ["cache", "hedge"] as const) {
        const given = new Map<string, string>()
        registry.models.forEach((entry, index) => {
          const value = entry[field]
          if (value === undefined) return
          const text = JSON.stringify(value)
          const first = given.get(entry.name)
          if (first === undefined) given.set(entry.name, text)
          else if (first !== text) problems.push(`  models[${index}] (${entry.name}).${field}: differs from another entry of "${entry.name}"`)
        })
      }
      registry.models.forEach((entry, index) => {
        if (entry.api === "responses" && entry.provider !== "openai") problems.push(`  models[${index}] (${entry.name}).api: "responses" is for openai deployments only`)
      })
      const seen = new Set<string>()
      registry.keys.forEach((key, index) => {
        const where = `  keys[${index}] (${key.id})`
        if (seen.has(key.id)) problems.push(`${where}.id: "${key.id}" is used by another key`)
        seen.add(key.id)
        if (key.id === "operator") problems.push(`${where}.id: "operator" names INTERNAL_API_KEY and cannot be a key's id`)
        if ((key.key_env === undefined) === (key.key_sha256 === undefined)) {
          problems.push(`${where}: give exactly one of key_env and key_sha256`)
        }
      })
      return problems.length === 0
        ? Either.right(registry)
        : Either.left(new RegistryError({ message: `${source} is not a valid model registry:\n${problems.join("\n")}` }))
    })
  )

/** Reads `path` (YAML; JSON is YAML too) into a validated registry. */
export const readRegistryFile = (path: string): Effect.Effect<RegistryFile, RegistryError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs
      .readFileString(path)
      .pipe(Effect.mapError((error) => new RegistryError({ message: `CONFIG_FILE ${path} cannot be read: ${error.message}` })))
    const raw = yield* Effect.try({
      try: () => Yaml.parse(text) as unknown,
      catch: (error) => new RegistryError({ message: `CONFIG_FILE ${path} is not valid YAML or JSON: ${String(error)}` })
    })
    return yield* decodeRegistry(raw, `CONFIG_FILE ${path}`)
  })

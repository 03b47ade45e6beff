/**
 * ModelRegistry: public model names → their deployments (a Provider each), fallbacks, the virtual keys and the
 * settings. The service holds the current registry: a reload swaps in a whole new one at once, requests in flight
 * keep the one they started with.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Config, Context, Effect, Layer, Option, Redacted, Runtime, Schema } from "effect"
import { watch } from "node:fs"
import { basename, dirname } from "node:path"
import type { ConfigError } from "effect"
import { ProxyConfig } from "../Config.js"
import { emptyKeyRing, makeKeyRing } from "../Governance/Keys.js"
import * as Metrics from "../Metrics.js"
import type { KeyRing } from "../Governance/Keys.js"
import * as Anthropic from "../Providers/Anthropic/Provider.js"
import * as Gemini from "../Providers/Gemini/Provider.js"
import * as Mock from "../Providers/Mock/Provider.js"
import * as OpenAiCompatible from "../Providers/OpenAiCompatible/Provider.js"
import { toProvider } from "../Providers/Provider.js"
import type { Provider, StreamProvider } from "../Providers/Provider.js"
import { makeScrubber, scrubbed } from "../Providers/Scrub.js"
import type { UpstreamTransport } from "../Providers/Upstream/Transport.js"
import { builtInRegistry, readRegistryFile, RegistryError, Settings } from "./RegistryFile.js"
import type { CachePolicy, HedgePolicy, ModelEntry, ProviderKind, RegistryFile } from "./RegistryFile.js"

/** USD per million tokens. */
export interface Price {
  readonly input_per_mtok: number
  readonly output_per_mtok: number
}

/** One upstream deployment of a public model. */
export interface Deployment {
  /** The public name clients send as `model`. */
  readonly name: string
  readonly providerKind: ProviderKind | string
  /** The model id sent upstream. */
  readonly upstreamModel: string
  readonly weight: number
  readonly provider: Provider
  /** What its tokens cost; none: nothing. */
  readonly price: Price | undefined
}

/** A public model: its deployments (balanced by weight) and the models to fall back to, in order. */
export interface RegisteredModel {
  readonly name: string
  readonly deployments: ReadonlyArray<Deployment>
  readonly fallbacks: ReadonlyArray<string>
  readonly ownedBy: string
  /** Its exact response cache; none: off. */
  readonly cache: CachePolicy | undefined
  /** Its hedged requests; none: off. */
  readonly hedge: HedgePolicy | undefined
}

/** One generation of the registry's contents. */
export interface Registry {
  readonly models: ReadonlyArray<RegisteredModel>
  readonly lookup: (name: string) => RegisteredModel | undefined
  readonly settings: Settings
  /** The virtual keys (the operator key is not among them). */
  readonly keys: KeyRing
  /** Unix seconds when the registry was loaded; reported as each model's `created`. */
  readonly loadedAt: number
}

/** The current registry, and how a reload replaces it. */
export interface RegistryHolder {
  /** The registry new requests use. */
  readonly current: () => Registry
  /** Swaps in a new registry for new requests. */
  readonly replace: (next: Registry) => void
}

/** The model registry service. */
export class ModelRegistry extends Context.Tag("llm-proxy/ModelRegistry")<ModelRegistry, RegistryHolder>() {}

/** A holder of `initial`, replaceable. */
export const holderOf = (initial: Registry): RegistryHolder => {
  let current = initial
  return {
    current: () => current,
    replace: (next) => {
      current = next
    }
  }
}

/**
 * A deployment given directly, for tests and embedding apps that bring their own provider: a `Provider`, or an
 * Effect-and-Stream `StreamProvider`, adapted once here.
 */
export interface StaticDeployment {
  readonly name: string
  readonly provider: Provider | StreamProvider
  readonly upstreamModel?: string
  readonly providerKind?: string
  readonly weight?: number
  readonly fallbacks?: ReadonlyArray<string>
  readonly price?: Price | undefined
  /** The model's response cache (the first entry of a name that gives one sets it). */
  readonly cache?: CachePolicy | undefined
  /** The model's hedged requests (likewise). */
  readonly hedge?: HedgePolicy | undefined
}

const defaultSettings = (): Settings => Schema.decodeSync(Settings)({})

/** Groups deployments by public name, keeping first-seen order for models and fallbacks. */
export const makeRegistry = (
  deployments: ReadonlyArray<StaticDeployment>,
  settings: Settings = defaultSettings(),
  keys: KeyRing = emptyKeyRing
): Registry => {
  const byName = new Map<
    string,
    { deployments: Array<Deployment>; fallbacks: Array<string>; ownedBy: string; cache: CachePolicy | undefined; hedge: HedgePolicy | undefined }
  >()
  for (const entry of deployments) {
    const model = byName.get(entry.name) ?? {
      deployments: [],
      fallbacks: [],
      ownedBy: entry.providerKind ?? "llm-proxy",
      cache: undefined,
      hedge: undefined
    }
    model.cache ??= entry.cache
    model.hedge ??= entry.hedge
    model.deployments.push({
      name: entry.name,
      providerKind: entry.providerKind ?? "custom",
      upstreamModel: entry.upstreamModel ?? entry.name,
      weight: entry.weight ?? 1,
      provider: toProvider(entry.provider),
      price: entry.price
    })
    for (const fallback of entry.fallbacks ?? []) if (!model.fallbacks.includes(fallback)) model.fallbacks.push(fallback)
    byName.set(entry.name, model)
  }
  const models = [...byName].map(([name, model]) => ({ name, ...model }))
  const index = new Map(models.map((model) => [model.name, model]))
  return { models, lookup: (name) => index.get(name), settings, keys, loadedAt: Math.floor(Date.now() / 1000) }
}

const defaultBaseUrls: Record<ProviderKind, string> = {
  openai: OpenAiCompatible.defaultBaseUrl,
  anthropic: Anthropic.defaultBaseUrl,
  gemini: Gemini.defaultBaseUrl,
  mock: "mock://"
}

const providerFor = (
  entry: ModelEntry,
  apiKey: Redacted.Redacted<string> | undefined,
  mockTokenDelayMs: number
): Effect.Effect<Provider, never, UpstreamTransport> => {
  const target = { baseUrl: entry.base_url ?? defaultBaseUrls[entry.provider], apiKey, headers: entry.headers ?? {} }
  switch (entry.provider) {
    case "openai":
      return OpenAiCompatible.make(target, entry.api ?? "chat")
    case "anthropic":
      return Anthropic.make(target)
    case "gemini":
      return Gemini.make(target)
    case "mock":
      return Effect.succeed(Mock.make({ tokenDelayMs: mockTokenDelayMs }))
  }
}

/**
 * Builds a registry from a registry file, reading each deployment's key from its `api_key_env` and each virtual
 * key's secret from its `key_env`. Every provider's failures are scrubbed of every secret the gateway holds: its
 * upstream keys and the operator key.
 */
export const fromFile = (
  file: RegistryFile,
  mockTokenDelayMs: number,
  operatorKey?: Redacted.Redacted<string>
): Effect.Effect<Registry, RegistryError | ConfigError.ConfigError, UpstreamTransport> =>
  Effect.gen(function* () {
    const secrets: Array<string> = operatorKey === undefined ? [] : [Redacted.value(operatorKey)]
    const deployments = yield* Effect.forEach(file.models, (entry, index) =>
      Effect.gen(function* () {
        const apiKey =
          entry.api_key_env === undefined
            ? undefined
            : yield* Config.redacted(entry.api_key_env).pipe(
                Effect.mapError(
                  () =>
                    new RegistryError({
                      message: `models[${index}] (${entry.name}).api_key_env: environment variable ${entry.api_key_env} is not set`
                    })
                )
              )
        if (apiKey !== undefined) secrets.push(Redacted.value(apiKey))
        return {
          name: entry.name,
          provider: yield* providerFor(entry, apiKey, mockTokenDelayMs),
          upstreamModel: entry.model ?? entry.name,
          providerKind: entry.provider,
          weight: entry.weight ?? 1,
          fallbacks: entry.fallbacks ?? [],
          price: entry.price,
          cache: entry.cache,
          hedge: entry.hedge
        }
      })
    )
    const keys = yield* makeKeyRing(file.keys, operatorKey)
    const scrub = makeScrubber(secrets)
    return makeRegistry(
      deployments.map((deployment) => ({ ...deployment, provider: scrubbed(deployment.provider, scrub) })),
      file.settings,
      keys
    )
  })

/** Reads `CONFIG_FILE` (or the built-in registry without it) into a registry. */
export const load = Effect.gen(function* () {
  const config = yield* ProxyConfig
  const file = Option.isSome(config.configFile) ? yield* readRegistryFile(config.configFile.value) : builtInRegistry
  return yield* fromFile(file, config.mockTokenDelayMs, config.internalApiKey)
})

/** How long a burst of file-change events is let settle before the file is read again (editors write in steps). */
const settleMs = 150

/**
 * Watches `path` for changes, as `onChange` calls. The directory is watched, not the file: editors and config
 * managers replace a file by renaming a new one over it, which ends a watch on the file itself.
 */
const watchFile = (path: string, onChange: () => void) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const name = basename(path)
      let timer: ReturnType<typeof setTimeout> | undefined
      const watcher = watch(dirname(path), (_event, changed) => {
        if (changed !== null && changed !== name) return
        if (timer !== undefined) clearTimeout(timer)
        timer = setTimeout(onChange, settleMs)
      })
      watcher.on("error", () => watcher.close())
      return { watcher, cancel: () => timer !== undefined && clearTimeout(timer) }
    }),
    ({ cancel, watcher }) =>
      Effect.sync(() => {
        cancel()
        watcher.close()
      })
  )

/**
 * The registry from `CONFIG_FILE`, or the built-in `mock` model without it, reloaded on SIGHUP and whenever the
 * file changes on disk. A valid file is swapped in at once for new requests (requests in flight finish on the old
 * one); an invalid one is refused with a log line that names the problem, and the old registry keeps serving.
 */
export const layer: Layer.Layer<
  ModelRegistry,
  RegistryError | ConfigError.ConfigError,
  ProxyConfig | FileSystem.FileSystem | UpstreamTransport
> = Layer.scoped(
  ModelRegistry,
  Effect.gen(function* () {
    const holder = holderOf(yield* load)
    const config = yield* ProxyConfig
    const runFork = Runtime.runFork(yield* Effect.runtime<ProxyConfig | FileSystem.FileSystem | UpstreamTransport>())
    const reloadOnce = load.pipe(
      Effect.tap((next) =>
        Effect.sync(() => {
          holder.replace(next)
          Metrics.configReloads.update(1, "ok")
        })
      ),
      Effect.zipRight(Effect.logInfo("registry reloaded")),
      Effect.catchAll((error) =>
        Effect.zipRight(
          Effect.sync(() => Metrics.configReloads.update(1, "rejected")),
          Effect.logError(`registry reload refused, the previous registry keeps serving: ${error.message}`)
        )
      )
    )
    // One reload at a time; a change during a reload is read once it ends.
    let running = false
    let again = false
    const reload = () => {
      if (running) {
        again = true
        return
      }
      running = true
      runFork(reloadOnce).addObserver(() => {
        running = false
        if (again) {
          again = false
          reload()
        }
      })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", reload)),
      () => Effect.sync(() => process.off("SIGHUP", reload))
    )
    if (Option.isSome(config.configFile)) yield* watchFile(config.configFile.value, reload)
    return holder
  })
)

/** A registry of the given deployments: how tests and embedding apps plug in their own providers. */
export const layerStatic = (
  deployments: ReadonlyArray<StaticDeployment>,
  settings?: Partial<Settings>,
  keys?: KeyRing
): Layer.Layer<ModelRegistry> =>
  Layer.sync(ModelRegistry, () => holderOf(makeRegistry(deployments, Schema.decodeSync(Settings)(settings ?? {}), keys)))

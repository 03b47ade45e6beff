/**
 * The whole gateway as one layer, and the pieces it is made of for apps that compose their own.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Layer, Redacted } from "effect"
import * as Config from "./Config.js"
import type * as CacheStore from "./Cache/Store.js"
import * as CacheStoreLayer from "./Cache/StoreLayer.js"
import * as ChatCore from "./Core/Chat.js"
import type * as Store from "./Governance/Store.js"
import * as StoreLayer from "./Governance/StoreLayer.js"
import * as Tokenizer from "./Governance/Tokenizer.js"
import * as Auth from "./Http/Auth.js"
import * as Lifecycle from "./Http/Lifecycle.js"
import * as Server from "./Http/Server.js"
import * as Logging from "./Logging.js"
import * as Transport from "./Providers/Upstream/Transport.js"
import * as ResponsesStore from "./Responses/Store.js"
import * as Registry from "./Router/Registry.js"
import * as Router from "./Router/Router.js"
import * as Tracing from "./Tracing/Tracing.js"

/** Warns loudly when the development default key is in use. */
const defaultKeyWarning = Layer.effectDiscard(
  Effect.flatMap(Config.ProxyConfig, (config) =>
    config.usesDefaultKey
      ? Effect.logWarning(
          `INTERNAL_API_KEY is not set: using the development default "${Redacted.value(config.internalApiKey)}". ` +
            "Anyone who knows it can use this gateway. Set INTERNAL_API_KEY (required with NODE_ENV=production)."
        )
      : Effect.void
  )
)

/** What an app may swap in the gateway it serves. */
export interface ServeOptions<EA, RA> {
  /** Who may call: the operator key and the registry's keys by default (`Auth.layer`). It guards every route. */
  readonly authenticator?: Layer.Layer<Auth.Authenticator, EA, RA>
  /** The governance store: the one `REDIS_URL` names, or memory, by default. */
  readonly store?: Layer.Layer<Store.Store>
  /** The response cache's store: Redis when `REDIS_URL` is set, else memory, by default. */
  readonly cacheStore?: Layer.Layer<CacheStore.CacheStore>
  /** The stored responses of the Responses API: Redis when `REDIS_URL` is set, else memory, by default. */
  readonly responsesStore?: Layer.Layer<ResponsesStore.ResponsesStore>
}

/**
 * A server layer with everything behind it: chat core, router, registry, authenticator, lifecycle, tracing, logging.
 * Tracing is built before the server and released after it has drained: its last spans are flushed.
 */
const withServices = <E, R, E2, R2, EA, RA>(
  server: Layer.Layer<never, E2, R2>,
  registry: Layer.Layer<Registry.ModelRegistry, E, R>,
  options: ServeOptions<EA, RA>
) =>
  server.pipe(
    Layer.provide(ChatCore.layer),
    Layer.provide(Router.layer),
    Layer.provide(options.authenticator ?? (Auth.layer as Layer.Layer<Auth.Authenticator, EA, RA | Config.ProxyConfig | Registry.ModelRegistry>)),
    Layer.provide(registry),
    Layer.provide(
      Layer.mergeAll(
        options.store ?? StoreLayer.layerConfig,
        options.cacheStore ?? CacheStoreLayer.layerConfig,
        options.responsesStore ?? ResponsesStore.layerConfig,
        Tokenizer.layer
      )
    ),
    Layer.provideMerge(Lifecycle.layer),
    Layer.provide(Tracing.layer),
    Layer.provide(defaultKeyWarning),
    Layer.provide(Logging.layer)
  )

/**
 * The gateway serving on `HOST`:`PORT` with the given registry: the chat fast path in front of the HttpApi. Needs
 * ProxyConfig; provides the Lifecycle of its server (launch it).
 */
export const serveWith = <E, R, EA = never, RA = never>(
  registry: Layer.Layer<Registry.ModelRegistry, E, R>,
  options: ServeOptions<EA, RA> = {}
) => withServices(Server.layer, registry, options)

/** The same gateway with the HttpApi's own chat handler and no fast path in front. */
export const serveApiOnlyWith = <E, R, EA = never, RA = never>(
  registry: Layer.Layer<Registry.ModelRegistry, E, R>,
  options: ServeOptions<EA, RA> = {}
) => withServices(Server.layerApiOnly, registry, options)

/** The gateway as `npm start` runs it: settings from the environment, registry from `CONFIG_FILE` or built in. */
export const layer = serveWith(Registry.layer).pipe(
  Layer.provide(Transport.layerConfig),
  Layer.provide(NodeFileSystem.layer),
  Layer.provide(Config.layer)
)

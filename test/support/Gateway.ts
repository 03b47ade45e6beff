/**
 * Starts the whole gateway in-process on 127.0.0.1, port 0, for tests that speak to it over a real socket.
 */
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { AddressInfo } from "node:net"
import * as App from "../../src/App.js"
import type { Store } from "../../src/Governance/Store.js"
import type { CacheStore } from "../../src/Cache/Store.js"
import * as Config from "../../src/Config.js"
import type { ProxyConfig, ProxySettings } from "../../src/Config.js"
import { Lifecycle } from "../../src/Http/Lifecycle.js"
import type { LifecycleState } from "../../src/Http/Lifecycle.js"
import * as Mock from "../../src/Providers/Mock/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import type { ModelRegistry } from "../../src/Router/Registry.js"

export const testKey = "test-internal-key"

export interface RunningGateway {
  /** e.g. http://127.0.0.1:41234 */
  readonly baseUrl: string
  readonly lifecycle: LifecycleState & { readonly startDraining: () => void }
  /** Headers that authenticate with the test key. */
  readonly auth: Readonly<Record<string, string>>
}

export interface GatewayOptions {
  /** The registry; default: the built-in `mock` model. */
  readonly registry?: Layer.Layer<ModelRegistry, never, ProxyConfig>
  readonly settings?: Partial<ProxySettings>
  /**
   * Which transport serves chat: `fast` (the node:http fast path in front of the HttpApi, as `npm start` runs it)
   * or `api` (the HttpApi's own handler, as an app that mounts the Api gets it). Default `fast`.
   */
  readonly mount?: Mount
  /** The governance store; default: the one the settings name (memory without a Redis URL). */
  readonly store?: Layer.Layer<Store>
  /** The response cache's store; default: the one the settings name (memory without a Redis URL). */
  readonly cacheStore?: Layer.Layer<CacheStore>
}

/** The two ways the gateway's chat is mounted; contract tests run over both. */
export type Mount = "fast" | "api"
export const mounts: ReadonlyArray<Mount> = ["fast", "api"]

/** Builds and starts the gateway in the current scope; closing the scope drains and stops it. */
export const startGateway = (options: GatewayOptions = {}): Effect.Effect<RunningGateway, never, Scope.Scope> =>
  Effect.gen(function* () {
    const registry =
      options.registry ??
      Registry.layerStatic([{ name: "mock", providerKind: "mock", provider: Mock.make({ tokenDelayMs: 0 }) }])
    const serveOptions = {
      ...(options.store === undefined ? {} : { store: options.store }),
      ...(options.cacheStore === undefined ? {} : { cacheStore: options.cacheStore })
    }
    const context = yield* Layer.build(
      (options.mount === "api" ? App.serveApiOnlyWith(registry, serveOptions) : App.serveWith(registry, serveOptions)).pipe(
        Layer.provide(Config.layerTest({ port: 0, host: "127.0.0.1", ...options.settings }))
      )
    ).pipe(Effect.orDie)
    const lifecycle = Context.get(context, Lifecycle)
    const { port } = lifecycle.server.address() as AddressInfo
    return { baseUrl: `http://127.0.0.1:${port}`, lifecycle, auth: { "x-internal-auth": testKey } }
  })

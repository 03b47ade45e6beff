/**
 * Logging from ProxyConfig: the minimum level from `LOG_LEVEL`, JSON lines or pretty output from `LOG_FORMAT`.
 * Below the level, log calls cost a level comparison and nothing else.
 */
import { Effect, Layer, Logger } from "effect"
import { ProxyConfig } from "./Config.js"

/** Replaces the default logger according to the settings. */
export const layer: Layer.Layer<never, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.map(ProxyConfig, (config) =>
    Layer.mergeAll(
      config.logFormat === "json" ? Logger.json : Logger.pretty,
      Logger.minimumLogLevel(config.logLevel)
    )
  )
)

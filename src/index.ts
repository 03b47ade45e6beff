/**
 * llm-proxy as a library: the layers and services another Effect app composes, and the OpenAI schemas.
 *
 * ```ts
 * import { App, Config, Registry } from "llm-proxy"
 * const MyGateway = App.serveWith(Registry.layerStatic([{ name: "my-model", provider: myProvider }])).pipe(
 *   Layer.provide(Config.layer)
 * )
 * ```
 */
export * as App from "./App.js"
export * as ChatCore from "./Core/Chat.js"
export * as CacheStore from "./Cache/Store.js"
export * as MemoryCacheStore from "./Cache/MemoryStore.js"
export * as RedisCacheStore from "./Cache/RedisStore.js"
export * as Timer from "./Timer.js"
export * as Config from "./Config.js"
export * as Errors from "./Errors.js"
export * as HttpApiContract from "./Http/Api.js"
export * as Auth from "./Http/Auth.js"
export * as ErrorTable from "./Http/Errors.js"
export * as Lifecycle from "./Http/Lifecycle.js"
export * as Server from "./Http/Server.js"
export * as Sse from "./Http/Sse.js"
export * as Logging from "./Logging.js"
export * as Schemas from "./OpenAi/Schemas.js"
export * as Embeddings from "./OpenAi/Embeddings.js"
export * as MessagesWire from "./Anthropic/Wire.js"
export * as MessagesTranslate from "./Anthropic/Translate.js"
export * as MessagesStreamTranslate from "./Anthropic/StreamTranslate.js"
export * as Wire from "./OpenAi/Wire.js"
export * as ChunkSource from "./Providers/ChunkSource.js"
export * as Provider from "./Providers/Provider.js"
export * as UpstreamTransport from "./Providers/Upstream/Transport.js"
export * as UpstreamStatus from "./Providers/Upstream/Status.js"
export * as SseDecoder from "./Providers/Upstream/SseDecoder.js"
export * as Deadline from "./Providers/Deadline.js"
export * as MockProvider from "./Providers/Mock/Provider.js"
export * as OpenAiCompatibleProvider from "./Providers/OpenAiCompatible/Provider.js"
export * as AnthropicProvider from "./Providers/Anthropic/Provider.js"
export * as GeminiProvider from "./Providers/Gemini/Provider.js"
export * as Registry from "./Router/Registry.js"
export * as RegistryFile from "./Router/RegistryFile.js"
export * as Router from "./Router/Router.js"
export * as Tracing from "./Tracing/Tracing.js"
export * as TraceSettings from "./Tracing/Settings.js"

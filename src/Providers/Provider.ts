/**
 * The interface every upstream dialect implements, the one error they fail with, and the adapter that turns a
 * provider written as an Effect and a Stream (what library users write) into it.
 */
import { Context, Effect, Scope, Stream } from "effect"
import type { Redacted } from "effect"
import type { MessageAnswer, MessagesEvent, NativeCall } from "../Anthropic/Wire.js"
import type { EmbeddingRequest, Embeddings } from "../OpenAi/Embeddings.js"
import type { ResponseAnswer, ResponsesEvent, ResponsesNativeCall } from "../Responses/Wire.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { fromPull, pullOf, releaseOf } from "./ChunkSource.js"
import type { ChunkSource } from "./ChunkSource.js"
import { within } from "./Deadline.js"
import type { Deadline } from "./Deadline.js"

export type { Deadline } from "./Deadline.js"
export { isFallbackWorthy, isRetryable, ProviderError } from "./ProviderError.js"
export type { ProviderErrorReason } from "./ProviderError.js"
import { ProviderError } from "./ProviderError.js"

/**
 * One upstream deployment speaking one dialect, as the Router calls it. `request.model` is already the upstream
 * model id. Each call ends by its `deadline` (when given), failing with `deadline.onTimeout()` and aborting the
 * upstream; interrupting it aborts the upstream too.
 */
export interface Provider {
  /** One non-streamed completion. */
  readonly complete: (request: ChatCompletionRequest, deadline?: Deadline) => Effect.Effect<ChatCompletion, ProviderError>
  /**
   * Connects a streamed completion and hands it over as a ChunkSource, which the caller must close. The deadline
   * bounds the connection; the caller bounds the reads that follow.
   */
  readonly open: (request: ChatCompletionRequest, deadline?: Deadline) => Effect.Effect<ChunkSource, ProviderError>
  /**
   * Embeds `request.input`: one vector per input, in input order, with the upstream's usage when it reported one.
   * Every provider declares it; one whose upstream cannot embed fails with `InvalidRequest` (`cannotEmbed`).
   */
  readonly embed: (request: EmbeddingRequest, deadline?: Deadline) => Effect.Effect<Embeddings, ProviderError>
  /**
   * Anthropic's Messages API spoken natively, when the upstream speaks it (optional): a `/v1/messages` request to
   * such a deployment goes as the client sent it, not through chat completions. Without it the Router translates.
   */
  readonly messages?: MessagesNative
  /**
   * OpenAI's Responses API spoken natively (optional; an OpenAI-compatible deployment with `api: responses`): a
   * `/v1/responses` request to such a deployment goes as the client sent it. Without it the Router translates.
   */
  readonly responses?: ResponsesNative
}

/**
 * The Responses API of an upstream that speaks it. `call.body` is the client's body with the upstream model (and the
 * history of `previous_response_id` resolved); each call is bounded by its deadline like the chat calls.
 */
export interface ResponsesNative {
  /** One non-streamed response, as the upstream answered it. */
  readonly create: (call: ResponsesNativeCall, deadline?: Deadline) => Effect.Effect<ResponseAnswer, ProviderError>
  /** Connects a streamed response: its events as the upstream sent them. The caller must close the source. */
  readonly open: (call: ResponsesNativeCall, deadline?: Deadline) => Effect.Effect<ChunkSource<ResponsesEvent>, ProviderError>
}

/**
 * The Messages API of an upstream that speaks it. `call.body` is the client's body with the upstream model; each
 * call is bounded by its deadline like the chat calls.
 */
export interface MessagesNative {
  /** One non-streamed message, as the upstream answered it, with its usage read off. */
  readonly create: (call: NativeCall, deadline?: Deadline) => Effect.Effect<MessageAnswer, ProviderError>
  /** Connects a streamed message: its events as the upstream sent them. The caller must close the source. */
  readonly open: (call: NativeCall, deadline?: Deadline) => Effect.Effect<ChunkSource<MessagesEvent>, ProviderError>
  /** The upstream's count of the request's input tokens. */
  readonly countTokens: (call: NativeCall, deadline?: Deadline) => Effect.Effect<number, ProviderError>
}

/**
 * The refusal of a deployment whose upstream has no embeddings: the caller's mistake (400), tried nowhere else.
 * `request.model` is the deployment's upstream model; `why` says what its provider is.
 */
export const cannotEmbed = (provider: string, why: string) => (request: EmbeddingRequest): Effect.Effect<never, ProviderError> =>
  Effect.fail(
    new ProviderError({
      reason: "InvalidRequest",
      message: `deployment ${request.model} (${provider}) cannot embed: ${why}. Use a model served by an OpenAI-compatible, Gemini or mock deployment.`,
      provider,
      param: "model",
      code: "model_cannot_embed"
    })
  )

/**
 * A provider written with Effects and Streams: what a library user brings. `stream` must be lazy (nothing sent
 * until pulled) so that it can be retried until its first chunk. `fromStream` adapts it.
 */
export interface StreamProvider {
  readonly complete: (request: ChatCompletionRequest) => Effect.Effect<ChatCompletion, ProviderError>
  readonly stream: (request: ChatCompletionRequest) => Stream.Stream<ChatCompletionChunk, ProviderError>
  /** Embeddings, when this provider has them; without it, embeddings requests are refused with a 400. */
  readonly embed?: (request: EmbeddingRequest) => Effect.Effect<Embeddings, ProviderError>
}

const chatOnly = cannotEmbed("custom", "its provider serves chat completions only")

/** A `StreamProvider`'s embeddings bounded by the deadline, or the refusal when it has none. */
const embedOf = (embed: StreamProvider["embed"]): Provider["embed"] =>
  embed === undefined ? chatOnly : (request, deadline) => within(embed(request), deadline)

/**
 * Adapts a `StreamProvider`, once, at registration: its completion (and embeddings) are bounded by a timer that
 * interrupts them, its stream is pulled through a ChunkSource (a fiber per pull; the built-in HTTP providers need
 * none). Without `embed`, embeddings requests are refused.
 */
export const fromStream = (provider: StreamProvider): Provider => ({
  complete: (request, deadline) => within(provider.complete(request), deadline),
  embed: embedOf(provider.embed),
  // The runtime is taken outside the uninterruptible region: the pulls it runs must stay interruptible.
  open: (request) =>
    Effect.flatMap(Effect.runtime<never>(), (runtime) =>
      Effect.uninterruptible(
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const pull = yield* Scope.extend(Stream.toPull(provider.stream(request)), scope)
          return fromPull(pull, runtime, scope)
        })
      )
    )
})

/** Whether a value is already a `Provider` (has `open`) rather than a `StreamProvider`. */
export const isProvider = (value: Provider | StreamProvider): value is Provider => "open" in value

/** A `Provider` as is, or a `StreamProvider` adapted. */
export const toProvider = (value: Provider | StreamProvider): Provider => (isProvider(value) ? value : fromStream(value))

/** A provider's stream as an Effect Stream: connects when pulled, closes the upstream when it ends. */
export const streamOf = (
  provider: Provider,
  request: ChatCompletionRequest,
  deadline?: Deadline
): Stream.Stream<ChatCompletionChunk, ProviderError> =>
  Stream.unwrapScoped(
    Effect.map(Effect.acquireRelease(provider.open(request, deadline), releaseOf), (source) =>
      Stream.repeatEffectChunkOption(pullOf(source))
    )
  )

/** One provider as a service, for apps that compose a single provider's Layer (e.g. `MockProvider.layer`). */
export class ChatProvider extends Context.Tag("llm-proxy/ChatProvider")<ChatProvider, Provider>() {}

/** Where one deployment's upstream lives and how to authenticate to it; read from the model registry. */
export interface UpstreamTarget {
  /** Base URL as the provider's official SDK spells it (OpenAI's includes `/v1`; Anthropic's and Gemini's do not). */
  readonly baseUrl: string
  /** The gateway's own credential for this upstream; never the client's key. */
  readonly apiKey: Redacted.Redacted<string> | undefined
  /** Extra headers sent with every upstream request (e.g. OpenRouter's `HTTP-Referer`). */
  readonly headers: Readonly<Record<string, string>>
}

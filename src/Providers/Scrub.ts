/**
 * Secrets never travel back out: an upstream that echoes the gateway's own key in an error message (some do)
 * must not hand it to a client or a log. A provider wrapped here has every configured secret replaced in the
 * messages of the failures it reports, before and after a stream's commit, and of its embeddings' failures.
 */
import { Effect } from "effect"
import type { ChunkSource } from "./ChunkSource.js"
import { ProviderError } from "./ProviderError.js"
import type { MessagesNative, Provider, ResponsesNative } from "./Provider.js"

/** What a scrubbed secret reads as. */
export const redactedMark = "[redacted]"

/** Secrets shorter than this are not scrubbed: they would match ordinary text (and are no secrets). */
const minimumSecretLength = 8

/** Replaces every occurrence of any of `secrets` in a text; the identity when there are none. */
export const makeScrubber = (secrets: Iterable<string>): ((text: string) => string) => {
  const list = [...new Set(secrets)].filter((secret) => secret.length >= minimumSecretLength).sort((a, b) => b.length - a.length)
  if (list.length === 0) return (text) => text
  return (text) => {
    let result = text
    for (const secret of list) if (result.includes(secret)) result = result.split(secret).join(redactedMark)
    return result
  }
}

/** The same error with secrets scrubbed from its message, param and code. */
export const scrubError = (error: ProviderError, scrub: (text: string) => string): ProviderError => {
  const message = scrub(error.message)
  const param = error.param == null ? error.param : scrub(error.param)
  const code = error.code == null ? error.code : scrub(error.code)
  return message === error.message && param === error.param && code === error.code
    ? error
    : new ProviderError({ ...error, message, param, code })
}

const scrubbedSource = <A>(source: ChunkSource<A>, scrub: (text: string) => string): ChunkSource<A> => ({
  poll: () => {
    const take = source.poll()
    return take instanceof ProviderError ? scrubError(take, scrub) : take
  },
  onReady: source.onReady,
  close: source.close,
  ...(source.release === undefined ? {} : { release: source.release })
})

/** A provider whose failures never carry one of the secrets. */
export const scrubbed = (provider: Provider, scrub: (text: string) => string): Provider => ({
  complete: (request, deadline) => Effect.mapError(provider.complete(request, deadline), (error) => scrubError(error, scrub)),
  embed: (request, deadline) => Effect.mapError(provider.embed(request, deadline), (error) => scrubError(error, scrub)),
  open: (request, deadline) =>
    Effect.map(
      Effect.mapError(provider.open(request, deadline), (error) => scrubError(error, scrub)),
      (source) => scrubbedSource(source, scrub)
    ),
  ...(provider.messages === undefined ? {} : { messages: scrubbedMessages(provider.messages, scrub) }),
  ...(provider.responses === undefined ? {} : { responses: scrubbedResponses(provider.responses, scrub) })
})

const scrubbedResponses = (native: ResponsesNative, scrub: (text: string) => string): ResponsesNative => ({
  create: (call, deadline) => Effect.mapError(native.create(call, deadline), (error) => scrubError(error, scrub)),
  open: (call, deadline) =>
    Effect.map(
      Effect.mapError(native.open(call, deadline), (error) => scrubError(error, scrub)),
      (source) => scrubbedSource(source, scrub)
    )
})

const scrubbedMessages = (native: MessagesNative, scrub: (text: string) => string): MessagesNative => ({
  create: (call, deadline) => Effect.mapError(native.create(call, deadline), (error) => scrubError(error, scrub)),
  countTokens: (call, deadline) => Effect.mapError(native.countTokens(call, deadline), (error) => scrubError(error, scrub)),
  open: (call, deadline) =>
    Effect.map(
      Effect.mapError(native.open(call, deadline), (error) => scrubError(error, scrub)),
      (source) => scrubbedSource(source, scrub)
    )
})

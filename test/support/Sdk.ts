/**
 * Helpers for the tests that drive the gateway with the official openai SDK.
 */
import { Effect } from "effect"
import type { ChatCompletionChunk } from "openai/resources/chat/completions"

/** Runs a promise, keeping whatever it rejects with as the typed failure. */
export const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, unknown> => Effect.tryPromise({ try: f, catch: (error) => error })

/** Reads an async iterable (an SDK stream) to its end. */
export const collect = async <T>(iterable: AsyncIterable<T>): Promise<Array<T>> => {
  const items: Array<T> = []
  for await (const item of iterable) items.push(item)
  return items
}

/** The text the content deltas of streamed chunks add up to. */
export const contentOf = (chunks: ReadonlyArray<ChatCompletionChunk>): string =>
  chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? "")).join("")

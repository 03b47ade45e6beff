/**
 * A chunk's JSON text, made once. The response cache records a stream's chunks as JSON as they pass (the entry's
 * text, and its size in bytes, are made of them); the SSE writers then frame the same text instead of serializing
 * each chunk a second time. Streams nobody records pay one WeakMap lookup per chunk.
 */
import type { ChatCompletionChunk } from "./Schemas.js"

const known = new WeakMap<ChatCompletionChunk, string>()

/** The chunk's JSON text, kept for the writer that frames it next. Throws what JSON.stringify throws. */
export const jsonOf = (chunk: ChatCompletionChunk): string => {
  let text = known.get(chunk)
  if (text === undefined) {
    text = JSON.stringify(chunk)
    known.set(chunk, text)
  }
  return text
}

/** The JSON text made for the chunk earlier, if any. */
export const knownJsonOf = (chunk: ChatCompletionChunk): string | undefined => known.get(chunk)

/**
 * What a Gemini stream says outside its SSE frames. Gemini can end a 200 stream with a bare JSON error object
 * appended after the last `data:` frame, not framed at all; an SSE decoder skips such lines as unknown fields, so
 * they are gathered here (bounded) and read when the stream ends.
 *
 * Pure apart from its own buffer: feed the stream's text in order, then ask `failure()`.
 */
import { ProviderError } from "../Provider.js"
import { malformed, parseBoundedJson } from "../Upstream/Transport.js"
import { errorFromBody, isErrorBody, provider } from "./Errors.js"

/** The most unframed text kept; an error body is far smaller. */
export const maxUnframedChars = 64 * 1024

/** SSE field names: a line naming one (or a comment, or a blank line) is framed. */
const fields: ReadonlySet<string> = new Set(["data", "event", "id", "retry"])

const isFramed = (line: string): boolean => {
  if (line.length === 0 || line.charCodeAt(0) === 58 /* : */) return true
  const colon = line.indexOf(":")
  return fields.has(colon === -1 ? line : line.slice(0, colon))
}

export interface UnframedText {
  /** Feeds the next piece of the stream's text. */
  readonly feed: (text: string) => void
  /**
   * At the end of the stream: the failure its unframed text stands for (Gemini's error, with its status and code),
   * a `MalformedResponse` for unframed text that is not an error, or `undefined` when every line was framed.
   */
  readonly failure: () => ProviderError | undefined
}

export const makeUnframedText = (limit: number = maxUnframedChars): UnframedText => {
  let partial = ""
  let collected = ""
  let overflowed = false

  const keep = (line: string) => {
    if (isFramed(line) || overflowed) return
    if (collected.length + line.length + 1 > limit) {
      overflowed = true
      return
    }
    collected += `${line}\n`
  }

  const feed = (text: string) => {
    let start = 0
    for (;;) {
      const lf = text.indexOf("\n", start)
      const cr = text.indexOf("\r", start)
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr)
      if (end === -1) break
      const piece = text.slice(start, end)
      keep(partial.length === 0 ? piece : partial + piece)
      partial = ""
      start = end + 1
    }
    const rest = text.slice(start)
    // A line longer than the bound is not an error body: keep only enough of it to know it was there.
    partial = partial.length + rest.length > limit ? (partial + rest).slice(0, limit + 1) : partial + rest
  }

  const failure = (): ProviderError | undefined => {
    if (partial.length > 0) {
      keep(partial)
      partial = ""
    }
    if (overflowed) return malformed(provider, `unframed text of more than ${limit} characters in its stream`)
    if (collected.trim().length === 0) return undefined
    const body = parseBoundedJson(collected)
    return body !== undefined && isErrorBody(body) ? errorFromBody(body, 500) : malformed(provider, "unframed text in its stream")
  }

  return { feed, failure }
}

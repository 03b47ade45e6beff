/**
 * Reading what the gateway streams: the `data:` payloads of an SSE body (checking its framing on the way), its
 * error frame, the content its chunks add up to. One place for what several suites used to parse by hand.
 */
import { expect } from "vitest"

/** OpenAI's error envelope. */
export interface ErrorEnvelope {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null }
}

/** The comment frame the gateway writes into a silent stream (SSE_KEEPALIVE_MS). */
export const keepaliveFrame = ": keepalive"

/**
 * The `data:` fields of a whole SSE body as sent, in order, checking the framing the gateway writes (and OpenAI's
 * recordings have): the body ends with a blank line, and every frame is exactly one `data: ` line (no events, ids or
 * multi-line data) or the keepalive comment, which is skipped.
 */
export const sseData = (text: string): ReadonlyArray<string> => {
  expect(text.endsWith("\n\n"), `an SSE body ends with a blank line: ${JSON.stringify(text.slice(-80))}`).toBe(true)
  return text
    .slice(0, -2)
    .split("\n\n")
    .filter((frame) => frame !== keepaliveFrame)
    .map((frame) => {
      expect(frame.startsWith("data: "), `not a data frame: ${frame}`).toBe(true)
      expect(frame.includes("\n"), `not a single line: ${frame}`).toBe(false)
      return frame.slice("data: ".length)
    })
}

/** The data payloads of a whole SSE body, in order: `[DONE]` as text, JSON otherwise (framing checked by `sseData`). */
export const ssePayloads = (text: string): ReadonlyArray<unknown> =>
  sseData(text).map((data) => (data === "[DONE]" ? data : (JSON.parse(data) as unknown)))

/** How many frames of a partly received SSE body are complete so far (to wait on a live stream's progress). */
export const completeFrames = (text: string): number => text.split("\n\n").length - 1

export const isErrorFrame = (payload: unknown): payload is ErrorEnvelope =>
  typeof payload === "object" && payload !== null && "error" in payload

/** The error of the stream's last frame, when it ended with one (and so without [DONE]). */
export const streamError = (text: string): ErrorEnvelope["error"] | undefined => {
  const last = ssePayloads(text).at(-1)
  return isErrorFrame(last) ? last.error : undefined
}

/** The content the chunks' deltas add up to, for one choice. */
export const streamedContent = (text: string, choice = 0): string =>
  ssePayloads(text)
    .flatMap((payload) =>
      typeof payload === "object" && payload !== null && "choices" in payload
        ? (payload as { readonly choices: ReadonlyArray<{ readonly index: number; readonly delta?: { readonly content?: string | null } }> }).choices
        : []
    )
    .filter((entry) => entry.index === choice)
    .map((entry) => entry.delta?.content ?? "")
    .join("")

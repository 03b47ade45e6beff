/**
 * Reading what the gateway streams: the `data:` payloads of an SSE body (checking its framing on the way), its
 * error frame, the content its chunks add up to. One place for what several suites used to parse by hand.
 */
import { expect } from "vitest"

/** OpenAI's error envelope. */
export interface ErrorEnvelope {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null }
}

/** The data payloads of an SSE body, in order: `[DONE]` as text, JSON otherwise. Comment lines are skipped. */
export const ssePayloads = (text: string): ReadonlyArray<unknown> =>
  text
    .split("\n\n")
    .map((frame) => frame.split("\n").filter((line) => !line.startsWith(":")).join("\n"))
    .filter((frame) => frame.trim() !== "")
    .map((frame) => {
      expect(frame.startsWith("data: ")).toBe(true)
      const data = frame.slice("data: ".length)
      return data === "[DONE]" ? data : (JSON.parse(data) as unknown)
    })

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

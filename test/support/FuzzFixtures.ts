/**
 * Recorded upstream wire data (test/fixtures), parsed once for the fuzz suites: the valid frames they mutate.
 */
import { readFileSync } from "node:fs"

const fixture = (path: string): string => readFileSync(new URL(`../fixtures/${path}`, import.meta.url), "utf8")

/** The `data:` payloads of an SSE body, `[DONE]` excluded, parsed. */
const payloadsOf = (body: string): ReadonlyArray<unknown> =>
  body
    .split(/\r?\n\r?\n/)
    .map((frame) => frame.trim())
    .filter((frame) => frame.startsWith("data:") && frame !== "data: [DONE]")
    .map((frame) => JSON.parse(frame.slice("data:".length)) as unknown)

/** One recorded SSE event: its name (when it had one) and its parsed data. */
export interface RecordedEvent {
  readonly event: string | undefined
  readonly data: unknown
}

const eventsOf = (body: string): ReadonlyArray<RecordedEvent> =>
  body
    .split(/\r?\n\r?\n/)
    .map((frame) => frame.trim())
    .filter((frame) => frame.length > 0)
    .map((frame) => {
      const lines = frame.split(/\r?\n/)
      const event = lines.find((line) => line.startsWith("event:"))?.slice("event:".length).trim()
      const data = lines
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice("data:".length).replace(/^ /, ""))
        .join("\n")
      return { event, data: JSON.parse(data) as unknown }
    })

/** The whole recorded OpenAI streams (raw text, `[DONE]` included). */
export const openAiStreamBodies: ReadonlyArray<string> = [
  fixture("openai/openai-node-snapshots/stream-works.txt"),
  fixture("openai/openai-node-snapshots/stream-content-logprobs.txt")
]

/** Every chunk of the recorded OpenAI streams. */
export const openAiChunks: ReadonlyArray<unknown> = openAiStreamBodies.flatMap(payloadsOf)

/** Recorded OpenAI completions: the snapshot file and openai-node's parser snapshots. */
export const openAiCompletions: ReadonlyArray<unknown> = (() => {
  const snapshots = fixture("openai/openai-node-jest-snapshots/parser.test.ts.snap")
  const entries = [...snapshots.matchAll(/^exports\[`(.+?)`\] = `\n"([\s\S]*?)"\n`;$/gm)].map(
    (match) => JSON.parse((match[2] ?? "").replace(/\\\\/g, "\\").replace(/\\`/g, "`")) as unknown
  )
  return [JSON.parse(fixture("openai/openai-node-snapshots/completion-response-format.json")) as unknown, ...entries]
})()

/** The recorded Anthropic Messages streams, as named events. */
export const anthropicStreams: ReadonlyArray<ReadonlyArray<RecordedEvent>> = [
  "basic_response.txt",
  "tool_use_response.txt",
  "incomplete_partial_json_response.txt"
].map((name) => eventsOf(fixture(`anthropic/${name}`)))

/** A Messages API response body (what a non-streamed call answers), as the Anthropic provider tests use. */
export const anthropicMessage: unknown = {
  id: "msg_01XFDUDYJgAACzvnptvVoYEL",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5",
  content: [
    { type: "text", text: "Bonjour !" },
    { type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } }
  ],
  stop_reason: "tool_use",
  stop_sequence: null,
  usage: { input_tokens: 12, output_tokens: 4, cache_read_input_tokens: 2, cache_creation_input_tokens: 0 }
}

/** The recorded Gemini streams, as parsed frames (js-genai recordings and vertexai-sdk test data). */
export const geminiStreams: ReadonlyArray<ReadonlyArray<unknown>> = [
  ...[
    "Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream",
    "Chats_Tests_sendMessage_Google_AI_with_text_stream"
  ].map((name) => {
    const recording = JSON.parse(fixture(`gemini/js-genai-recordings/${name}.json`)) as {
      readonly interactions: ReadonlyArray<{ readonly response: { readonly bodySegments: ReadonlyArray<unknown> } }>
    }
    return recording.interactions[0]?.response.bodySegments ?? []
  }),
  ...[
    "streaming-success-basic-reply-short.txt",
    "streaming-success-basic-reply-long.txt",
    "streaming-success-thinking-function-call-thought-summary-signature.txt",
    "streaming-success-code-execution.txt",
    "streaming-success-no-content-parts.txt"
  ].map((name) => payloadsOf(fixture(`gemini/vertexai-sdk-test-data/googleai/${name}`)))
]

/** Recorded unary Gemini answers. */
export const geminiResponses: ReadonlyArray<unknown> = [
  "unary-success-basic-reply-short.json",
  "unary-success-thinking-function-call-thought-summary-signature.json",
  "unary-success-thinking-reply-thought-summary.json"
].map((name) => JSON.parse(fixture(`gemini/vertexai-sdk-test-data/googleai/${name}`)) as unknown)

/**
 * Real upstream servers for end-to-end tests: small node:http servers on 127.0.0.1:0 that speak one provider's
 * wire format (OpenAI-compatible, Anthropic Messages, Gemini), answer from a programmable script, and record
 * every request they receive and when its connection closed.
 *
 * Start one with `startUpstream(dialect, script)` inside a Scope; closing the scope stops it.
 */
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { IncomingHttpHeaders, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { fromFile, holderOf, ModelRegistry } from "../../src/Router/Registry.js"
import { decodeRegistry } from "../../src/Router/RegistryFile.js"

export type Dialect = "openai" | "anthropic" | "gemini"

/** What the upstream does once the frames of a stream are written. */
export type StreamEnd = "end" | "destroy" | "stall"

/** One scripted answer. */
export type Reply =
  | {
      readonly _tag: "Body"
      readonly status: number
      readonly headers: Readonly<Record<string, string>>
      readonly body: string
      /** Wait this long before answering. */
      readonly delayMs: number
    }
  | {
      readonly _tag: "Sse"
      readonly status: number
      readonly headers: Readonly<Record<string, string>>
      /** Raw frames, written one by one (each with its own separator). */
      readonly frames: ReadonlyArray<string>
      /** Pause between two writes. */
      readonly gapMs: number
      /** `end`: finish the response; `destroy`: reset the socket; `stall`: keep it open, silent. */
      readonly then: StreamEnd
    }
  /** Reads the request and never answers. */
  | { readonly _tag: "Hang" }
  /** Anything else a misbehaving upstream does, written by hand on the raw response. */
  | { readonly _tag: "Raw"; readonly answer: (response: ServerResponse, call: UpstreamCall) => void }

/** One request the upstream received, and what became of its connection. */
export class UpstreamCall {
  /** `performance.now()` when the response's connection closed (for whatever reason). */
  closedAt: number | undefined = undefined
  /** The connection closed before the upstream finished (or reset) the response: the client went away. */
  closedByClient = false
  /** Resolves with `closedAt`. */
  readonly closed: Promise<number>
  private resolveClosed!: (at: number) => void

  constructor(
    readonly index: number,
    readonly method: string,
    /** Path with its query string, e.g. `/v1beta/models/m:streamGenerateContent?alt=sse`. */
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
    /** The parsed JSON body, or the raw text when it is not JSON. */
    readonly body: unknown,
    /** `performance.now()` when the whole request body had arrived. */
    readonly receivedAt: number
  ) {
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve
    })
  }

  /** @internal */
  markClosed(byClient: boolean): void {
    if (this.closedAt !== undefined) return
    this.closedAt = performance.now()
    this.closedByClient = byClient
    this.resolveClosed(this.closedAt)
  }

  /** The body as a JSON object (empty when it is not one). */
  get json(): Record<string, unknown> {
    return typeof this.body === "object" && this.body !== null && !Array.isArray(this.body)
      ? (this.body as Record<string, unknown>)
      : {}
  }

  /** The model asked for: from the body, or from a Gemini path. */
  get model(): string | undefined {
    const fromBody = this.json["model"]
    if (typeof fromBody === "string") return fromBody
    const match = /^\/v1beta\/models\/([^:/?]+):/.exec(this.path)
    return match === null ? undefined : decodeURIComponent(match[1]!)
  }

  /** Whether a stream was asked for (`stream: true`, or Gemini's `streamGenerateContent`). */
  get stream(): boolean {
    return this.json["stream"] === true || this.path.includes(":streamGenerateContent")
  }

  /** Every header value, flattened, for "this secret never reached the upstream" assertions. */
  get headerValues(): ReadonlyArray<string> {
    return Object.values(this.headers).flatMap((value) => (value === undefined ? [] : Array.isArray(value) ? value : [value]))
  }
}

/** A fixed list (call i gets entry i; the last entry repeats) or a function of the call. */
export type Script = ReadonlyArray<Reply> | ((call: UpstreamCall) => Reply)

export interface FakeUpstream {
  readonly dialect: Dialect
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** What a registry's `base_url` names: the origin plus `/v1` for OpenAI-compatible, the origin otherwise. */
  readonly baseUrl: string
  /** Every request received so far, in order (including ones to unknown routes). */
  readonly calls: ReadonlyArray<UpstreamCall>
  /** Replaces the script; the call index keeps counting. */
  readonly setScript: (script: Script) => void
  /** Waits until at least `count` requests have arrived. */
  readonly awaitCalls: (count: number) => Effect.Effect<ReadonlyArray<UpstreamCall>>
  /** TCP connections open to this upstream now (idle keep-alive ones included). */
  readonly openConnections: Effect.Effect<number>
  /** TCP connections accepted so far. */
  readonly acceptedConnections: () => number
}

const routes: Record<Dialect, RegExp> = {
  openai: /^\/v1\/(chat\/completions|embeddings|responses)$/,
  anthropic: /^\/v1\/messages(\/count_tokens)?$/,
  gemini: /^\/v1beta\/models\/[^:/?]+:(generateContent|streamGenerateContent\?alt=sse|batchEmbedContents)$/
}

const pick = (script: Script, call: UpstreamCall): Reply => {
  if (typeof script === "function") return script(call)
  const reply = script[Math.min(call.index, script.length - 1)]
  if (reply === undefined) throw new Error("empty upstream script")
  return reply
}

/** Starts a fake upstream of the given dialect in the current scope. */
export const startUpstream = (dialect: Dialect, initial: Script): Effect.Effect<FakeUpstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      let script = initial
      const calls: Array<UpstreamCall> = []
      const waiters = new Set<() => void>()
      const timers = new Set<NodeJS.Timeout>()
      const later = (ms: number, f: () => void) => {
        const timer = setTimeout(() => {
          timers.delete(timer)
          f()
        }, ms)
        timers.add(timer)
      }

      const send = (res: ServerResponse, reply: Reply, call?: UpstreamCall): void => {
        switch (reply._tag) {
          case "Hang":
            return
          case "Raw":
            if (call !== undefined) reply.answer(res, call)
            return
          case "Body": {
            const write = () => {
              if (res.destroyed) return
              res.writeHead(reply.status, reply.headers)
              res.end(reply.body)
            }
            return reply.delayMs > 0 ? later(reply.delayMs, write) : write()
          }
          case "Sse": {
            res.writeHead(reply.status, { "content-type": "text/event-stream", "cache-control": "no-cache", ...reply.headers })
            res.flushHeaders()
            const next = (i: number) => {
              if (res.destroyed) return
              if (i < reply.frames.length) {
                res.write(reply.frames[i])
                return i + 1 < reply.frames.length || reply.then !== "stall" ? later(reply.gapMs, () => next(i + 1)) : undefined
              }
              if (reply.then === "end") res.end()
              else if (reply.then === "destroy") {
                destroyedByServer.add(res)
                res.destroy()
              }
            }
            return next(0)
          }
        }
      }

      const destroyedByServer = new WeakSet<ServerResponse>()
      const server = createServer((req, res) => {
        const parts: Array<Buffer> = []
        req.on("data", (part: Buffer) => parts.push(part))
        req.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8")
          let body: unknown = text
          try {
            body = text === "" ? undefined : (JSON.parse(text) as unknown)
          } catch {
            // keep the raw text
          }
          const call = new UpstreamCall(calls.length, req.method ?? "", req.url ?? "", req.headers, body, performance.now())
          calls.push(call)
          res.on("close", () => call.markClosed(!res.writableFinished && !destroyedByServer.has(res)))
          for (const wake of waiters) wake()
          if (req.method !== "POST" || !routes[dialect].test(call.path)) {
            return send(res, notFound(dialect, `${req.method} ${call.path}`))
          }
          send(res, pick(script, call), call)
        })
      })
      let accepted = 0
      let open = 0
      server.on("connection", (socket) => {
        accepted++
        open++
        socket.once("close", () => open--)
      })
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const upstream: FakeUpstream = {
        dialect,
        origin,
        baseUrl: dialect === "openai" ? `${origin}/v1` : origin,
        calls,
        setScript: (next) => {
          script = next
        },
        awaitCalls: (count) =>
          Effect.async<ReadonlyArray<UpstreamCall>>((resume) => {
            const check = () => {
              if (calls.length < count) return
              waiters.delete(check)
              resume(Effect.succeed(calls))
            }
            waiters.add(check)
            check()
            return Effect.sync(() => waiters.delete(check))
          }),
        openConnections: Effect.sync(() => open),
        acceptedConnections: () => accepted
      }
      return { server, timers, upstream }
    }),
    ({ server, timers }) =>
      Effect.promise(() => {
        for (const timer of timers) clearTimeout(timer)
        server.closeAllConnections()
        return new Promise<void>((resolve) => server.close(() => resolve()))
      })
  ).pipe(Effect.map(({ upstream }) => upstream))

// ---------------------------------------------------------------------------------------------------------------
// Registries naming fake upstreams
// ---------------------------------------------------------------------------------------------------------------

/** A registry `models:` entry for a deployment served by `upstream` (no key unless `api_key_env` is given). */
export const deploymentOf = (
  name: string,
  upstream: FakeUpstream,
  extra: { readonly model?: string; readonly fallbacks?: ReadonlyArray<string>; readonly weight?: number; readonly api_key_env?: string; readonly api?: "chat" | "responses" } = {}
): Record<string, unknown> => ({ name, provider: upstream.dialect, model: extra.model ?? `${name}-upstream`, base_url: upstream.baseUrl, ...extra })

/**
 * A registry built exactly as CONFIG_FILE's contents are (`decodeRegistry` then `fromFile`), from the parsed
 * document `raw`. An invalid document is a defect: the test is wrong.
 */
export const registryFromDocument = (raw: unknown, limits: Partial<Transport.TransportLimits> = {}): Layer.Layer<ModelRegistry> =>
  Layer.effect(
    ModelRegistry,
    Effect.gen(function* () {
      const file = yield* decodeRegistry(raw, "test registry")
      return holderOf(yield* fromFile(file, 0))
    })
  ).pipe(Layer.provide(Transport.layer(limits)), Layer.orDie)

// ---------------------------------------------------------------------------------------------------------------
// Generic replies
// ---------------------------------------------------------------------------------------------------------------

export interface BodyOptions {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string>>
  readonly delayMs?: number
}

export const json = (body: unknown, options: BodyOptions = {}): Reply => ({
  _tag: "Body",
  status: options.status ?? 200,
  headers: { "content-type": "application/json", ...options.headers },
  body: JSON.stringify(body),
  delayMs: options.delayMs ?? 0
})

export const text = (status: number, body: string, contentType: string, headers: Readonly<Record<string, string>> = {}): Reply => ({
  _tag: "Body",
  status,
  headers: { "content-type": contentType, ...headers },
  body,
  delayMs: 0
})

export interface SseOptions {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string>>
  readonly gapMs?: number
  readonly then?: StreamEnd
}

export const sse = (frames: ReadonlyArray<string>, options: SseOptions = {}): Reply => ({
  _tag: "Sse",
  status: options.status ?? 200,
  headers: options.headers ?? {},
  frames,
  gapMs: options.gapMs ?? 1,
  then: options.then ?? "end"
})

/** An answer written by hand on the raw response. */
export const raw = (answer: (response: ServerResponse, call: UpstreamCall) => void): Reply => ({ _tag: "Raw", answer })

/** Never answers (a slow non-streamed upstream). */
export const hang: Reply = { _tag: "Hang" }

/** The page a load balancer sends when the server behind it is down. */
export const htmlBadGatewayPage =
  "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

export const htmlBadGateway: Reply = text(502, htmlBadGatewayPage, "text/html")

/** The first `count` frames, then the socket is reset. */
export const resetAfter = (frames: ReadonlyArray<string>, count: number): Reply =>
  sse(frames.slice(0, count), { then: "destroy", gapMs: 5 })

/** Headers and the first `count` frames, then silence with the connection open. */
export const stallAfter = (frames: ReadonlyArray<string>, count: number): Reply =>
  sse(frames.slice(0, count), { then: "stall" })

/** The given valid frames, then a `data:` line that is not JSON, then `[DONE]`. */
export const malformedSse = (validFrames: ReadonlyArray<string> = []): Reply =>
  sse([...validFrames, "data: {\"choices\": [ this is not json\n\n", "data: [DONE]\n\n"])

/** Splits a recorded SSE body into frames (each keeping its blank-line separator). */
export const splitFrames = (body: string): ReadonlyArray<string> => body.split(/(?<=\r\n\r\n|\n\n)(?!\r?\n)/).filter((frame) => frame.length > 0)

const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url))
const fixture = (path: string): string => readFileSync(`${fixtures}${path}`, "utf8")

const notFound = (dialect: Dialect, what: string): Reply => {
  switch (dialect) {
    case "openai":
      return OpenAi.error(404, `Unknown route ${what}`, { type: "invalid_request_error", code: "unknown_url" })
    case "anthropic":
      return Anthropic.error(404, "not_found_error", `Unknown route ${what}`)
    case "gemini":
      return Gemini.error(404, `Unknown route ${what}`, "NOT_FOUND")
  }
}

// ---------------------------------------------------------------------------------------------------------------
// OpenAI-compatible
// ---------------------------------------------------------------------------------------------------------------

export interface OpenAiToolCall {
  readonly id: string
  readonly name: string
  readonly arguments: string
}

export interface OpenAiUsage {
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly total_tokens: number
}

export interface OpenAiAnswer {
  readonly model?: string
  readonly content?: string
  readonly toolCalls?: ReadonlyArray<OpenAiToolCall>
  readonly finishReason?: string
  readonly usage?: OpenAiUsage
  /** Extra top-level fields (vendor extensions) added to the body. */
  readonly extra?: Readonly<Record<string, unknown>>
}

const dataFrame = (payload: unknown): string => `data: ${typeof payload === "string" ? payload : JSON.stringify(payload)}\n\n`

export const OpenAi = {
  completionBody: (answer: OpenAiAnswer = {}): Record<string, unknown> => {
    const toolCalls = answer.toolCalls ?? []
    return {
      id: "chatcmpl-fake-upstream",
      object: "chat.completion",
      created: 1_723_031_664,
      model: answer.model ?? "upstream-model",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: toolCalls.length > 0 ? null : (answer.content ?? "Hello from the fake upstream."),
            refusal: null,
            ...(toolCalls.length > 0
              ? { tool_calls: toolCalls.map((call) => ({ id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } })) }
              : {})
          },
          logprobs: null,
          finish_reason: answer.finishReason ?? (toolCalls.length > 0 ? "tool_calls" : "stop")
        }
      ],
      usage: answer.usage ?? { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 },
      ...answer.extra
    }
  },

  /** A `chat.completion` JSON body. */
  completion: (answer: OpenAiAnswer = {}, options: BodyOptions = {}): Reply => json(OpenAi.completionBody(answer), options),

  /** The frames of a text stream: role chunk, one chunk per token, finish chunk, usage chunk, `[DONE]`. */
  streamFrames: (tokens: ReadonlyArray<string>, answer: OpenAiAnswer = {}): ReadonlyArray<string> => {
    const base = { id: "chatcmpl-fake-upstream", object: "chat.completion.chunk", created: 1_723_031_664, model: answer.model ?? "upstream-model" }
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      dataFrame({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...answer.extra })
    return [
      chunk({ role: "assistant", content: "" }),
      ...tokens.map((token) => chunk({ content: token })),
      chunk({}, answer.finishReason ?? "stop"),
      dataFrame({ ...base, choices: [], usage: answer.usage ?? { prompt_tokens: 5, completion_tokens: tokens.length, total_tokens: 5 + tokens.length } }),
      "data: [DONE]\n\n"
    ]
  },

  stream: (tokens: ReadonlyArray<string>, answer: OpenAiAnswer = {}, options: SseOptions = {}): Reply =>
    sse(OpenAi.streamFrames(tokens, answer), options),

  /** OpenAI's error envelope. */
  error: (
    status: number,
    message: string,
    options: { readonly type?: string; readonly code?: string | null; readonly param?: string | null; readonly headers?: Readonly<Record<string, string>> } = {}
  ): Reply =>
    json(
      { error: { message, type: options.type ?? "invalid_request_error", param: options.param ?? null, code: options.code ?? null } },
      { status, headers: options.headers ?? {} }
    ),

  /** A body recorded from the real API (test/fixtures/openai/openai-node-snapshots). */
  recordedText: (name: "stream-works.txt" | "stream-content-logprobs.txt" | "completion-response-format.json"): string =>
    fixture(`openai/openai-node-snapshots/${name}`),

  recordedStreamFrames: (name: "stream-works.txt" | "stream-content-logprobs.txt"): ReadonlyArray<string> =>
    splitFrames(OpenAi.recordedText(name)),

  recordedStream: (name: "stream-works.txt" | "stream-content-logprobs.txt", options: SseOptions = {}): Reply =>
    sse(OpenAi.recordedStreamFrames(name), options),

  recordedCompletion: (): Reply => text(200, OpenAi.recordedText("completion-response-format.json"), "application/json"),

  /**
   * An embeddings answer: `vectors` in order (listed last to first, as the spec allows, to show that `index` is
   * read), each as floats or, with `base64`, as base64 of its little-endian float32 bytes.
   */
  embeddings: (
    vectors: ReadonlyArray<ReadonlyArray<number>>,
    options: { readonly base64?: boolean; readonly model?: string; readonly usage?: { readonly prompt_tokens: number; readonly total_tokens: number } | null } = {}
  ): Reply =>
    json({
      object: "list",
      data: vectors
        .map((vector, index) => ({
          object: "embedding",
          index,
          embedding: options.base64 === true ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector
        }))
        .reverse(),
      model: options.model ?? "upstream-embedding-model",
      ...(options.usage === null ? {} : { usage: options.usage ?? { prompt_tokens: 8, total_tokens: 8 } })
    })
} as const

// ---------------------------------------------------------------------------------------------------------------
// OpenAI's Responses API (a native `api: responses` upstream)

/**
 * A response object as OpenAI's Responses API answers, with `upstream_extra` (a field the gateway does not know,
 * which must reach the client as sent).
 */
const responseBody = (text: string, options: { readonly id?: string; readonly model?: string; readonly status?: string } = {}): Record<string, unknown> => ({
  id: options.id ?? "resp_upstream_0123456789",
  object: "response",
  created_at: 1_741_476_542,
  status: options.status ?? "completed",
  background: false,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model: options.model ?? "gpt-4.1-2025-04-14",
  output: [{ id: "msg_upstream_1", type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [], logprobs: [] }] }],
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  store: true,
  temperature: 1,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_p: 1,
  truncation: "disabled",
  usage: { input_tokens: 36, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 }, output_tokens: 87, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 123 },
  metadata: {},
  upstream_extra: { kept: true }
})

const eventFrame = (payload: Record<string, unknown>): string => `event: ${String(payload["type"])}\ndata: ${JSON.stringify(payload)}\n\n`

export const Responses = {
  body: responseBody,

  /** A non-streamed answer. */
  response: (text: string, options: { readonly id?: string; readonly model?: string } = {}): Reply => json(responseBody(text, options)),

  /** The events OpenAI streams for a text answer, one delta per token, each numbered. */
  streamFrames: (tokens: ReadonlyArray<string>, options: { readonly id?: string; readonly model?: string } = {}): ReadonlyArray<string> => {
    const final = responseBody(tokens.join(""), options)
    // In progress: no output and no usage yet.
    const shell: Record<string, unknown> = { ...final, status: "in_progress", output: [] }
    delete shell["usage"]
    const item = { id: "msg_upstream_1", type: "message", status: "in_progress", role: "assistant", content: [] }
    const where = { item_id: "msg_upstream_1", output_index: 0, content_index: 0 }
    const part = { type: "output_text", text: "", annotations: [], logprobs: [] }
    const events: Array<Record<string, unknown>> = [
      { type: "response.created", response: shell },
      { type: "response.in_progress", response: shell },
      { type: "response.output_item.added", output_index: 0, item },
      { type: "response.content_part.added", ...where, part },
      ...tokens.map((delta) => ({ type: "response.output_text.delta", ...where, delta, logprobs: [], obfuscation: "xyz" })),
      { type: "response.output_text.done", ...where, text: tokens.join(""), logprobs: [] },
      { type: "response.content_part.done", ...where, part: { ...part, text: tokens.join("") } },
      { type: "response.output_item.done", output_index: 0, item: (final["output"] as ReadonlyArray<unknown>)[0] },
      { type: "response.completed", response: final }
    ]
    return events.map((event, sequence_number) => eventFrame({ ...event, sequence_number }))
  },

  stream: (tokens: ReadonlyArray<string>, options: { readonly id?: string; readonly model?: string } = {}, sseOptions: SseOptions = {}): Reply =>
    sse(Responses.streamFrames(tokens, options), sseOptions)
} as const

// ---------------------------------------------------------------------------------------------------------------
// Anthropic Messages
// ---------------------------------------------------------------------------------------------------------------

export type AnthropicBlock =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "tool_use"; readonly id: string; readonly name: string; readonly input: unknown }

export const Anthropic = {
  messageBody: (
    content: ReadonlyArray<AnthropicBlock>,
    options: { readonly model?: string; readonly stopReason?: string; readonly usage?: { readonly input_tokens: number; readonly output_tokens: number } } = {}
  ): Record<string, unknown> => ({
    id: "msg_fake_upstream",
    type: "message",
    role: "assistant",
    model: options.model ?? "claude-upstream",
    content,
    stop_reason: options.stopReason ?? (content.some((block) => block.type === "tool_use") ? "tool_use" : "end_turn"),
    stop_sequence: null,
    usage: options.usage ?? { input_tokens: 10, output_tokens: 5 }
  }),

  /** A Messages API `message` JSON body. */
  message: (
    content: ReadonlyArray<AnthropicBlock>,
    options: { readonly model?: string; readonly stopReason?: string; readonly usage?: { readonly input_tokens: number; readonly output_tokens: number } } = {}
  ): Reply => json(Anthropic.messageBody(content, options)),

  /** Anthropic's error body: `{"type":"error","error":{"type":..,"message":..}}`. */
  error: (status: number, type: string, message: string, headers: Readonly<Record<string, string>> = {}): Reply =>
    json({ type: "error", error: { type, message } }, { status, headers }),

  /** The frames of a recorded event stream in test/fixtures/anthropic. */
  recordedStreamFrames: (name: "basic_response.txt" | "tool_use_response.txt" | "incomplete_partial_json_response.txt"): ReadonlyArray<string> =>
    splitFrames(fixture(`anthropic/${name}`)),

  recordedStream: (
    name: "basic_response.txt" | "tool_use_response.txt" | "incomplete_partial_json_response.txt",
    options: SseOptions = {}
  ): Reply => sse(Anthropic.recordedStreamFrames(name), options)
} as const

// ---------------------------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------------------------

/** A js-genai recording: request/response pairs for `:streamGenerateContent?alt=sse`. */
export interface GeminiRecording {
  readonly interactions: ReadonlyArray<{
    readonly request: { readonly url: string; readonly bodySegments: ReadonlyArray<unknown> }
    readonly response: {
      readonly statusCode: number
      readonly headers: Readonly<Record<string, string>>
      readonly bodySegments: ReadonlyArray<unknown>
    }
  }>
}

type GeminiRecordingName =
  | "Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream"
  | "Chats_Tests_sendMessage_Google_AI_with_text_stream"
  | "Chats_Tests_sendMessage_Send_message_stream_with_error"

type GoogleAiFile =
  | "unary-success-basic-reply-short.json"
  | "unary-success-thinking-function-call-thought-summary-signature.json"
  | "unary-success-thinking-reply-thought-summary.json"
  | "unary-failure-api-key.json"
  | "streaming-failure-prompt-blocked-safety.txt"
  | "streaming-success-basic-reply-short.txt"
  | "streaming-success-basic-reply-long.txt"
  | "streaming-success-thinking-function-call-thought-summary-signature.txt"

export const Gemini = {
  recording: (name: GeminiRecordingName): GeminiRecording =>
    JSON.parse(fixture(`gemini/js-genai-recordings/${name}.json`)) as GeminiRecording,

  /** A recording's response segments as CRLF-separated `data:` frames, as the real API sends them. */
  recordedStreamFrames: (name: GeminiRecordingName, interaction = 0): ReadonlyArray<string> => {
    const segments = Gemini.recording(name).interactions[interaction]?.response.bodySegments ?? []
    return segments.map((segment) => `data: ${JSON.stringify(segment)}\r\n\r\n`)
  },

  recordedStream: (name: GeminiRecordingName, interaction = 0, options: SseOptions = {}): Reply =>
    sse(Gemini.recordedStreamFrames(name, interaction), options),

  /** A raw recorded body from vertexai-sdk-test-data (`.txt` streams keep their CRLFs). */
  googleAiText: (name: GoogleAiFile): string => fixture(`gemini/vertexai-sdk-test-data/googleai/${name}`),

  googleAiStream: (name: GoogleAiFile, options: SseOptions = {}): Reply => sse(splitFrames(Gemini.googleAiText(name)), options),

  googleAiUnary: (name: GoogleAiFile, status = 200): Reply => text(status, Gemini.googleAiText(name), "application/json; charset=UTF-8"),

  /** A `batchEmbedContents` answer: `{"embeddings":[{"values":[...]}]}`. */
  embeddings: (vectors: ReadonlyArray<ReadonlyArray<number>>): Reply => json({ embeddings: vectors.map((values) => ({ values })) }),

  /** Gemini's error body: `{"error":{"code","message","status"}}`. */
  error: (status: number, message: string, statusText: string, headers: Readonly<Record<string, string>> = {}): Reply =>
    json({ error: { code: status, message, status: statusText } }, { status, headers })
} as const

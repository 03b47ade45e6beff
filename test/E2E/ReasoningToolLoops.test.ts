/**
 * Multi-step tool use with reasoning models, end to end: the openai SDK's `runTools` and the AI SDK's multi-step
 * loop, each rebuilding the conversation itself between turns, against a fake Gemini that issues a thought
 * signature with its function call and REFUSES turn two without it (as Gemini 3 does), and a fake Anthropic that
 * issues a signed thinking block before its tool call and REFUSES turn two unless that block comes back, unchanged
 * and before the tool_use (as Anthropic does with extended thinking). Turn one replays recorded answers.
 */
import { createOpenAICompatible } from "@ai-sdk/openai-compatible"
import { describe, expect, it } from "@effect/vitest"
import { generateText, stepCountIs, streamText, tool } from "ai"
import { Effect } from "effect"
import type { Scope } from "effect"
import { readFileSync } from "node:fs"
import OpenAI from "openai"
import type { RunnableFunctionWithParse } from "openai/lib/RunnableFunction"
import { z } from "zod"
import { startGateway, testKey } from "../support/Gateway.js"
import { Gemini, json, registryFromDocument, sse, startUpstream, text } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply, UpstreamCall } from "../support/FakeUpstreams.js"
import { attempt } from "../support/Sdk.js"

// --- Gemini: turn one is a recorded thinking + function call with its thoughtSignature -----------------------------

interface GeminiPart {
  readonly text?: string
  readonly thought?: boolean
  readonly functionCall?: { readonly name: string }
  readonly functionResponse?: { readonly name: string; readonly response: unknown }
  readonly thoughtSignature?: string
}
interface GeminiContent {
  readonly role: string
  readonly parts: ReadonlyArray<GeminiPart>
}

const unaryRecording = "unary-success-thinking-function-call-thought-summary-signature.json" as const
const streamRecording = "streaming-success-thinking-function-call-thought-summary-signature.txt" as const
const signatureIn = (recorded: string): string => {
  const match = /"thoughtSignature": "([^"]+)"/.exec(recorded)
  if (match?.[1] === undefined) throw new Error("no signature in the recording")
  return match[1]
}
const unarySignature = signatureIn(Gemini.googleAiText(unaryRecording))
const streamSignature = signatureIn(Gemini.googleAiText(streamRecording))

const geminiAnswer = "There are 156 days until New Year's Eve."

/** What Gemini 3 answers when a function call of the current turn comes back without its signature. */
const missingSignature = (name: string): Reply =>
  Gemini.error(
    400,
    `Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call \`default_api:${name}\` , position 2. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.`,
    "INVALID_ARGUMENT"
  )

/** A fake Gemini 3: thinks and calls `now` with a signature, then wants that signature back with the call. */
const geminiScript = (call: UpstreamCall): Reply => {
  const contents = (call.json["contents"] ?? []) as ReadonlyArray<GeminiContent>
  const declarations = ((call.json["tools"] ?? []) as ReadonlyArray<{ functionDeclarations: ReadonlyArray<Record<string, unknown>> }>).flatMap(
    (entry) => entry.functionDeclarations
  )
  // Gemini's `parameters` is an OpenAPI subset that refuses JSON Schema's keywords; parametersJsonSchema takes them.
  const refused = declarations.find((declaration) => JSON.stringify(declaration["parameters"] ?? {}).match(/"(\$schema|additionalProperties)"/))
  if (refused !== undefined) {
    return Gemini.error(400, `Invalid JSON payload received. Unknown name "additionalProperties" at 'tools[0].function_declarations[0].parameters'`, "INVALID_ARGUMENT")
  }
  if (declarations.length === 0 || declarations.some((declaration) => declaration["parametersJsonSchema"] === undefined)) {
    return Gemini.error(400, "the test expects its tool's JSON Schema in parametersJsonSchema", "INVALID_ARGUMENT")
  }
  const answered = contents.some((content) => content.parts.some((part) => part.functionResponse !== undefined))
  if (!answered) return call.stream ? Gemini.googleAiStream(streamRecording) : Gemini.googleAiUnary(unaryRecording)
  const issued = call.stream ? streamSignature : unarySignature
  for (const content of contents.filter((entry) => entry.role === "model")) {
    for (const part of content.parts) {
      if (part.functionCall !== undefined && part.thoughtSignature !== issued) return missingSignature(part.functionCall.name)
    }
  }
  const body = {
    candidates: [{ content: { parts: [{ text: geminiAnswer }], role: "model" }, finishReason: "STOP", index: 0 }],
    usageMetadata: { promptTokenCount: 60, candidatesTokenCount: 11, totalTokenCount: 71 }
  }
  return call.stream ? sse([`data: ${JSON.stringify(body)}\r\n\r\n`]) : json(body)
}

// --- Anthropic: turn one is a recorded signed thinking block and a tool_use -----------------------------------------

interface AnthropicBlock {
  readonly type: string
  readonly id?: string
  readonly name?: string
  readonly input?: unknown
  readonly thinking?: string
  readonly signature?: string
  readonly tool_use_id?: string
}
interface AnthropicMessage {
  readonly role: string
  readonly content: ReadonlyArray<AnthropicBlock>
}

const recordedMessageText = readFileSync(
  new URL("../fixtures/anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json", import.meta.url),
  "utf8"
)
const recordedMessage = JSON.parse(recordedMessageText) as { readonly content: ReadonlyArray<AnthropicBlock> }
const recordedThinking = recordedMessage.content[0]!
const recordedToolUse = recordedMessage.content[1]!

const anthropicAnswer = "The sandbox has no errors."

/** The recorded message as the event stream Anthropic sends for it. */
const recordedAsStream = (): Reply => {
  const frame = (name: string, data: Record<string, unknown>) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`
  return sse([
    frame("message_start", {
      message: { id: "msg_011CfWBu94HWxZXjXK6ZhEXM", type: "message", role: "assistant", model: "claude-sonnet-4-6", content: [], usage: { input_tokens: 599, output_tokens: 1 } }
    }),
    frame("content_block_start", { index: 0, content_block: { type: "thinking", thinking: "", signature: "" } }),
    frame("content_block_delta", { index: 0, delta: { type: "thinking_delta", thinking: recordedThinking.thinking } }),
    frame("content_block_delta", { index: 0, delta: { type: "signature_delta", signature: recordedThinking.signature } }),
    frame("content_block_stop", { index: 0 }),
    frame("content_block_start", { index: 1, content_block: { type: "tool_use", id: recordedToolUse.id, name: recordedToolUse.name, input: {} } }),
    frame("content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: "{}" } }),
    frame("content_block_stop", { index: 1 }),
    frame("message_delta", { delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 59 } }),
    frame("message_stop", {})
  ])
}

const anthropicRefusal = (message: string): Reply =>
  json({ type: "error", error: { type: "invalid_request_error", message } }, { status: 400 })

/** A fake Claude with extended thinking: thinks, calls the tool, then wants the signed thinking back before it. */
const anthropicScript = (call: UpstreamCall): Reply => {
  const messages = (call.json["messages"] ?? []) as ReadonlyArray<AnthropicMessage>
  const thinking = call.json["thinking"] as { type?: string; budget_tokens?: number } | undefined
  if (thinking?.type !== "enabled" || typeof thinking.budget_tokens !== "number" || (call.json["max_tokens"] as number) <= thinking.budget_tokens) {
    return anthropicRefusal("the test expects thinking enabled, with max_tokens above budget_tokens")
  }
  const answered = messages.some((message) => message.content.some((block) => block.type === "tool_result"))
  if (!answered) return call.stream ? recordedAsStream() : text(200, recordedMessageText, "application/json")
  const assistant = messages.filter((message) => message.role === "assistant").at(-1)
  const [first, second] = assistant?.content ?? []
  if (
    first?.type !== "thinking" ||
    first.thinking !== recordedThinking.thinking ||
    first.signature !== recordedThinking.signature ||
    Object.keys(first).length !== 3
  ) {
    return anthropicRefusal(
      "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
    )
  }
  const result = messages.at(-1)?.content.find((block) => block.type === "tool_result")
  if (second?.type !== "tool_use" || second.id !== recordedToolUse.id || result?.tool_use_id !== recordedToolUse.id) {
    return anthropicRefusal("tool_use ids were found without tool_result blocks immediately after")
  }
  const answer = {
    id: "msg_turn_two",
    type: "message",
    role: "assistant",
    model: "claude-sonnet-4-6",
    content: [{ type: "text", text: anthropicAnswer }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: { input_tokens: 700, output_tokens: 8 }
  }
  if (!call.stream) return json(answer)
  const frame = (name: string, data: Record<string, unknown>) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`
  return sse([
    frame("message_start", { message: { ...answer, content: [], stop_reason: null, usage: { input_tokens: 700, output_tokens: 1 } } }),
    frame("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
    frame("content_block_delta", { index: 0, delta: { type: "text_delta", text: anthropicAnswer } }),
    frame("content_block_stop", { index: 0 }),
    frame("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 8 } }),
    frame("message_stop", {})
  ])
}

// --- the gateway in front of both -------------------------------------------------------------------------------

interface Setup {
  readonly baseUrl: string
  readonly gemini: FakeUpstream
  readonly anthropic: FakeUpstream
}

const setup: Effect.Effect<Setup, never, Scope.Scope> = Effect.gen(function* () {
  const gemini = yield* startUpstream("gemini", geminiScript)
  const anthropic = yield* startUpstream("anthropic", anthropicScript)
  const registry = registryFromDocument({
    models: [
      { name: "gemini-3", provider: "gemini", model: "gemini-3-pro-preview", base_url: gemini.baseUrl },
      { name: "claude", provider: "anthropic", model: "claude-sonnet-4-6", base_url: anthropic.baseUrl }
    ],
    settings: { retry: { max_retries: 0 } }
  })
  const gateway = yield* startGateway({ registry, settings: { shutdownGraceMs: 100 } })
  return { baseUrl: gateway.baseUrl, gemini, anthropic }
})

const scenarios = [
  {
    model: "gemini-3",
    upstream: (s: Setup) => s.gemini,
    tool: "now",
    description: "The current date and time",
    question: "How many days until New Year's Eve?",
    result: { now: "2025-07-28T10:00:00Z" },
    answer: geminiAnswer
  },
  {
    model: "claude",
    upstream: (s: Setup) => s.anthropic,
    tool: "checkSandboxErrors",
    description: "Lists the errors in the sandbox",
    question: "Check the sandbox for errors, now.",
    result: { errors: [] },
    answer: anthropicAnswer
  }
] as const

/** The turn-two request each upstream received, for the assertions on what came back. */
const expectTwoTurns = (upstream: FakeUpstream, stream: boolean) => {
  expect(upstream.calls.map((call) => call.stream)).toStrictEqual([stream, stream])
  const second = JSON.stringify(upstream.calls[1]?.body)
  // The carriage never reaches an upstream: ids go back as the upstream issued them.
  expect(second).not.toMatch(/\.lp1[ga]\./)
}

describe("multi-step tool use with reasoning models through the gateway", () => {
  for (const scenario of scenarios) {
    for (const stream of [false, true]) {
      it.scopedLive(`the openai SDK's runTools completes two turns against ${scenario.model}${stream ? ", streaming" : ""}`, () =>
        Effect.gen(function* () {
          const s = yield* setup
          const client = new OpenAI({ baseURL: `${s.baseUrl}/v1`, apiKey: testKey, maxRetries: 0, timeout: 10_000 })
          const calls: Array<unknown> = []
          const runnable: RunnableFunctionWithParse<object> = {
            name: scenario.tool,
            description: scenario.description,
            parameters: { type: "object", properties: {}, additionalProperties: false },
            parse: (input: string) => JSON.parse(input) as object,
            function: (args: object) => {
              calls.push(args)
              return scenario.result
            }
          }
          const base = {
            model: scenario.model,
            messages: [{ role: "user" as const, content: scenario.question }],
            reasoning_effort: "low" as const,
            tools: [{ type: "function" as const, function: runnable }]
          }
          const final = yield* attempt(() =>
            stream ? client.chat.completions.runTools({ ...base, stream: true }).finalContent() : client.chat.completions.runTools(base).finalContent()
          )
          expect(final).toBe(scenario.answer)
          expect(calls).toStrictEqual([{}])
          expectTwoTurns(scenario.upstream(s), stream)
        }))

      it.scopedLive(`the AI SDK's multi-step loop completes two turns against ${scenario.model}${stream ? " with streamText" : " with generateText"}`, () =>
        Effect.gen(function* () {
          const s = yield* setup
          const provider = createOpenAICompatible({ name: "llmproxy", baseURL: `${s.baseUrl}/v1`, apiKey: testKey, includeUsage: true })
          const executed: Array<unknown> = []
          const tools = {
            [scenario.tool]: tool({
              description: scenario.description,
              inputSchema: z.object({}),
              execute: (input: Record<string, never>) => {
                executed.push(input)
                return Promise.resolve(scenario.result)
              }
            })
          }
          const options = {
            model: provider.chatModel(scenario.model),
            prompt: scenario.question,
            tools,
            stopWhen: stepCountIs(4),
            maxRetries: 0,
            providerOptions: { llmproxy: { reasoningEffort: "low" } }
          }
          const outcome = yield* attempt(async () => {
            if (!stream) {
              const result = await generateText(options)
              return { text: result.text, steps: result.steps.length, reasoning: result.steps[0]?.reasoningText }
            }
            const result = streamText({ ...options, onError: () => undefined })
            return { text: await result.text, steps: (await result.steps).length, reasoning: (await result.steps)[0]?.reasoningText }
          })
          expect(outcome.text).toBe(scenario.answer)
          expect(outcome.steps).toBe(2)
          expect(outcome.reasoning?.length ?? 0).toBeGreaterThan(0)
          expect(executed).toStrictEqual([{}])
          expectTwoTurns(scenario.upstream(s), stream)
        }))
    }
  }

  it.scopedLive("the fakes do refuse turn two without the signature and the signed block (what the gateway must prevent)", () =>
    Effect.gen(function* () {
      const s = yield* setup
      const client = new OpenAI({ baseURL: `${s.baseUrl}/v1`, apiKey: testKey, maxRetries: 0, timeout: 10_000 })
      const withoutCarriage = (model: string, name: string, id: string) =>
        attempt(() =>
          client.chat.completions.create({
            model,
            reasoning_effort: "low",
            tools: [{ type: "function", function: { name, parameters: { type: "object", properties: {} } } }],
            messages: [
              { role: "user", content: "go" },
              { role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name, arguments: "{}" } }] },
              { role: "tool", tool_call_id: id, content: "{}" }
            ]
          })
        ).pipe(Effect.flip)
      expect(yield* withoutCarriage("gemini-3", "now", "call_plain")).toMatchObject({
        status: 400,
        code: "INVALID_ARGUMENT",
        message: expect.stringContaining("missing a thought_signature")
      })
      expect(yield* withoutCarriage("claude", recordedToolUse.name!, recordedToolUse.id!)).toMatchObject({
        status: 400,
        code: "invalid_request_error",
        message: expect.stringContaining("must start with a thinking block")
      })
    }))
})

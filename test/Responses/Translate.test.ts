/**
 * The pure parts of the Responses dialect: a Responses request as a chat request (instructions, history, items,
 * function calls and their outputs, images and files, text.format, reasoning.effort, max_output_tokens), a chat
 * completion as a response object (items, usage, incomplete), and chat chunks as Responses events — a fixed case
 * checked event by event, and a property: any chunk sequence gives a well-formed event sequence.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import fc from "fast-check"
import type { ChatCompletion, ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/ProviderError.js"
import { fromItems } from "../../src/Providers/ChunkSource.js"
import { makeResponsesTranslator, translatedResponsesSource } from "../../src/Responses/StreamTranslate.js"
import { toChatRequest, toResponse } from "../../src/Responses/Translate.js"
import type { ResponseContext } from "../../src/Responses/Translate.js"
import { ResponsesRequest } from "../../src/Responses/Wire.js"
import type { ResponsesEvent } from "../../src/Responses/Wire.js"
import { runsOf } from "../support/FuzzSpec.js"
import { expectResponseConforms, expectResponseEventConforms } from "../support/ResponsesSpec.js"

const decode = Schema.decodeUnknownSync(ResponsesRequest)

/** Deterministic item ids: `msg_1`, `fc_2`… */
const countingIds = () => {
  let next = 0
  return (prefix: string) => `${prefix}_${++next}`
}

const contextOf = (request: ResponsesRequest): ResponseContext => ({ id: "resp_test", model: "public", createdAt: 1_700_000_000, request, ids: countingIds() })

describe("Responses request → chat request", () => {
  it("maps instructions, history, every item kind, tools, text.format, reasoning.effort and the sampling fields", () => {
    const request = decode({
      model: "public",
      instructions: "Be brief.",
      input: [
        { role: "user", content: [{ type: "input_text", text: "Look" }, { type: "input_image", image_url: "data:image/png;base64,AAAA", detail: "low" }, { type: "input_file", file_data: "data:application/pdf;base64,JVBE", filename: "a.pdf" }] },
        { type: "reasoning", id: "rs_1", summary: [], content: [{ type: "reasoning_text", text: "thinking" }] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "Calling.", annotations: [] }] },
        { type: "function_call", call_id: "call_1", name: "f", arguments: "{\"x\":1}" },
        { type: "function_call", call_id: "call_2", name: "g", arguments: "{}" },
        { type: "function_call_output", call_id: "call_1", output: "one" },
        { type: "function_call_output", call_id: "call_2", output: [{ type: "input_text", text: "two" }] },
        { role: "developer", content: "dev note" }
      ],
      tools: [{ type: "function", name: "f", description: "F", parameters: { type: "object" }, strict: true }, { type: "function", name: "g", parameters: null }],
      tool_choice: { type: "function", name: "f" },
      parallel_tool_calls: false,
      text: { format: { type: "json_schema", name: "out", schema: { type: "object" }, strict: true } },
      reasoning: { effort: "low" },
      max_output_tokens: 77,
      temperature: 0.3,
      top_p: 0.9,
      user: "u1",
      stream: true
    })
    const history = [{ role: "user", content: "earlier" }, { type: "message", role: "assistant", id: "msg_0", status: "completed", content: [{ type: "output_text", text: "before", annotations: [] }] }]
    const chat = Either.getOrThrow(toChatRequest(request, history, "upstream-model"))
    expect(chat).toEqual({
      model: "upstream-model",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "earlier" },
        { role: "assistant", content: "before" },
        {
          role: "user",
          content: [
            { type: "text", text: "Look" },
            { type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } },
            { type: "file", file: { file_data: "data:application/pdf;base64,JVBE", filename: "a.pdf" } }
          ]
        },
        {
          role: "assistant",
          content: "Calling.",
          reasoning_content: "thinking",
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "f", arguments: "{\"x\":1}" } },
            { id: "call_2", type: "function", function: { name: "g", arguments: "{}" } }
          ]
        },
        { role: "tool", tool_call_id: "call_1", content: "one" },
        { role: "tool", tool_call_id: "call_2", content: "two" },
        { role: "developer", content: "dev note" }
      ],
      max_completion_tokens: 77,
      temperature: 0.3,
      top_p: 0.9,
      user: "u1",
      tools: [
        { type: "function", function: { name: "f", description: "F", parameters: { type: "object" }, strict: true } },
        { type: "function", function: { name: "g" } }
      ],
      tool_choice: { type: "function", function: { name: "f" } },
      parallel_tool_calls: false,
      response_format: { type: "json_schema", json_schema: { name: "out", schema: { type: "object" }, strict: true } },
      reasoning_effort: "low",
      stream: true
    })
  })

  it("a string input is one user message; json_object and text formats", () => {
    const chat = Either.getOrThrow(toChatRequest(decode({ model: "m", input: "hi", text: { format: { type: "json_object" } } }), [], "u"))
    expect(chat.messages).toEqual([{ role: "user", content: "hi" }])
    expect(chat.response_format).toEqual({ type: "json_object" })
    expect(Either.getOrThrow(toChatRequest(decode({ model: "m", input: "hi", text: { format: { type: "text" } } }), [], "u")).response_format).toBeUndefined()
  })

  it("refuses what chat completions cannot carry, naming the item", () => {
    const refused = (input: unknown) => Either.getLeft(toChatRequest(decode({ model: "m", input }), [], "u")).pipe((option) => (option._tag === "Some" ? option.value : undefined))
    expect(refused([{ type: "item_reference", id: "x" }])?.param).toBe("input[0].type")
    expect(refused([{ role: "user", content: [{ type: "input_image", file_id: "file_1" }] }])?.param).toBe("input[0].content[0].image_url")
    expect(refused([{ role: "user", content: [{ type: "input_file", file_id: "file_1" }] }])?.param).toBe("input[0].content[0].file_data")
    expect(refused([])?.param).toBe("input")
    expect(refused([{ role: "user", content: "x" }])).toBeUndefined()
  })
})

const completion = (message: Record<string, unknown>, finish: string, usage?: Record<string, unknown>): ChatCompletion =>
  ({
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model: "upstream",
    choices: [{ index: 0, message: { role: "assistant", content: null, ...message }, finish_reason: finish, logprobs: null }],
    ...(usage === undefined ? {} : { usage })
  }) as unknown as ChatCompletion

describe("chat completion → response object", () => {
  it("reasoning, message and function call items; usage with details; request settings echoed", () => {
    const request = decode({ model: "public", input: "x", instructions: "I", metadata: { a: "b" }, tools: [{ type: "function", name: "f", parameters: { type: "object" } }] })
    const response = toResponse(
      completion(
        { content: "Hello", reasoning_content: "mulling", tool_calls: [{ id: "call_9", type: "function", function: { name: "f", arguments: "{}" } }] },
        "tool_calls",
        { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14, prompt_tokens_details: { cached_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 1 } }
      ),
      contextOf(request)
    )
    expectResponseConforms(response)
    expect(response).toMatchObject({
      id: "resp_test",
      object: "response",
      created_at: 1_700_000_000,
      status: "completed",
      model: "public",
      instructions: "I",
      metadata: { a: "b" },
      incomplete_details: null,
      error: null,
      output: [
        { id: "rs_1", type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "mulling" }] },
        { id: "msg_2", type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Hello", annotations: [] }] },
        { id: "fc_3", type: "function_call", call_id: "call_9", name: "f", arguments: "{}", status: "completed" }
      ],
      usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 2, cache_write_tokens: 0 }, output_tokens: 4, output_tokens_details: { reasoning_tokens: 1 }, total_tokens: 14 },
      tools: [{ type: "function", name: "f", parameters: { type: "object" }, strict: null, description: null }]
    })
  })

  it("a length finish is incomplete for max_output_tokens; content_filter likewise", () => {
    const request = decode({ model: "public", input: "x", max_output_tokens: 5 })
    const cut = toResponse(completion({ content: "Hel" }, "length"), contextOf(request))
    expectResponseConforms(cut)
    expect(cut["status"]).toBe("incomplete")
    expect(cut["incomplete_details"]).toEqual({ reason: "max_output_tokens" })
    expect((cut["output"] as Array<Record<string, unknown>>)[0]!["status"]).toBe("incomplete")
    expect(toResponse(completion({ content: "" }, "content_filter"), contextOf(request))["incomplete_details"]).toEqual({ reason: "content_filter" })
  })
})

const base = { id: "c", object: "chat.completion.chunk" as const, created: 1, model: "m" }
const chunkOf = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk =>
  ({ ...base, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] }) as ChatCompletionChunk

const parsed = (events: ReadonlyArray<{ readonly data: string }>) => events.map((event) => JSON.parse(event.data) as Record<string, unknown>)

describe("chat chunks → Responses events", () => {
  it("reasoning, text and a tool call: every event in order, numbered from 0, items added and done", () => {
    const translator = makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })))
    const steps = [
      translator.step([chunkOf({ reasoning_content: "hm" }), chunkOf({ content: "He" }), chunkOf({ content: "llo" })]),
      translator.step([chunkOf({ tool_calls: [{ index: 0, id: "call_1", function: { name: "f", arguments: "{\"a\"" } }] }), chunkOf({ tool_calls: [{ index: 0, function: { arguments: ":1}" } }] }, "tool_calls")]),
      translator.step([{ ...base, choices: [], usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } }])
    ]
    const events = parsed([...steps.flat(), ...translator.finish()])
    expect(events.map((event) => event["type"])).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed"
    ])
    for (const event of events) expectResponseEventConforms(event)
    expect(events.map((event) => event["sequence_number"])).toEqual(events.map((_, index) => index))
    expect(events[12]).toMatchObject({ item_id: "msg_2", output_index: 1, content_index: 0, text: "Hello" })
    expect(events[18]).toMatchObject({ item_id: "fc_3", output_index: 2, arguments: "{\"a\":1}", name: "f" })
    const final = events.at(-1)!["response"] as Record<string, unknown>
    expect(final["status"]).toBe("completed")
    expect(final["usage"]).toMatchObject({ input_tokens: 3, output_tokens: 5, total_tokens: 8 })
    expect((final["output"] as ReadonlyArray<{ type: string }>).map((item) => item.type)).toEqual(["reasoning", "message", "function_call"])
  })

  it("output past the bound a response may hold fails the stream, as the translated source tells it: response.failed, then the failure", () => {
    const translator = makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })), 10)
    translator.step([chunkOf({ content: "0123456789" })])
    expect(translator.overflow()).toBeUndefined()
    expect(parsed(translator.step([chunkOf({ content: "!" })])).map((event) => event["type"])).toEqual(["response.output_text.delta", "response.failed"])
    expect(translator.overflow()?.reason).toBe("MalformedResponse")
    const source = translatedResponsesSource(
      fromItems([chunkOf({ content: "0123456789" }), chunkOf({ content: "!" })]),
      makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })), 10)
    )
    const first = source.poll()
    const types = Array.isArray(first) ? parsed(first).map((event) => event["type"]) : []
    expect(types[0]).toBe("response.created")
    expect(types.at(-1)).toBe("response.failed")
    expect(source.poll()).toBeInstanceOf(ProviderError)
  })

  it("a failure after the first event is response.failed; before it, nothing (the Router retries)", () => {
    const fresh = makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })))
    expect(fresh.fail(new ProviderError({ reason: "Unavailable", message: "gone", provider: "openai" }))).toEqual([])
    const translator = makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })))
    translator.step([chunkOf({ content: "par" })])
    const [failed] = parsed(translator.fail(new ProviderError({ reason: "Unavailable", message: "gone", provider: "openai" })))
    expectResponseEventConforms(failed)
    expect(failed).toMatchObject({ type: "response.failed", sequence_number: 5, response: { status: "failed", error: { code: "server_error", message: "gone" } } })
  })
})

// Any chunk sequence: text, reasoning, refusals, tool calls (interleaved, renumbered, repeated ids), finishes, usage.
const delta: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ content: fc.string() }),
  fc.record({ reasoning_content: fc.string() }),
  fc.record({ refusal: fc.string() }),
  fc.record({
    tool_calls: fc.array(
      fc.record({ index: fc.integer({ min: 0, max: 3 }), id: fc.constantFrom("call_a", "call_b", "call_c"), function: fc.record({ name: fc.string(), arguments: fc.string() }, { requiredKeys: [] }) }, { requiredKeys: ["index"] }),
      { maxLength: 2 }
    )
  }),
  fc.constant({})
)

const chunk: fc.Arbitrary<ChatCompletionChunk> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(delta, fc.option(fc.constantFrom("stop", "length", "tool_calls", "content_filter"), { nil: null })).map(([change, finish]) => chunkOf(change, finish)) },
  { weight: 1, arbitrary: fc.record({ prompt_tokens: fc.nat(), completion_tokens: fc.nat() }).map((usage) => ({ ...base, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }) as ChatCompletionChunk) }
)

const terminal = new Set(["response.completed", "response.incomplete", "response.failed"])

describe("any chat chunk sequence → a well-formed Responses event sequence", () => {
  it("numbered from 0 without gaps; created first; every added item done once, with its id and index; exactly one terminal event, last", () =>
    fc.assert(
      fc.property(fc.array(fc.array(chunk, { maxLength: 4 }), { maxLength: 8 }), fc.boolean(), fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }), (batches, breaks, maxHeld) => {
        const translator = makeResponsesTranslator(contextOf(decode({ model: "public", input: "x" })), maxHeld)
        const raw: Array<ResponsesEvent> = []
        // An output past the bound ends the stream with its events (response.failed last).
        for (const batch of batches) if (translator.overflow() === undefined) raw.push(...translator.step(batch))
        const end =
          translator.overflow() !== undefined
            ? []
            : breaks
              ? translator.fail(new ProviderError({ reason: "Unavailable", message: "gone", provider: "openai" }))
              : translator.finish()
        if (breaks && raw.length === 0) {
          expect(end).toEqual([])
          return
        }
        const events = parsed([...raw, ...end])
        for (const event of events) expectResponseEventConforms(event)
        expect(events.map((event) => event["sequence_number"])).toEqual(events.map((_, index) => index))
        expect(events[0]!["type"]).toBe("response.created")
        expect(events[1]!["type"]).toBe("response.in_progress")
        expect(events.filter((event) => terminal.has(String(event["type"])))).toHaveLength(1)
        expect(terminal.has(String(events.at(-1)!["type"]))).toBe(true)
        const added = new Map<number, string>()
        const done = new Set<number>()
        for (const event of events) {
          const type = String(event["type"])
          if (type === "response.output_item.added") {
            const index = event["output_index"] as number
            expect(index).toBe(added.size)
            added.set(index, String((event["item"] as { id: string }).id))
          } else if (type === "response.output_item.done") {
            const index = event["output_index"] as number
            expect(added.get(index)).toBe((event["item"] as { id: string }).id)
            expect(done.has(index)).toBe(false)
            done.add(index)
          } else if ("item_id" in event) {
            const index = event["output_index"] as number
            expect(added.get(index)).toBe(event["item_id"])
            expect(done.has(index)).toBe(false)
          }
        }
        const last = events.at(-1)!
        if (last["type"] !== "response.failed") {
          expect(done.size).toBe(added.size)
          const output = (last["response"] as { output: ReadonlyArray<{ id: string }> }).output
          expect(output.map((item) => item.id)).toEqual([...added.keys()].sort((a, b) => a - b).map((index) => added.get(index)))
        }
        expect(new Set(added.values()).size).toBe(added.size)
      }),
      { numRuns: runsOf(10) }
    ))
})

/**
 * The Responses API validators (test/support/ResponsesSpec.ts) against OpenAI's own schemas: a `response` object, a
 * full text stream event by event and a request body conform; mutations of them are rejected, so the validators
 * can fail. The shapes follow the examples the schemas carry (`Response.example`, each event's `x-oaiMeta.example`),
 * completed where OpenAI's examples omit fields their own schemas require (see ORIGIN.md).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  conformsCreateResponse,
  conformsResponse,
  conformsResponseEvent,
  conformsResponses,
  expectCreateResponseConforms,
  expectResponseConforms,
  expectResponseEventConforms,
  expectResponsesConforms,
  responseEventSchemaFor,
  responseEventSchemas,
  responsesDocument,
  unresolvedResponsesSchemas,
  validatorForResponses
} from "../support/ResponsesSpec.js"

type JsonRecord = Record<string, unknown>

/** A deep copy to mutate. */
const copy = <A>(value: A): A => structuredClone(value)

/** A copy without one key. */
const without = (value: JsonRecord, key: string): JsonRecord => Object.fromEntries(Object.entries(value).filter(([name]) => name !== key))

const text =
  "In a shimmering forest under a sky full of stars, a lonely unicorn named Lila discovered a hidden pond that glowed with moonlight."

// `OutputTextContent` requires `logprobs` (and `annotations`), which OpenAI's examples leave out
const outputText = { type: "output_text", text, annotations: [], logprobs: [] }

const message = {
  type: "message",
  id: "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
  status: "completed",
  role: "assistant",
  content: [outputText]
}

const functionCall = {
  type: "function_call",
  id: "fc_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
  call_id: "call_12345xyz",
  name: "get_weather",
  arguments: "{\"location\":\"Paris, France\"}",
  status: "completed"
}

const usage = {
  input_tokens: 328,
  input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
  output_tokens: 52,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 380
}

/** After `Response.example`; `user: null` left out (the schema's `user` is a string) and a function call added. */
const response: JsonRecord = {
  id: "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  object: "response",
  created_at: 1741476777,
  status: "completed",
  completed_at: 1741476778,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model: "gpt-4o-2024-08-06",
  output: [message, functionCall],
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
  usage,
  metadata: {}
}

/** The response as `response.created` carries it: in progress, nothing generated, no usage yet. */
const inProgress: JsonRecord = { ...without(without(response, "usage"), "completed_at"), status: "in_progress", output: [] }

const item = { ...message, status: "in_progress", content: [] }
const part = { ...outputText, text: "" }

/** A whole text stream: every event with its `sequence_number`, in the order OpenAI sends them. */
const stream: ReadonlyArray<JsonRecord> = [
  { type: "response.created", response: inProgress },
  { type: "response.in_progress", response: inProgress },
  { type: "response.output_item.added", output_index: 0, item },
  { type: "response.content_part.added", item_id: message.id, output_index: 0, content_index: 0, part },
  { type: "response.output_text.delta", item_id: message.id, output_index: 0, content_index: 0, delta: "In a shimmering", logprobs: [] },
  { type: "response.output_text.delta", item_id: message.id, output_index: 0, content_index: 0, delta: text.slice(15), logprobs: [] },
  { type: "response.output_text.done", item_id: message.id, output_index: 0, content_index: 0, text, logprobs: [] },
  { type: "response.content_part.done", item_id: message.id, output_index: 0, content_index: 0, part: outputText },
  { type: "response.output_item.done", output_index: 0, item: message },
  { type: "response.completed", response: { ...response, output: [message] } }
].map((event, index) => ({ ...event, sequence_number: index }))

const at = (index: number): JsonRecord => {
  const event = stream[index]
  if (event === undefined) throw new Error(`no event ${index}`)
  return copy(event)
}

describe("Responses spec subset", () => {
  it("holds the schemas the validators name", () => {
    for (const name of ["Response", "CreateResponse", "ResponseStreamEvent", "OutputItem", "OutputMessage", "OutputTextContent", "FunctionToolCall", "ReasoningItem", "ResponseUsage"]) {
      expect(responsesDocument.components.schemas[name], name).toBeDefined()
      expect(unresolvedResponsesSchemas, name).not.toContain(name)
    }
  })

  it("lists under x-subset-unresolved exactly the references it does not hold", () => {
    const listed = (responsesDocument as unknown as { readonly "x-subset-unresolved": ReadonlyArray<string> })["x-subset-unresolved"]
    expect([...listed].sort()).toEqual(unresolvedResponsesSchemas)
  })

  it("names a member schema for every event type of the stream", () => {
    expect(responseEventSchemaFor("response.output_text.delta")).toBe("ResponseTextDeltaEvent")
    expect(responseEventSchemaFor("error")).toBe("ResponseErrorEvent")
    expect(responseEventSchemaFor("response.reasoning_summary_text.delta")).toBe("ResponseReasoningSummaryTextDeltaEvent")
    for (const event of stream) expect(responseEventSchemas.has(String(event["type"]))).toBe(true)
  })
})

/** The operations of the subset's paths: which schemas their request and answers name. */
const operation = (path: string, method: string): JsonRecord => {
  const paths = (responsesDocument as unknown as { readonly paths: Record<string, Record<string, JsonRecord>> }).paths
  const found = paths[path]?.[method]
  if (found === undefined) throw new Error(`no ${method} ${path}`)
  return found
}

describe("Responses paths", () => {
  it("POST /responses takes a CreateResponse and answers a Response, or ResponseStreamEvents as SSE", () => {
    const post = JSON.stringify(operation("/responses", "post"))
    expect(post).toContain("#/components/schemas/CreateResponse")
    expect(post).toContain("\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Response\"}}")
    expect(post).toContain("\"text/event-stream\":{\"schema\":{\"$ref\":\"#/components/schemas/ResponseStreamEvent\"}}")
  })

  it("GET /responses/{response_id} answers a Response; DELETE names no body schema for its 200", () => {
    expect(JSON.stringify(operation("/responses/{response_id}", "get"))).toContain("#/components/schemas/Response")
    const deleted = operation("/responses/{response_id}", "delete") as { readonly responses: Record<string, JsonRecord> }
    expect(deleted.responses["200"]).toEqual({ description: "OK" })
  })
})

/** The `x-oaiMeta.example` of an event schema, parsed (undefined when it is not JSON). */
const eventExample = (name: string): unknown => {
  const schema = responsesDocument.components.schemas[name] as { readonly "x-oaiMeta"?: { readonly example?: unknown } }
  const example = schema["x-oaiMeta"]?.example
  if (typeof example !== "string") return undefined
  try {
    return JSON.parse(example)
  } catch {
    return undefined
  }
}

describe("OpenAI's own event examples", () => {
  it("conform, except those that disagree with their schemas (pinned, so a change shows)", () => {
    const disagreeing = [...new Set(responseEventSchemas.values())].filter((name) => !conformsResponses(name, eventExample(name))).sort()
    expect(disagreeing).toEqual([
      "ResponseCompletedEvent", // response: `user: null`, no `parallel_tool_calls`, output_text without `logprobs`
      "ResponseContentPartAddedEvent", // part: output_text without `logprobs`
      "ResponseContentPartDoneEvent",
      "ResponseCreatedEvent", // response: `usage: null`, `user: null`
      "ResponseCustomToolCallInputDeltaEvent", // no `sequence_number`
      "ResponseCustomToolCallInputDoneEvent",
      "ResponseFailedEvent", // no `sequence_number`, `usage: null`
      "ResponseFunctionCallArgumentsDeltaEvent", // not JSON (a comma missing)
      "ResponseInProgressEvent", // as created
      "ResponseIncompleteEvent", // `reason: "max_tokens"`, not in the enum
      "ResponseOutputItemDoneEvent", // output_text without `logprobs`
      "ResponseQueuedEvent", // a response of four fields
      "ResponseTextDeltaEvent", // no `logprobs`
      "ResponseTextDoneEvent"
    ])
    expect(disagreeing.length).toBeLessThan(responseEventSchemas.size)
  })
})

describe("Response", () => {
  it("a response with a message, a function call and usage conforms", () => {
    expectResponseConforms(response)
    expect(conformsResponse(response)).toBe(true)
    expect(validatorForResponses("Response")(response)).toBe(true)
  })

  it("OpenAI's own Response example fails only where it disagrees with its schema (logprobs, user)", () => {
    const example = responsesDocument.components.schemas["Response"]
    const value = (example as { readonly example?: unknown }).example
    expect(conformsResponse(value)).toBe(false)
    const patched = copy(value) as { output: Array<{ content: Array<JsonRecord> }>; user?: unknown }
    for (const output of patched.output) for (const content of output.content) content["logprobs"] = []
    expect(conformsResponse(patched)).toBe(false)
    delete patched.user
    expectResponseConforms(patched)
  })

  it("rejects a response without a required field", () => {
    for (const key of ["id", "object", "created_at", "output", "parallel_tool_calls", "tool_choice", "tools", "model", "error"]) {
      expect(conformsResponse(without(response, key)), key).toBe(false)
    }
  })

  it("rejects usage without its required fields", () => {
    for (const key of Object.keys(usage)) {
      expect(conformsResponse({ ...response, usage: without(usage, key) }), key).toBe(false)
    }
    expect(conformsResponse({ ...response, usage: { ...usage, input_tokens_details: { cached_tokens: 0 } } })).toBe(false)
    expect(conformsResponse({ ...response, usage: { ...usage, output_tokens_details: {} } })).toBe(false)
    expect(conformsResponses("ResponseUsage", usage)).toBe(true)
  })

  it("rejects fields of the wrong type", () => {
    expect(conformsResponse({ ...response, created_at: "1741476777" })).toBe(false)
    expect(conformsResponse({ ...response, object: "chat.completion" })).toBe(false)
    expect(conformsResponse({ ...response, status: "done" })).toBe(false)
    expect(conformsResponse({ ...response, usage: { ...usage, total_tokens: "380" } })).toBe(false)
    // `usage` is not nullable in the schema, though OpenAI's created/in-progress examples send null
    expect(conformsResponse({ ...response, usage: null })).toBe(false)
  })

  it("rejects malformed output items", () => {
    expect(conformsResponse({ ...response, output: [without(message, "status")] })).toBe(false)
    expect(conformsResponse({ ...response, output: [{ ...message, role: "user" }] })).toBe(false)
    expect(conformsResponse({ ...response, output: [{ ...message, content: [without(outputText, "logprobs")] }] })).toBe(false)
    expect(conformsResponse({ ...response, output: [without(functionCall, "call_id")] })).toBe(false)
    expect(conformsResponse({ ...response, output: [{ ...functionCall, arguments: { location: "Paris" } }] })).toBe(false)
    expect(conformsResponse({ ...response, output: [{ type: "mystery_item", id: "x" }] })).toBe(false)
  })

  it("a reasoning item conforms and needs its summary", () => {
    const reasoning = { type: "reasoning", id: "rs_6806bfca0b2481918a5748308061a2600d3ce51bdffd5476", summary: [{ type: "summary_text", text: "**Responding to a greeting**" }] }
    expectResponseConforms({ ...response, output: [reasoning, message] })
    expect(conformsResponse({ ...response, output: [without(reasoning, "summary"), message] })).toBe(false)
  })

  it("a response echoing a function tool (as in OpenAI's Functions example) conforms; a tool without its schema does not", () => {
    const tool = {
      type: "function",
      description: "Get the current weather in a given location",
      name: "get_current_weather",
      parameters: {
        type: "object",
        properties: {
          location: { type: "string", description: "The city and state, e.g. San Francisco, CA" },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] }
        },
        required: ["location", "unit"]
      },
      strict: true
    }
    expectResponseConforms({ ...response, tools: [tool], tool_choice: { type: "function", name: "get_current_weather" } })
    // `FunctionTool` requires `strict` and `parameters` (both nullable)
    expect(conformsResponse({ ...response, tools: [without(tool, "strict")] })).toBe(false)
    expect(conformsResponse({ ...response, tool_choice: "sometimes" })).toBe(false)
  })

  it("a web search call conforms with its action, which the schema requires", () => {
    const call = { type: "web_search_call", id: "ws_67ccf18f64008190a39b619f4c8455ef087bb177ab789d5c", status: "completed", action: { type: "search", query: "positive news today" } }
    expectResponseConforms({ ...response, output: [call, message] })
    expect(conformsResponse({ ...response, output: [without(call, "action"), message] })).toBe(false)
  })

  it("says what is wrong", () => {
    expect(() => expectResponseConforms(without(response, "output"))).toThrow(/not a valid Response[\s\S]*output/)
  })
})

describe("ResponseStreamEvent", () => {
  it("every event of a full text stream conforms to its own member schema", () => {
    for (const event of stream) {
      expectResponseEventConforms(event)
      expect(conformsResponseEvent(event)).toBe(true)
      expectResponsesConforms(responseEventSchemaFor(String(event["type"])) ?? "", event)
    }
  })

  it("rejects an event without its sequence_number", () => {
    for (const event of stream) {
      expect(conformsResponseEvent(without(event, "sequence_number")), String(event["type"])).toBe(false)
    }
    expect(() => expectResponseEventConforms(without(at(4), "sequence_number"))).toThrow(/not a valid ResponseTextDeltaEvent[\s\S]*sequence_number/)
  })

  it("rejects fields of the wrong type", () => {
    expect(conformsResponseEvent({ ...at(4), output_index: "0" })).toBe(false)
    expect(conformsResponseEvent({ ...at(4), delta: 42 })).toBe(false)
    expect(conformsResponseEvent({ ...at(4), sequence_number: 4.5 })).toBe(false)
    expect(conformsResponseEvent({ ...at(6), text: null })).toBe(false)
    expect(conformsResponseEvent({ ...at(3), part: { type: "output_text" } })).toBe(false)
  })

  it("rejects text deltas and dones without logprobs, which the schema requires", () => {
    expect(conformsResponseEvent(without(at(4), "logprobs"))).toBe(false)
    expect(conformsResponseEvent(without(at(6), "logprobs"))).toBe(false)
  })

  it("rejects the completed event when its response lacks usage fields", () => {
    const completed = at(9)
    const body = completed["response"] as JsonRecord
    expect(conformsResponseEvent({ ...completed, response: { ...body, usage: without(usage, "output_tokens") } })).toBe(false)
  })

  it("fails clearly on an unknown event type", () => {
    expect(conformsResponseEvent({ type: "response.output_text.delta.extra", sequence_number: 1 })).toBe(false)
    expect(() => expectResponseEventConforms({ type: "response.unknown", sequence_number: 1 })).toThrow(/unknown Responses stream event type "response.unknown"/)
    expect(() => expectResponseEventConforms({ sequence_number: 1 })).toThrow(/string `type`/)
    expect(() => expectResponseEventConforms("data: [DONE]")).toThrow(/JSON object/)
  })

  it("an error event conforms", () => {
    expectResponseEventConforms({ type: "error", code: "server_error", message: "The model failed to generate a response.", param: null, sequence_number: 3 })
    expect(conformsResponseEvent({ type: "error", message: "x", sequence_number: 3 })).toBe(false)
  })

  it("function call argument events conform", () => {
    expectResponseEventConforms({ type: "response.output_item.added", output_index: 1, item: { ...functionCall, status: "in_progress", arguments: "" }, sequence_number: 10 })
    expectResponseEventConforms({ type: "response.function_call_arguments.delta", item_id: functionCall.id, output_index: 1, delta: "{\"location\":", sequence_number: 11 })
    expectResponseEventConforms({ type: "response.function_call_arguments.done", item_id: functionCall.id, name: "get_weather", output_index: 1, arguments: functionCall.arguments, sequence_number: 12 })
    expect(conformsResponseEvent({ type: "response.function_call_arguments.done", item_id: functionCall.id, output_index: 1, arguments: "{}", sequence_number: 12 })).toBe(false)
  })
})

describe("CreateResponse", () => {
  it("a request body conforms", () => {
    expectCreateResponseConforms({ model: "gpt-4.1", input: "Tell me a three sentence bedtime story about a unicorn." })
    expectCreateResponseConforms({ model: "gpt-4.1", input: "Hi", stream: true, temperature: 0.2, max_output_tokens: 256, store: false })
    expect(conformsCreateResponse({ model: "gpt-4.1", input: "Hi" })).toBe(true)
  })

  it("rejects fields of the wrong type", () => {
    expect(conformsCreateResponse({ model: "gpt-4.1", input: "Hi", stream: "yes" })).toBe(false)
    expect(conformsCreateResponse({ model: "gpt-4.1", input: "Hi", temperature: 3 })).toBe(false)
    expect(conformsCreateResponse({ model: "gpt-4.1", input: "Hi", max_output_tokens: 8 })).toBe(false)
    expect(conformsCreateResponse({ model: "gpt-4.1", input: "Hi", metadata: { key: 1 } })).toBe(false)
  })
})

/**
 * The third wire dialect llm-proxy serves: OpenAI's Responses API (`POST /v1/responses`, `GET` and
 * `DELETE /v1/responses/{id}`), the ingress side. What a client sends is checked loosely, as chat and Messages
 * requests are: the fields the gateway reads must have the right shape (a 400 names the first that does not), every
 * other field is kept, so a native Responses deployment (`api: responses`) receives the body as the client wrote it.
 */
import { Schema } from "effect"

const preserve = { parseOptions: { onExcessProperty: "preserve" } } as const

const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** `input_text`: text of a user, system or developer message. */
export const InputTextPart = Schema.Struct({ type: Schema.Literal("input_text"), text: Schema.String }).annotations({ identifier: "ResponsesInputText", ...preserve })

/** `input_image`: an image by URL (a `data:` URL included) or by uploaded file id. */
export const InputImagePart = Schema.Struct({
  type: Schema.Literal("input_image"),
  image_url: Schema.optional(Schema.NullOr(Schema.String)),
  file_id: Schema.optional(Schema.NullOr(Schema.String)),
  detail: Schema.optional(Schema.Literal("auto", "low", "high"))
}).annotations({ identifier: "ResponsesInputImage", ...preserve })

/** `input_file`: a file given inline (`file_data`, a `data:` URL), by id or by URL. */
export const InputFilePart = Schema.Struct({
  type: Schema.Literal("input_file"),
  file_data: Schema.optional(Schema.String),
  file_id: Schema.optional(Schema.NullOr(Schema.String)),
  file_url: Schema.optional(Schema.String),
  filename: Schema.optional(Schema.String)
}).annotations({ identifier: "ResponsesInputFile", ...preserve })

/** `output_text`: the text of an earlier assistant message, sent back as history. */
export const OutputTextPart = Schema.Struct({ type: Schema.Literal("output_text"), text: Schema.String }).annotations({ identifier: "ResponsesOutputText", ...preserve })

/** `refusal`: an earlier assistant refusal, sent back as history. */
export const RefusalPart = Schema.Struct({ type: Schema.Literal("refusal"), refusal: Schema.String }).annotations({ identifier: "ResponsesRefusal", ...preserve })

const knownPartTypes: ReadonlySet<string> = new Set(["input_text", "input_image", "input_file", "output_text", "refusal"])

/** A part of a kind the gateway does not read (`input_audio`, newer kinds): kept for native deployments. */
export const OtherPart = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((type) => !knownPartTypes.has(type), { message: () => "a content part of a known type with wrong fields" }))
}).annotations({ identifier: "ResponsesOtherPart", ...preserve })

/** Any content part of an input message. */
export const ContentPart = Schema.Union(InputTextPart, InputImagePart, InputFilePart, OutputTextPart, RefusalPart, OtherPart)
export type ContentPart = typeof ContentPart.Type

/** A message item: `type: "message"` may be left out, as OpenAI's easy input message does. */
export const MessageItem = Schema.Struct({
  type: Schema.optional(Schema.Literal("message")),
  role: Schema.Literal("user", "assistant", "system", "developer"),
  content: Schema.Union(Schema.String, Schema.Array(ContentPart))
}).annotations({ identifier: "ResponsesMessageItem", ...preserve })
export type MessageItem = typeof MessageItem.Type

/** A function call the model made earlier, sent back as history. */
export const FunctionCallItem = Schema.Struct({
  type: Schema.Literal("function_call"),
  call_id: Schema.String,
  name: Schema.String,
  arguments: Schema.String
}).annotations({ identifier: "ResponsesFunctionCallItem", ...preserve })

/** The result of a function call: text, or parts. */
export const FunctionCallOutputItem = Schema.Struct({
  type: Schema.Literal("function_call_output"),
  call_id: Schema.String,
  output: Schema.Union(Schema.String, Schema.Array(ContentPart))
}).annotations({ identifier: "ResponsesFunctionCallOutputItem", ...preserve })

/** A reasoning item of an earlier answer: its summary, its raw text when it had one, its encrypted state. */
export const ReasoningItem = Schema.Struct({
  type: Schema.Literal("reasoning"),
  summary: Schema.optional(Schema.Array(Schema.Struct({ type: Schema.String, text: Schema.String }).annotations(preserve))),
  content: Schema.optional(Schema.NullOr(Schema.Array(Schema.Struct({ type: Schema.String, text: Schema.String }).annotations(preserve)))),
  encrypted_content: Schema.optional(Schema.NullOr(Schema.String))
}).annotations({ identifier: "ResponsesReasoningItem", ...preserve })

const knownItemTypes: ReadonlySet<string> = new Set(["message", "function_call", "function_call_output", "reasoning"])

/** An item of another kind (`item_reference`, built-in tool calls…): kept for native deployments. */
export const OtherItem = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((type) => !knownItemTypes.has(type), { message: () => "an item of a known type with wrong fields" }))
}).annotations({ identifier: "ResponsesOtherItem", ...preserve })

/** Any input item. */
export const InputItem = Schema.Union(MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem, OtherItem)
export type InputItem = typeof InputItem.Type

/** An input item as the kind it is. Sound because `OtherItem` refuses the known types. */
export type KnownItem = MessageItem | typeof FunctionCallItem.Type | typeof FunctionCallOutputItem.Type | typeof ReasoningItem.Type

/** The item as a known kind, or `undefined` for another kind. */
export const knownItem = (item: InputItem): KnownItem | undefined =>
  !("type" in item) || item.type === undefined || knownItemTypes.has(item.type) ? (item as KnownItem) : undefined

/** A function tool; the only kind the gateway serves (others are refused with a 400 naming their type). */
export const FunctionToolParam = Schema.Struct({
  type: Schema.Literal("function"),
  name: Schema.String.pipe(Schema.minLength(1)),
  description: Schema.optional(Schema.NullOr(Schema.String)),
  parameters: Schema.optional(Schema.NullOr(JsonObject)),
  strict: Schema.optional(Schema.NullOr(Schema.Boolean))
}).annotations({ identifier: "ResponsesFunctionTool", ...preserve })
export type FunctionToolParam = typeof FunctionToolParam.Type

/** `tool_choice`: a mode, or one function by name. */
export const ToolChoiceParam = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  Schema.Struct({ type: Schema.Literal("function"), name: Schema.String }).annotations(preserve)
).annotations({ identifier: "ResponsesToolChoice" })
export type ToolChoiceParam = typeof ToolChoiceParam.Type

/** `text.format`: plain text, any JSON object, or JSON following a schema. */
export const TextFormat = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("json_object") }).annotations(preserve),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    name: Schema.String.pipe(Schema.minLength(1)),
    schema: JsonObject,
    description: Schema.optional(Schema.String),
    strict: Schema.optional(Schema.NullOr(Schema.Boolean))
  }).annotations(preserve)
).annotations({ identifier: "ResponsesTextFormat" })
export type TextFormat = typeof TextFormat.Type

/**
 * `reasoning.effort`: the values OpenAI's schema allows (`ReasoningEffort`). Another is refused with a 400 naming the
 * field, as OpenAI refuses it: a translated answer echoes the request's reasoning, and must stay a valid response.
 */
export const ReasoningEffort = Schema.Literal("none", "minimal", "low", "medium", "high", "xhigh", "max")

/** `POST /v1/responses` body. Unknown fields are kept and, to native deployments, forwarded. */
export const ResponsesRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  input: Schema.optional(Schema.Union(Schema.String, Schema.Array(InputItem))),
  instructions: Schema.optional(Schema.NullOr(Schema.String)),
  tools: Schema.optional(Schema.Array(Schema.Struct({ type: Schema.String }).annotations(preserve))),
  tool_choice: Schema.optional(ToolChoiceParam),
  parallel_tool_calls: Schema.optional(Schema.NullOr(Schema.Boolean)),
  text: Schema.optional(Schema.NullOr(Schema.Struct({ format: Schema.optional(TextFormat) }).annotations(preserve))),
  reasoning: Schema.optional(Schema.NullOr(Schema.Struct({ effort: Schema.optional(Schema.NullOr(ReasoningEffort)) }).annotations(preserve))),
  max_output_tokens: Schema.optional(Schema.NullOr(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)))),
  temperature: Schema.optional(Schema.NullOr(Schema.Number.pipe(Schema.between(0, 2)))),
  top_p: Schema.optional(Schema.NullOr(Schema.Number.pipe(Schema.between(0, 1)))),
  metadata: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String }))),
  store: Schema.optional(Schema.NullOr(Schema.Boolean)),
  previous_response_id: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)))),
  stream: Schema.optional(Schema.NullOr(Schema.Boolean)),
  user: Schema.optional(Schema.String)
}).annotations({ identifier: "CreateResponse", ...preserve })
export type ResponsesRequest = typeof ResponsesRequest.Type

/** Token accounting of a response, as OpenAI reports it. */
export interface ResponseUsage {
  readonly input_tokens: number
  readonly input_tokens_details: { readonly cached_tokens: number; readonly cache_write_tokens: number }
  readonly output_tokens: number
  readonly output_tokens_details: { readonly reasoning_tokens: number }
  readonly total_tokens: number
}

/** A response object (documentation for the OpenAPI document: answers are built or relayed, not decoded). */
export const ResponseObject = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("response"),
  created_at: Schema.Number,
  status: Schema.String,
  model: Schema.String,
  output: Schema.Array(JsonObject),
  usage: Schema.optional(Schema.NullOr(JsonObject)),
  error: Schema.NullOr(JsonObject),
  incomplete_details: Schema.NullOr(JsonObject)
}).annotations({ identifier: "Response", ...preserve })

/** `DELETE /v1/responses/{id}` answer. */
export const DeletedResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("response"),
  deleted: Schema.Literal(true)
}).annotations({ identifier: "DeletedResponse" })

/**
 * One event of a Responses stream as the gateway relays it: its type and its data as one line of JSON (written after
 * `data: `), with what the core reads off it once: the text it delivers (deltas) and, on the terminal events
 * (`response.completed`, `.incomplete`, `.failed`), the final response object (its usage, what is stored).
 */
export interface ResponsesEvent {
  readonly type: string
  readonly data: string
  /** Its `sequence_number`, when it has one (the writer numbers an `error` event after the last). */
  readonly sequence?: number
  readonly text?: string
  readonly response?: Readonly<Record<string, unknown>>
}

/** The terminal event types of a Responses stream. */
export const terminalEventTypes: ReadonlySet<string> = new Set(["response.completed", "response.incomplete", "response.failed"])

/**
 * A Responses request as the edge hands it to the core: checked, and the body as sent. `history` is what a
 * `previous_response_id` stood for (its input and output items), resolved by the core before routing.
 */
export interface ResponsesCall {
  readonly request: ResponsesRequest
  readonly body: Readonly<Record<string, unknown>>
  readonly history: ReadonlyArray<unknown>
}

/** What a native deployment is sent: the client's body (history resolved) with the deployment's upstream model. */
export interface ResponsesNativeCall {
  readonly body: Readonly<Record<string, unknown>>
}

/** A non-streamed answer: the response object (JSON), read for its id, status and usage. */
export interface ResponseAnswer {
  readonly response: Readonly<Record<string, unknown>>
}

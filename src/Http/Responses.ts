/**
 * The edge of OpenAI's Responses endpoints, shared by both transports (the node:http fast path and the HttpApi
 * handlers): the paths, the decoding of a request into what the core takes, and the SSE framing of Responses events.
 * Failures are OpenAI's envelope, as on every OpenAI route. Everything else — admission, routing, accounting, the
 * stored responses — is the core's.
 *
 * A failure after the stream began is written as an `error` event: `{"type":"error","sequence_number","code",
 * "message","param"}` as OpenAI's schema has it, plus the envelope's `error` object, which is what the openai SDKs
 * read to raise an APIError from a stream (`responses.stream()`, `for await` over `responses.create`). A translated
 * stream whose upstream broke says `response.failed` first (src/Responses/StreamTranslate.ts).
 */
import { Either, ParseResult, Schema } from "effect"
import { InvalidRequest } from "../Errors.js"
import { plainResponsesRequest } from "../Responses/PlainRequest.js"
import { FunctionToolParam, ResponsesRequest } from "../Responses/Wire.js"
import type { ResponsesCall, ResponsesEvent } from "../Responses/Wire.js"
import { invalidRequestOf, invalidRequestOfParseError, parseJsonBody } from "./Edge.js"
import { describeError } from "./Errors.js"
import type { GatewayError } from "./Errors.js"
import { keepaliveFrame } from "./Sse.js"
import type { Framing } from "./Sse.js"

/** `POST /v1/responses`. */
export const responsesPath = "/v1/responses"

const notAnObject = new InvalidRequest({ message: "The request body must be a JSON object.", param: "body" })

const decodeRequest = Schema.decodeUnknownEither(ResponsesRequest)
const decodeFunctionTool = Schema.decodeUnknownEither(FunctionToolParam)

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> => typeof value === "object" && value !== null && !Array.isArray(value)

/** The first tool that is not a well-formed function tool: the 400 naming it. */
const toolProblem = (tools: ReadonlyArray<{ readonly type: string }> | undefined): InvalidRequest | undefined => {
  if (tools === undefined) return undefined
  for (let index = 0; index < tools.length; index++) {
    const tool = tools[index]!
    if (tool.type !== "function") {
      return new InvalidRequest({
        message: `Tool type '${tool.type.slice(0, 64)}' is not supported: this gateway serves function tools only (tools[${index}].type).`,
        param: `tools[${index}].type`
      })
    }
    const decoded = decodeFunctionTool(tool)
    if (Either.isLeft(decoded)) {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      return invalidRequestOf(
        issues.map((issue) => ({ ...issue, path: ["tools", index, ...issue.path] })),
        `Invalid value for 'tools[${index}]'`
      )
    }
  }
  return undefined
}

/** A parsed body checked as a Responses request: what the core takes, or the 400 naming the first bad field. */
export const responsesCallOf = (body: unknown): Either.Either<ResponsesCall, InvalidRequest> => {
  if (!isRecord(body)) return Either.left(notAnObject)
  const plain = plainResponsesRequest(body)
  if (plain !== undefined) return Either.right({ request: plain, body, history: [] })
  return Either.flatMap(Either.mapLeft(decodeRequest(body), invalidRequestOfParseError), (request) => {
    const problem = toolProblem(request.tools)
    return problem === undefined ? Either.right({ request, body, history: [] }) : Either.left(problem)
  })
}

/** A Responses body's text, parsed (bounded nesting) and checked. */
export const decodeResponsesCall = (text: string): Either.Either<ResponsesCall, InvalidRequest> => Either.flatMap(parseJsonBody(text), responsesCallOf)

/** A response id as a path segment may give it: OpenAI's ids are short words; anything else is no stored response. */
export const responseIdOf = (segment: string): string | undefined => {
  let id: string
  try {
    id = decodeURIComponent(segment)
  } catch {
    return undefined
  }
  return /^[\w.-]{1,256}$/.test(id) ? id : undefined
}

const encoder = new TextEncoder()

/**
 * The framing of one Responses stream: `event: <type>` and `data: <json>` per event, nothing after the terminal
 * event, `: keepalive` comments on silence, and a failure as the `error` event numbered after the last event written.
 * Made per stream: it remembers the last sequence number.
 */
export const responsesFraming = (): Framing<ResponsesEvent> => {
  let lastSequence = -1
  return {
    frames: (batch) => {
      let text = ""
      for (const event of batch) {
        if (event.sequence !== undefined && event.sequence > lastSequence) lastSequence = event.sequence
        text += `event: ${event.type}\ndata: ${event.data}\n\n`
      }
      return text
    },
    done: new Uint8Array(0),
    error: (error: GatewayError) => {
      const { body } = describeError(error)
      lastSequence++
      const payload = { type: "error", sequence_number: lastSequence, code: body.error.code, message: body.error.message, param: body.error.param, error: body.error }
      return encoder.encode(`event: error\ndata: ${JSON.stringify(payload)}\n\n`)
    },
    keepalive: keepaliveFrame
  }
}

/**
 * OpenAI's published schemas of the Responses API (the derived subset in test/fixtures/openai, with its licence)
 * compiled with ajv, converted from OpenAPI to JSON Schema the same way as the chat subset (Spec.ts): what tests of
 * `POST /v1/responses` check the gateway's requests, responses and stream events against.
 */
import type { ValidateFunction } from "ajv/dist/2020.js"
import { componentDefs, isObject, loadDocument, schemaRegistry } from "./Spec.js"
import type { Json, JsonObject } from "./Spec.js"

/** The Responses OpenAPI subset, parsed. */
export const responsesDocument = loadDocument("openai-openapi.responses-subset.yaml")

const schemaRef = "#/$defs/"

/** Every `$ref` target (a component name) under a converted schema node. */
const refsOf = (node: Json): ReadonlyArray<string> => {
  if (Array.isArray(node)) return node.flatMap(refsOf)
  if (!isObject(node)) return []
  const own = node["$ref"]
  const here = typeof own === "string" && own.startsWith(schemaRef) ? [own.slice(schemaRef.length)] : []
  return [...here, ...Object.values(node).flatMap(refsOf)]
}

const converted = componentDefs(responsesDocument)

/**
 * Component names the subset's schemas reference without holding them (listed in the fixture's
 * `x-subset-unresolved`, see ORIGIN.md). Empty when the subset is closed.
 */
export const unresolvedResponsesSchemas: ReadonlyArray<string> = [
  ...new Set(Object.values(converted).flatMap(refsOf).filter((name) => !(name in converted)))
].sort()

const unresolved = new Set(unresolvedResponsesSchemas)
const refTo = (node: Json): string | undefined => {
  const ref = isObject(node) ? node["$ref"] : undefined
  return typeof ref === "string" && ref.startsWith(schemaRef) ? ref.slice(schemaRef.length) : undefined
}

/**
 * What an absent schema means. In a union of two or more `$ref`s (an item, tool or event union) of which the subset
 * holds at least one, a member the subset lacks is dropped, so the union admits only what the subset can check;
 * anywhere else the absent schema accepts anything, so a field the subset cannot describe never fails a value.
 * This changes the schemas' meaning only where the subset is incomplete (see ORIGIN.md).
 */
const closeOver = (node: Json): Json => {
  if (Array.isArray(node)) return node.map(closeOver)
  if (!isObject(node)) return node
  const out: Record<string, Json> = {}
  for (const [key, value] of Object.entries(node)) {
    if ((key === "anyOf" || key === "oneOf") && Array.isArray(value)) {
      const members: ReadonlyArray<Json> = value
      const refs = members.map(refTo).filter((name): name is string => name !== undefined)
      const held = refs.filter((name) => !unresolved.has(name)).length
      const kept = refs.length >= 2 && held > 0 ? members.filter((member) => !unresolved.has(refTo(member) ?? "")) : members
      // a union the subset knows none of stays open; as `oneOf` its absent members (each accepting anything) would
      // all match and so fail every value, hence `anyOf`
      const open = held === 0 && refs.length > 0 && key === "oneOf" && !("anyOf" in node)
      out[open ? "anyOf" : key] = kept.map(closeOver)
    } else {
      out[key] = closeOver(value)
    }
  }
  return out
}

const defs: Record<string, Json> = {
  ...Object.fromEntries(Object.entries(converted).map(([name, schema]) => [name, closeOver(schema)])),
  ...Object.fromEntries(unresolvedResponsesSchemas.map((name) => [name, true]))
}
const registry = schemaRegistry("https://openai-openapi.conformance.test/responses-schemas.json", defs)

/** The compiled validator of one component schema of the Responses subset, by name (compiled once). */
export const validatorForResponses = (name: string): ValidateFunction => registry.validatorFor(name)

/** Validates a value against one component schema of the Responses subset, failing with ajv's explanation. */
export const expectResponsesConforms = (schemaName: string, value: unknown): void => registry.expectConforms(schemaName, value)

/** Whether a value conforms to one component schema of the Responses subset. */
export const conformsResponses = (schemaName: string, value: unknown): boolean => registry.conforms(schemaName, value)

/** Validates a `response` object (`Response`: the body of `POST /responses` and `GET /responses/{id}`). */
export const expectResponseConforms = (value: unknown): void => registry.expectConforms("Response", value)

/** Whether a value is a valid `response` object (`Response`). */
export const conformsResponse = (value: unknown): boolean => registry.conforms("Response", value)

/** Validates a `POST /responses` request body (`CreateResponse`). */
export const expectCreateResponseConforms = (body: unknown): void => registry.expectConforms("CreateResponse", body)

/** Whether a value is a valid `POST /responses` request body (`CreateResponse`). */
export const conformsCreateResponse = (body: unknown): boolean => registry.conforms("CreateResponse", body)

const streamEvent: JsonObject | undefined = (() => {
  const schema = responsesDocument.components.schemas["ResponseStreamEvent"]
  return isObject(schema) ? schema : undefined
})()

/** The types a member schema admits (`properties.type.enum`). */
const typesOf = (schema: Json | undefined): ReadonlyArray<string> => {
  const properties = isObject(schema) ? schema["properties"] : undefined
  const type = isObject(properties) ? properties["type"] : undefined
  const values = isObject(type) ? type["enum"] : undefined
  return Array.isArray(values) ? values.filter((value): value is string => typeof value === "string") : []
}

/**
 * Each stream event `type` and the `ResponseStreamEvent` member schema that describes it, for the members the subset
 * holds (e.g. `response.output_text.delta` → `ResponseTextDeltaEvent`, `error` → `ResponseErrorEvent`).
 */
export const responseEventSchemas: ReadonlyMap<string, string> = new Map(
  (() => {
    const members = streamEvent?.["anyOf"]
    const memberList: ReadonlyArray<Json> = Array.isArray(members) ? members : []
    return memberList.flatMap((member) => {
      const ref = isObject(member) ? member["$ref"] : undefined
      const name = typeof ref === "string" ? ref.slice(ref.lastIndexOf("/") + 1) : undefined
      if (name === undefined || !(name in converted)) return []
      return typesOf(responsesDocument.components.schemas[name]).map((type): [string, string] => [type, name])
    })
  })()
)

/** The member schema of `ResponseStreamEvent` for an event's `type`, if the spec (subset) knows that type. */
export const responseEventSchemaFor = (type: string): string | undefined => responseEventSchemas.get(type)

/** The member schema an event must satisfy, or why there is none. */
const eventSchema = (event: unknown): { readonly schema: string } | { readonly problem: string } => {
  if (typeof event !== "object" || event === null || Array.isArray(event)) return { problem: "a stream event must be a JSON object" }
  const type: unknown = (event as Record<string, unknown>)["type"]
  if (typeof type !== "string") return { problem: "a stream event needs a string `type`" }
  const schema = responseEventSchemas.get(type)
  return schema === undefined
    ? { problem: `unknown Responses stream event type ${JSON.stringify(type)} (known: ${[...responseEventSchemas.keys()].join(", ")})` }
    : { schema }
}

/**
 * Validates one streamed event (`ResponseStreamEvent`) against the member schema its `type` names, so a failure
 * says what is wrong with, e.g., a `ResponseTextDeltaEvent` rather than that none of fifty members matched. An event
 * whose type the spec does not know fails.
 */
export const expectResponseEventConforms = (event: unknown): void => {
  const found = eventSchema(event)
  if ("problem" in found) throw new Error(`${found.problem}\nvalue: ${JSON.stringify(event)}`)
  registry.expectConforms(found.schema, event)
}

/** Whether a value is a valid stream event of a type the spec knows (see `expectResponseEventConforms`). */
export const conformsResponseEvent = (event: unknown): boolean => {
  const found = eventSchema(event)
  return "schema" in found && registry.conforms(found.schema, event)
}

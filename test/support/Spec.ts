/**
 * OpenAI's published schemas (the OpenAPI subset in test/fixtures/openai, with its licence) compiled with ajv: what
 * the conformance suite and the fuzz suites check the gateway's answers against.
 */
import Ajv2020Module from "ajv/dist/2020.js"
import type { ErrorObject, ValidateFunction } from "ajv/dist/2020.js"
import { readFileSync } from "node:fs"
import * as Yaml from "yaml"

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/openai/${name}`, import.meta.url), "utf8")

/** A JSON value. */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
type JsonObject = { readonly [key: string]: Json }

const isObject = (value: Json | undefined): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const componentRef = "#/components/schemas/"

/**
 * Rewrites one OpenAPI schema node: `$ref`s to components point into `$defs`, and `nullable: true` (OpenAPI 3.0,
 * which this 3.1 document still uses in places) becomes a union with null.
 */
/** One OpenAPI schema node as JSON Schema 2020-12 (`$ref`s into `$defs`, `nullable` as a union with null). */
export const toJsonSchema = (node: Json): Json => {
  if (Array.isArray(node)) return node.map(toJsonSchema)
  if (!isObject(node)) return node
  const out: Record<string, Json> = {}
  for (const [key, value] of Object.entries(node)) {
    if (key === "nullable") continue
    if (key === "$ref" && typeof value === "string" && value.startsWith(componentRef)) {
      out[key] = `#/$defs/${value.slice(componentRef.length)}`
    } else {
      out[key] = toJsonSchema(value)
    }
  }
  if (node["nullable"] !== true) return out
  const type = out["type"]
  if (typeof type === "string") {
    out["type"] = [type, "null"]
    const values = out["enum"]
    if (Array.isArray(values)) out["enum"] = [...values, null]
    return out
  }
  // `$ref` / `anyOf` / ... with nullable: wrap, since siblings of a union cannot add null
  return { anyOf: [out, { type: "null" }] }
}

interface OpenApiDocument {
  readonly components: { readonly schemas: Record<string, Json> }
}

/** The OpenAPI subset, parsed. */
export const specDocument = Yaml.parse(fixture("openai-openapi.chat-models-subset.yaml")) as OpenApiDocument
const specId = "https://openai-openapi.conformance.test/schemas.json"

const Ajv2020 = Ajv2020Module.default
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
ajv.addSchema(
  { $id: specId, $defs: Object.fromEntries(Object.entries(specDocument.components.schemas).map(([name, schema]) => [name, toJsonSchema(schema)])) },
  specId
)

const validators = new Map<string, ValidateFunction>()
/** The compiled validator of one component schema (compiled once). */
export const validatorFor = (name: string): ValidateFunction => {
  const known = validators.get(name)
  if (known !== undefined) return known
  const compiled = ajv.compile({ $ref: `${specId}#/$defs/${name}` })
  validators.set(name, compiled)
  return compiled
}

/** An ajv error list as readable lines. */
export const describeErrors = (errors: ReadonlyArray<ErrorObject> | null | undefined): string =>
  (errors ?? []).map((error) => `${error.instancePath || "(root)"} ${error.message ?? ""} ${JSON.stringify(error.params)}`).join("\n")

/** Validates against one of OpenAI's component schemas, failing with the validator's explanation. */
export const expectConforms = (schemaName: string, value: unknown): void => {
  const validate = validatorFor(schemaName)
  const valid = validate(value)
  if (!valid) {
    throw new Error(`not a valid ${schemaName}:\n${describeErrors(validate.errors)}\nvalue: ${JSON.stringify(value)}`)
  }
}

/** Whether a value conforms to one of OpenAI's component schemas. */
export const conforms = (schemaName: string, value: unknown): boolean => validatorFor(schemaName)(value) === true

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
/** A JSON object. */
export type JsonObject = { readonly [key: string]: Json }

/** Whether a JSON value is an object (not null, not an array). */
export const isObject = (value: Json | undefined): value is JsonObject =>
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

/** The part of an OpenAPI document the validators read. */
export interface OpenApiDocument {
  readonly components: { readonly schemas: Record<string, Json> }
}

/** An OpenAPI document of test/fixtures/openai, parsed. */
export const loadDocument = (name: string): OpenApiDocument => Yaml.parse(fixture(name)) as OpenApiDocument

/** Every component schema of a document as JSON Schema 2020-12, by name (the `$defs` a registry compiles). */
export const componentDefs = (document: OpenApiDocument): Record<string, Json> =>
  Object.fromEntries(Object.entries(document.components.schemas).map(([name, schema]) => [name, toJsonSchema(schema)]))

/** An error list of ajv as readable lines. */
export const describeErrors = (errors: ReadonlyArray<ErrorObject> | null | undefined): string =>
  (errors ?? []).map((error) => `${error.instancePath || "(root)"} ${error.message ?? ""} ${JSON.stringify(error.params)}`).join("\n")

/** Validators over one set of component schemas. */
export interface SchemaRegistry {
  /** The compiled validator of one component schema (compiled once). */
  readonly validatorFor: (name: string) => ValidateFunction
  /** Validates against one component schema, failing with the validator's explanation. */
  readonly expectConforms: (schemaName: string, value: unknown) => void
  /** Whether a value conforms to one component schema. */
  readonly conforms: (schemaName: string, value: unknown) => boolean
}

const Ajv2020 = Ajv2020Module.default

/**
 * Compiles JSON Schema definitions (see `componentDefs`) under their own `$id`, in an ajv of their own so that two
 * documents' same-named schemas never meet. OpenAI's schemas carry `x-` keywords, `discriminator` and formats such
 * as `unixtime`: ajv is told to ignore what it does not know rather than the schemas being edited.
 */
export const schemaRegistry = (id: string, defs: Record<string, Json>): SchemaRegistry => {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
  ajv.addSchema({ $id: id, $defs: defs }, id)
  const validators = new Map<string, ValidateFunction>()
  const validatorFor = (name: string): ValidateFunction => {
    const known = validators.get(name)
    if (known !== undefined) return known
    if (!(name in defs)) throw new Error(`no schema named ${name} in ${id}`)
    const compiled = ajv.compile({ $ref: `${id}#/$defs/${name}` })
    validators.set(name, compiled)
    return compiled
  }
  const expectConforms = (schemaName: string, value: unknown): void => {
    const validate = validatorFor(schemaName)
    if (!validate(value)) {
      throw new Error(`not a valid ${schemaName}:\n${describeErrors(validate.errors)}\nvalue: ${JSON.stringify(value)}`)
    }
  }
  const conforms = (schemaName: string, value: unknown): boolean => validatorFor(schemaName)(value) === true
  return { validatorFor, expectConforms, conforms }
}

/** The chat/models OpenAPI subset, parsed. */
export const specDocument = loadDocument("openai-openapi.chat-models-subset.yaml")
const chat = schemaRegistry("https://openai-openapi.conformance.test/schemas.json", componentDefs(specDocument))

/** The compiled validator of one component schema of the chat/models subset (compiled once). */
export const validatorFor = (name: string): ValidateFunction => chat.validatorFor(name)

/** Validates against one of OpenAI's component schemas (chat/models subset), failing with the validator's explanation. */
export const expectConforms = (schemaName: string, value: unknown): void => chat.expectConforms(schemaName, value)

/** Whether a value conforms to one of OpenAI's component schemas (chat/models subset). */
export const conforms = (schemaName: string, value: unknown): boolean => chat.conforms(schemaName, value)

/**
 * The key of a cached answer: the SHA-256 of the canonical JSON of the request (object keys sorted, recursively;
 * JSON.stringify's escaping, so equal values always give equal text) without the fields that do not change the
 * answer, together with the public model and, unless the model shares its cache, the caller's key id — so that
 * tenants never read each other's entries.
 */
import { hash } from "node:crypto"

/** Top-level request fields that do not change the answer: how it is delivered, who asked, what is logged. */
export const ignoredFields: ReadonlySet<string> = new Set(["stream", "stream_options", "user", "metadata", "store", "service_tier"])

/** Appends the canonical JSON of `value` to `out`; `skip` names fields of the top object left out. */
const write = (value: unknown, out: Array<string>, skip: ReadonlySet<string> | undefined): void => {
  if (value === null || typeof value !== "object") {
    // undefined (an absent optional field) and functions never reach here from JSON; written as JSON.stringify would.
    out.push(JSON.stringify(value) ?? "null")
    return
  }
  if (Array.isArray(value)) {
    out.push("[")
    for (let index = 0; index < value.length; index++) {
      if (index > 0) out.push(",")
      write(value[index] === undefined ? null : value[index], out, undefined)
    }
    out.push("]")
    return
  }
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).sort()
  out.push("{")
  let first = true
  for (const key of keys) {
    const field = record[key]
    if (field === undefined || skip?.has(key) === true) continue
    if (!first) out.push(",")
    first = false
    out.push(JSON.stringify(key), ":")
    write(field, out, undefined)
  }
  out.push("}")
}

/** The canonical JSON text of a value: keys sorted at every level, absent (undefined) fields left out. */
export const canonicalJson = (value: unknown, skip?: ReadonlySet<string>): string => {
  const out: Array<string> = []
  write(value, out, skip)
  return out.join("")
}

/**
 * The cache key of `request` for the public `model`; `tenant` is the caller's key id, or `undefined` for a model
 * whose cache is shared. Versioned: a change of the key's recipe never reads entries made by the old one.
 */
export const cacheKey = (request: object, model: string, tenant: string | undefined): string => {
  const out = [`llmp-cache-v1\n${JSON.stringify(model)}\n${tenant === undefined ? "*shared*" : JSON.stringify(tenant)}\n`]
  write(request, out, ignoredFields)
  // One-shot: a Hash object with its update/digest calls cost a third more than the hashing itself on a small request.
  return hash("sha256", out.join(""), "hex")
}

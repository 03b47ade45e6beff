/**
 * Virtual keys: one per service of the ecosystem, each with the models it may use and its limits. A key is known by
 * the SHA-256 of its secret only; the secret itself is read from the environment once and never kept.
 */
import { Config, Effect, Redacted } from "effect"
import { createHash } from "node:crypto"
import { RegistryError } from "../Router/RegistryFile.js"
import type { KeyEntry } from "../Router/RegistryFile.js"
import type { KeyLimits } from "./Store.js"

/** A virtual key, as governance uses it. */
export interface VirtualKey {
  /** What logs, metrics and usage show; never the secret. */
  readonly id: string
  /** The model patterns it may use, as written (`undefined`: every model). */
  readonly models: ReadonlyArray<string> | undefined
  readonly limits: KeyLimits
  /** Whether it may use the public model `name`. */
  readonly allows: (name: string) => boolean
}

/** The keys of one registry generation, found by the digest of the presented secret. */
export interface KeyRing {
  readonly list: ReadonlyArray<VirtualKey>
  /** Hex SHA-256 of a secret → its key. */
  readonly byDigest: ReadonlyMap<string, VirtualKey>
}

export const emptyKeyRing: KeyRing = { list: [], byDigest: new Map() }

/** Hex SHA-256 of a secret. */
export const sha256Hex = (secret: string): string => createHash("sha256").update(secret).digest("hex")

const escapeRegExp = (text: string) => text.replace(/[.+?^${}()|[\]\\]/g, "\\$&")

/** A matcher for model patterns where `*` matches any run of characters (and nothing else is special). */
export const modelMatcher = (patterns: ReadonlyArray<string> | undefined): ((name: string) => boolean) => {
  if (patterns === undefined) return () => true
  const exact = new Set(patterns.filter((pattern) => !pattern.includes("*")))
  const wildcards = patterns
    .filter((pattern) => pattern.includes("*"))
    .map((pattern) => new RegExp(`^${pattern.split("*").map(escapeRegExp).join(".*")}$`, "s"))
  return (name) => exact.has(name) || wildcards.some((pattern) => pattern.test(name))
}

const limitsOf = (entry: KeyEntry): KeyLimits => ({
  rpm: entry.limits?.rpm,
  tpm: entry.limits?.tpm,
  maxParallel: entry.limits?.max_parallel,
  budget: entry.limits?.budget
})

/** Whether a key has any limit at all. */
export const hasLimits = (limits: KeyLimits): boolean =>
  limits.rpm !== undefined || limits.tpm !== undefined || limits.maxParallel !== undefined || limits.budget !== undefined

/**
 * Builds the key ring of a registry file: each key's digest from `key_sha256`, or from the secret in `key_env`
 * (which must be set). Two keys with one secret, or a key equal to the operator key, are refused.
 */
export const makeKeyRing = (
  entries: ReadonlyArray<KeyEntry>,
  operatorKey: Redacted.Redacted<string> | undefined
): Effect.Effect<KeyRing, RegistryError> =>
  Effect.gen(function* () {
    const operatorDigest = operatorKey === undefined ? undefined : sha256Hex(Redacted.value(operatorKey))
    const byDigest = new Map<string, VirtualKey>()
    const list: Array<VirtualKey> = []
    for (const [index, entry] of entries.entries()) {
      const where = `keys[${index}] (${entry.id})`
      const digest =
        entry.key_sha256 !== undefined
          ? entry.key_sha256.toLowerCase()
          : yield* Config.redacted(entry.key_env ?? "").pipe(
              Effect.map((secret) => sha256Hex(Redacted.value(secret))),
              Effect.mapError(
                () => new RegistryError({ message: `${where}.key_env: environment variable ${entry.key_env} is not set` })
              )
            )
      if (digest === operatorDigest) {
        return yield* Effect.fail(new RegistryError({ message: `${where}: its secret is INTERNAL_API_KEY; give each service its own` }))
      }
      if (byDigest.has(digest)) {
        return yield* Effect.fail(new RegistryError({ message: `${where}: its secret is also ${byDigest.get(digest)?.id}'s` }))
      }
      const key: VirtualKey = { id: entry.id, models: entry.models, limits: limitsOf(entry), allows: modelMatcher(entry.models) }
      byDigest.set(digest, key)
      list.push(key)
    }
    return { list, byDigest }
  })

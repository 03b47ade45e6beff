/**
 * The property every plain-request recogniser (chat, Messages, Responses) is held to: whatever it accepts, the
 * Schema decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests (wrong
 * types, nulls, extremes, added and removed fields, ±Infinity and -0 as JSON can carry them) are its inputs.
 */
import { expect } from "@effect/vitest"
import { Either } from "effect"
import type { ParseResult } from "effect"
import fc from "fast-check"
import { jsonText, mutatedJson } from "./FuzzArbitraries.js"

/** A request as a client could send it: one of `bases`, or one with hostile edits, read back from JSON text. */
export const requestsFrom = (bases: ReadonlyArray<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof(fc.constantFrom(...bases), fc.constantFrom(...bases).chain((base) => mutatedJson(base, 3))).map((value) => JSON.parse(jsonText(value)) as unknown)

/**
 * Checks `recognise` against `decode` over 5000 variations of `bases`, and that it is no no-op: more than 500 of
 * them take it.
 */
export const expectAgreesWithSchema = <A>(
  recognise: (payload: unknown) => A | undefined,
  decode: (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>,
  bases: ReadonlyArray<unknown>
): void => {
  let accepted = 0
  fc.assert(
    fc.property(requestsFrom(bases), (payload) => {
      const plain = recognise(payload)
      if (plain === undefined) return
      accepted++
      const decoded = decode(payload)
      expect(Either.isRight(decoded)).toBe(true)
      if (Either.isRight(decoded)) expect(plain).toStrictEqual(decoded.right)
    }),
    { numRuns: 5000 }
  )
  expect(accepted).toBeGreaterThan(500)
}

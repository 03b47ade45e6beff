/**
 * The nesting bound of JSON bodies (client requests and upstream answers), read off the text: it must agree with the
 * depth of the value the text parses to, strings with brackets, quotes and backslashes in them included.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { nestsDeeperThan, parseBoundedJson } from "../../../src/Providers/Upstream/Transport.js"

/** The nesting depth of a parsed value: 0 for a scalar, 1 for a flat object or array. */
const depthOf = (value: unknown): number => {
  if (typeof value !== "object" || value === null) return 0
  let deepest = 0
  for (const item of Array.isArray(value) ? value : Object.values(value)) deepest = Math.max(deepest, depthOf(item))
  return deepest + 1
}

/** Strings made of what could fool a text reader: brackets, quotes, backslashes, escapes. */
const trickyString = fc.string({ unit: fc.constantFrom("[", "]", "{", "}", '"', "\\", "\\\\", '\\"', "a", " ", "\n", "é", "😀") })

const trickyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    trickyString,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(trickyString, tie("value"), { maxKeys: 4 })
  )
})).value

describe("JSON nesting bound", () => {
  it("agrees with the parsed value's depth for every limit, whatever its strings hold", () =>
    fc.assert(
      fc.property(trickyJson, fc.integer({ min: 0, max: 8 }), fc.constantFrom(0, 2), (value, limit, indent) => {
        const text = JSON.stringify(value, null, indent)
        const depth = depthOf(JSON.parse(text))
        // Short texts are not read: the bound only ever answers for texts that could nest that deep.
        expect(nestsDeeperThan(text, limit)).toBe(depth > limit)
      }),
      { numRuns: 2000 }
    ))

  it("refuses a deep answer and keeps a sane one", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000)
    expect(parseBoundedJson(deep)).toBeUndefined()
    const nested = { a: [{ b: [{ c: "]]]]}}}}\\\"[[[" }] }] }
    expect(parseBoundedJson(JSON.stringify(nested))).toEqual(nested)
    expect(parseBoundedJson("{not json")).toBeUndefined()
  })
})

/**
 * The client-input property the endpoint fuzz suites share: hostile JSON bodies posted to the gateway over a raw
 * socket must each be answered — served (200) or refused with a 4xx (400, 404, 413) — never dropped and never a 5xx.
 * What a served or refused answer must look like is each endpoint's own `check`.
 */
import { expect } from "@effect/vitest"
import fc from "fast-check"
import { describeOutcome, rawRequest, requestBytes } from "./FuzzHttp.js"
import { fuzzRuns } from "./FuzzSpec.js"

/** A case's request: the path it is posted to and its body. */
export interface PostedBody {
  readonly path: string
  readonly body: Uint8Array
}

/**
 * Posts every case of `cases` to the gateway on `port` with the `auth` header, and holds each answer to `check`
 * (given the case, the status and the body's text; it says whether the answer was served or refused). A failure
 * names the whole answer. With 30 runs or more, both kinds of answer must have been seen.
 */
export const expectEveryBodyAnswered = async <C>(
  port: number,
  auth: readonly [string, string],
  cases: fc.Arbitrary<C>,
  requestOf: (value: C) => PostedBody,
  check: (value: C, status: number, text: string) => "served" | "refused"
): Promise<void> => {
  const tally = { served: 0, refused: 0 }
  await fc.assert(
    fc.asyncProperty(cases, async (value) => {
      const { path, body } = requestOf(value)
      const outcome = await rawRequest(
        port,
        requestBytes(`POST ${path} HTTP/1.1`, [["host", "127.0.0.1"], auth, ["content-type", "application/json"], ["content-length", String(body.length)]], body)
      )
      if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
      try {
        expect([200, 400, 404, 413]).toContain(outcome.status)
        tally[check(value, outcome.status, outcome.body.toString("utf8"))]++
      } catch (error) {
        throw new Error(`${String(error)}\nanswer: ${describeOutcome(outcome)}`)
      }
    }),
    { numRuns: fuzzRuns }
  )
  if (fuzzRuns >= 30) {
    expect(tally.served).toBeGreaterThan(0)
    expect(tally.refused).toBeGreaterThan(0)
  }
}

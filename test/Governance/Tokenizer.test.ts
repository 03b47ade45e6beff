/**
 * The worker tokenizer: exact o200k_base counts for ordinary text; a long run without whitespace cut into pieces (whole,
 * byte-pair encoding costs the square of its length: minutes for a megabyte); a bounded queue, past which counts
 * are estimated at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { countTokens } from "gpt-tokenizer/encoding/o200k_base"
import { estimatedTokens, makeWorkerTokenizer } from "../../src/Governance/Tokenizer.js"

const withTokenizer = <A, E>(options: Parameters<typeof makeWorkerTokenizer>[0], body: (tokenizer: ReturnType<typeof makeWorkerTokenizer>) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(Effect.sync(() => makeWorkerTokenizer(options)), body, (tokenizer) => Effect.promise(tokenizer.close))

describe("the worker tokenizer", () => {
  it.live("counts ordinary text exactly as o200k_base does", () =>
    withTokenizer({}, (tokenizer) =>
      Effect.gen(function* () {
        const texts = ["Hello, world!", "Ein Satz auf Deutsch, mit Umlauten: äöü.", "def f(x):\n    return x * 2\n", ""]
        expect(yield* tokenizer.count(texts)).toEqual(texts.map((text) => countTokens(text)))
      })
    )
  )

  it.live("counts a 400 000-character run without whitespace, and text around a long blob, within 2 % of the exact count", () =>
    withTokenizer({}, (tokenizer) =>
      Effect.gen(function* () {
        // Whole, half this run took 28 s on this machine (and the cost grows with its square); it is 4 characters a token.
        const [run] = yield* tokenizer.count(["c".repeat(400_000)])
        expect(Math.abs(run! - 100_000) / 100_000).toBeLessThan(0.02)
        const blob = Array.from({ length: 3000 }, (_, index) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(index * 7919) % 64]).join("")
        const text = `An image follows: data:image/png;base64,${blob} and that was it.`
        const exact = countTokens(text)
        const [counted] = yield* tokenizer.count([text])
        expect(Math.abs(counted! - exact) / exact).toBeLessThan(0.02)
      })
    )
  )

  it.live("past its bound on characters waiting, estimates at once; once the worker catches up, counts exactly again", () =>
    withTokenizer({ maxPendingChars: 1000 }, (tokenizer) =>
      Effect.gen(function* () {
        const text = "hello world ".repeat(17)
        expect(countTokens(text)).not.toBe(estimatedTokens(text))
        // Run at once (not scheduled): its characters are waiting before the next count asks.
        const first = Effect.runFork(tokenizer.count(["x ".repeat(450)]))
        // 900 characters wait for the worker (which loads its tables first): 204 more would pass 1000.
        expect(yield* tokenizer.count([text])).toEqual([estimatedTokens(text)])
        yield* Fiber.join(first)
        expect(yield* tokenizer.count([text])).toEqual([countTokens(text)])
      })
    )
  )
})

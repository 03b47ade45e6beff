import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { deflateRawSync } from "node:zlib"
import type { ThinkingBlock } from "../../src/OpenAi/Schemas.js"
import { baseOf, carry, maxCarriedIdChars, uncarry } from "../../src/Providers/ToolCallCarriage.js"

const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url))
const json = (path: string): unknown => JSON.parse(readFileSync(`${fixtures}${path}`, "utf8"))

interface GeminiPart {
  readonly functionCall?: unknown
  readonly thoughtSignature?: string
}
/** The thought signature Gemini 2.5 Pro gave its function call (vertexai-sdk-test-data recording). */
const recordedSignature = (
  json("gemini/vertexai-sdk-test-data/googleai/unary-success-thinking-function-call-thought-summary-signature.json") as {
    candidates: ReadonlyArray<{ content: { parts: ReadonlyArray<GeminiPart> } }>
  }
).candidates[0]!.content.parts.find((part) => part.functionCall !== undefined)!.thoughtSignature!

/** The signed thinking block Claude gave before its tool call (AI SDK recording). */
const recordedThinking = (
  json("anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json") as { content: ReadonlyArray<ThinkingBlock | { type: "tool_use" }> }
).content.filter((block): block is ThinkingBlock => block.type === "thinking")

/** Forges an id of the carriage shape with a correct check, around any payload. */
const forge = (base: string, tag: string, payloadJson: string): string => {
  const payload = deflateRawSync(Buffer.from(payloadJson, "utf8")).toString("base64url")
  const head = `${base}.${tag}.${payload}`
  return `${head}.${createHash("sha256").update(head).digest("base64url").slice(0, 16)}`
}

describe("ToolCallCarriage", () => {
  it("carries a recorded Gemini thought signature in the id and gives it back exactly", () => {
    expect(recordedSignature.length).toBeGreaterThan(2000)
    const id = carry("call_abc_0_0", { kind: "gemini", thoughtSignature: recordedSignature })
    expect(id.startsWith("call_abc_0_0.lp1g.")).toBe(true)
    expect(id).toMatch(/^[A-Za-z0-9_.-]+$/)
    expect(id.length).toBeLessThan(maxCarriedIdChars)
    expect(uncarry(id)).toStrictEqual({ base: "call_abc_0_0", carried: { kind: "gemini", thoughtSignature: recordedSignature } })
  })

  it("carries recorded Anthropic thinking blocks and a redacted one in the id", () => {
    const blocks: ReadonlyArray<ThinkingBlock> = [...recordedThinking, { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT" }]
    const id = carry("toolu_017R7ACrx7NF7sLDDtvdQ1u9", { kind: "anthropic", thinkingBlocks: blocks })
    expect(uncarry(id)).toStrictEqual({ base: "toolu_017R7ACrx7NF7sLDDtvdQ1u9", carried: { kind: "anthropic", thinkingBlocks: blocks } })
  })

  it("gives the upstream part of an id by its shape alone, as uncarry does", () => {
    const id = carry("call_abc_0_0", { kind: "gemini", thoughtSignature: recordedSignature })
    expect(baseOf(id)).toBe("call_abc_0_0")
    expect(baseOf(`${id.slice(0, -1)}${id.endsWith("A") ? "B" : "A"}`)).toBe("call_abc_0_0")
    for (const plain of ["toolu_01A09q90qw90lq917835lq9", "a.b.c.d", "x.lp1g.y"]) expect(baseOf(plain)).toBe(plain)
  })

  it("reads an id without a carriage as all base", () => {
    for (const id of ["toolu_01A09q90qw90lq917835lq9", "call_abc_0_0", "a.b.c.d", "x.lp1g.y", "", ".lp1g.abc.0123456789abcdef"]) {
      expect(uncarry(id)).toStrictEqual({ base: id })
    }
  })

  it("drops a carriage that was altered, cut, or whose check fails, keeping only the upstream id", () => {
    const id = carry("call_abc_0_0", { kind: "gemini", thoughtSignature: recordedSignature })
    const dot = id.lastIndexOf(".")
    const flipped = `${id.slice(0, dot - 5)}${id[dot - 5] === "A" ? "B" : "A"}${id.slice(dot - 4)}`
    expect(uncarry(flipped)).toStrictEqual({ base: "call_abc_0_0" })
    expect(uncarry(`other${id}`).carried).toBeUndefined()
    expect(uncarry(id.slice(0, -1))).toStrictEqual({ base: id.slice(0, -1) })
    expect(uncarry(id.replace(".lp1g.", ".lp1a.")).carried).toBeUndefined()
  })

  it("refuses forged carriages whose payload is not the kind's shape, is not JSON, or inflates past its bound", () => {
    expect(uncarry(forge("call_1", "lp1g", JSON.stringify({ s: "not base64 at all!" })))).toStrictEqual({ base: "call_1" })
    expect(uncarry(forge("call_1", "lp1g", JSON.stringify({ s: 42 })))).toStrictEqual({ base: "call_1" })
    expect(uncarry(forge("call_1", "lp1a", JSON.stringify({ b: [] })))).toStrictEqual({ base: "call_1" })
    expect(uncarry(forge("call_1", "lp1a", JSON.stringify({ b: [{ type: "tool_use", id: "x" }] })))).toStrictEqual({ base: "call_1" })
    expect(uncarry(forge("call_1", "lp1a", "{not json"))).toStrictEqual({ base: "call_1" })
    // 1 MiB of spaces deflates to about a kilobyte: it fits in an id, but is refused when inflating.
    const bomb = forge("call_1", "lp1g", `{"s":"AAAA"${" ".repeat(1024 * 1024)}}`)
    expect(bomb.length).toBeLessThan(maxCarriedIdChars)
    expect(uncarry(bomb)).toStrictEqual({ base: "call_1" })
    // A valid forged carriage is accepted: it is no more trusted than a field the client could send itself.
    expect(uncarry(forge("call_1", "lp1g", JSON.stringify({ s: "c2lnbmF0dXJl" }))).carried).toStrictEqual({ kind: "gemini", thoughtSignature: "c2lnbmF0dXJl" })
  })

  it("does not carry what would make the id longer than the bound, and does not read ids past it", () => {
    // 40 000 characters that hardly compress (base64 of SHA-512 digests).
    const incompressible = Array.from({ length: 500 }, (_, i) => createHash("sha512").update(String(i)).digest("base64").slice(0, 80)).join("")
    expect(incompressible.length).toBe(40_000)
    expect(carry("toolu_1", { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: incompressible, signature: "c2ln" }] }) === "toolu_1").toBe(true)
    expect(carry("toolu_1", { kind: "gemini", thoughtSignature: incompressible }) === "toolu_1").toBe(true)
    // The same length of ordinary, repetitive thinking compresses and is carried.
    const repetitive = "I should call the tool now. ".repeat(1500)
    const carried = carry("toolu_1", { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: repetitive, signature: "c2ln" }] })
    expect(carried.length).toBeLessThanOrEqual(maxCarriedIdChars)
    expect(uncarry(carried).carried).toStrictEqual({ kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: repetitive, signature: "c2ln" }] })
    expect(carry("x".repeat(257), { kind: "gemini", thoughtSignature: "c2ln" })).toBe("x".repeat(257))
    const long = `${"a".repeat(maxCarriedIdChars)}.lp1g.abc.0123456789abcdef`
    expect(uncarry(long)).toStrictEqual({ base: long })
  })

  it("round-trips any signature and any thinking text (property)", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
        fc.base64String({ minLength: 4, maxLength: 4000 }),
        fc.string({ maxLength: 2000 }),
        (base, signature, thinking) => {
          const gemini = carry(base, { kind: "gemini", thoughtSignature: signature })
          expect(uncarry(gemini)).toStrictEqual({ base, carried: { kind: "gemini", thoughtSignature: signature } })
          const blocks: ReadonlyArray<ThinkingBlock> = [{ type: "thinking", thinking, signature }]
          expect(uncarry(carry(base, { kind: "anthropic", thinkingBlocks: blocks }))).toStrictEqual({ base, carried: { kind: "anthropic", thinkingBlocks: blocks } })
        }
      ),
      { numRuns: Number(process.env["FUZZ_RUNS"] ?? 50) }
    )
  })

  it("never throws and never yields a carriage for arbitrary text (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), (head, tail) => {
        const id = `${head}.lp1g.${tail}`
        const read = uncarry(id)
        expect(read.carried).toBeUndefined()
        expect(id.startsWith(read.base)).toBe(true)
      }),
      { numRuns: Number(process.env["FUZZ_RUNS"] ?? 50) }
    )
  })
})

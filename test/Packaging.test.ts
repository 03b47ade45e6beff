/**
 * The ways the gateway is started agree: `npm start` and the Docker image run `dist/main.js` with the same node
 * flags, so that the benchmark (which reads them from `npm start`) measures what the image runs.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"

const root = new URL("../", import.meta.url)
const manifest = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { scripts: Record<string, string> }
const dockerfile = readFileSync(new URL("Dockerfile", root), "utf8")

/** The node flags before `dist/main.js` in a command line. */
const flagsOf = (words: ReadonlyArray<string>): ReadonlyArray<string> => {
  expect(words[0]).toBe("node")
  expect(words.at(-1)).toBe("dist/main.js")
  return words.slice(1, -1)
}

describe("start commands", () => {
  it("runs the image's CMD with the node flags of npm start", () => {
    const startFlags = flagsOf(manifest.scripts["start"]!.trim().split(/\s+/))
    const cmd = /^CMD (\[.*\])\s*$/m.exec(dockerfile.split("\n").filter((line) => !line.startsWith("  ")).join("\n"))?.[1]
    expect(cmd).toBeDefined()
    const imageFlags = flagsOf(JSON.parse(cmd ?? "[]") as ReadonlyArray<string>)
    expect(imageFlags).toEqual(startFlags)
    // the garbage-collector settings the Performance section documents
    expect(startFlags).toEqual(["--max-semi-space-size=2", "--no-allocation-site-pretenuring"])
  })
})

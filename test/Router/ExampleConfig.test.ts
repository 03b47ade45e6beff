/**
 * config/models.example.yaml is what users copy: it must decode with the registry's own decoder and show
 * every provider kind, weighted deployments and fallbacks.
 */
import { Either, Schema } from "effect"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import * as Yaml from "yaml"
import { CacheSettings, ResponsesSettings, RouterSettings, decodeRegistry } from "../../src/Router/RegistryFile.js"
import type { RegistryFile } from "../../src/Router/RegistryFile.js"

const exampleUrl = new URL("../../config/models.example.yaml", import.meta.url)
const envExampleUrl = new URL("../../.env.example", import.meta.url)

const decodeExample = (): RegistryFile => {
  const decoded = decodeRegistry(Yaml.parse(readFileSync(exampleUrl, "utf8")) as unknown, "config/models.example.yaml")
  if (Either.isLeft(decoded)) throw new Error(decoded.left.message)
  return decoded.right
}

describe("config/models.example.yaml", () => {
  it("is a valid model registry", () => {
    expect(decodeExample().models.length).toBeGreaterThan(0)
  })

  it("shows every provider kind", () => {
    const kinds = new Set(decodeExample().models.map((entry) => entry.provider))
    expect([...kinds].sort()).toEqual(["anthropic", "gemini", "mock", "openai"])
  })

  it("balances one name over two weighted deployments", () => {
    const { models } = decodeExample()
    const counts = new Map<string, number>()
    for (const entry of models) counts.set(entry.name, (counts.get(entry.name) ?? 0) + 1)
    const balanced = [...counts].filter(([, count]) => count > 1).map(([name]) => name)
    expect(balanced).toHaveLength(1)
    const deployments = models.filter((entry) => entry.name === balanced[0])
    expect(deployments.every((entry) => entry.weight !== undefined)).toBe(true)
    expect(new Set(deployments.map((entry) => entry.base_url)).size).toBe(2)
  })

  it("has the documented entries", () => {
    const { models } = decodeExample()
    const openAi = models.find((entry) => entry.base_url === "https://api.openai.com/v1")
    expect(openAi).toMatchObject({ provider: "openai", api_key_env: "OPENAI_API_KEY", fallbacks: ["claude"] })
    expect(models.find((entry) => entry.base_url === "http://localhost:11434/v1")?.api_key_env).toBeUndefined()
    expect(models.find((entry) => entry.name === "claude")).toMatchObject({
      provider: "anthropic",
      model: "claude-sonnet-4-5",
      api_key_env: "ANTHROPIC_API_KEY"
    })
    expect(models.find((entry) => entry.provider === "gemini")).toMatchObject({
      model: "gemini-2.5-flash",
      api_key_env: "GEMINI_API_KEY"
    })
    expect(models.find((entry) => entry.provider === "mock")?.name).toBe("mock")
  })

  it("spells out the default settings", () => {
    const raw = Yaml.parse(readFileSync(exampleUrl, "utf8")) as { settings?: unknown }
    expect(raw.settings).toEqual({
      ...Schema.encodeSync(RouterSettings)(Schema.decodeSync(RouterSettings)({})),
      cache: Schema.encodeSync(CacheSettings)(Schema.decodeSync(CacheSettings)({})),
      responses: Schema.encodeSync(ResponsesSettings)(Schema.decodeSync(ResponsesSettings)({}))
    })
  })

  it("names only upstream key variables that .env.example documents", () => {
    const envExample = readFileSync(envExampleUrl, "utf8")
    const keyVariables = decodeExample().models.flatMap((entry) => (entry.api_key_env === undefined ? [] : [entry.api_key_env]))
    expect(keyVariables.length).toBeGreaterThan(0)
    for (const name of keyVariables) expect(envExample).toMatch(new RegExp(`^# ${name}=`, "m"))
  })
})

describe(".env.example", () => {
  it("documents every variable src/Config.ts reads", () => {
    const configSource = readFileSync(new URL("../../src/Config.ts", import.meta.url), "utf8")
    const read = [...configSource.matchAll(/(?<!withDefault)\(\s*"([A-Z][A-Z0-9_]*)"/g)].map((match) => match[1])
    expect(read).toContain("SHUTDOWN_GRACE_MS")
    const envExample = readFileSync(envExampleUrl, "utf8")
    for (const name of read) expect(envExample, name).toMatch(new RegExp(`^(# )?${name}=`, "m"))
  })
})

import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import { afterAll } from "vitest"
import * as Yaml from "yaml"
import { fromFile } from "../../src/Router/Registry.js"
import { builtInRegistry, decodeRegistry, readRegistryFile, RegistryError } from "../../src/Router/RegistryFile.js"
import type { RegistryFile } from "../../src/Router/RegistryFile.js"

const example = `
models:
  - name: gpt-4o
    provider: openai
    model: gpt-4o-2024-08-06
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    weight: 2
    fallbacks: [claude]
  - name: claude
    provider: anthropic
    model: claude-sonnet-4-5
    api_key_env: ANTHROPIC_API_KEY
settings:
  retry: { max_retries: 3 }
  timeouts: { first_token_ms: 30000 }
`

const source = "CONFIG_FILE ./models.yaml"

const decodeYaml = (text: string) => decodeRegistry(Yaml.parse(text), source)

const decoded = (text: string): RegistryFile => {
  const result = decodeYaml(text)
  if (Either.isLeft(result)) throw new Error(`expected a valid registry, got: ${result.left.message}`)
  return result.right
}

const failure = (text: string): string => {
  const result = decodeYaml(text)
  if (Either.isRight(result)) throw new Error("expected the registry to be refused")
  expect(result.left).toBeInstanceOf(RegistryError)
  expect(result.left.message).toContain(`${source} is not a valid model registry`)
  return result.left.message
}

/** The example with one line of the first entry replaced (or dropped, with `undefined`). */
const withLine = (line: string, replacement: string | undefined): string => {
  expect(example).toContain(line)
  return example.replace(`${line}\n`, replacement === undefined ? "" : `${replacement}\n`)
}

describe("decodeRegistry", () => {
  it("decodes the README example, filling the defaults", () => {
    const registry = decoded(example)
    expect(registry.models).toEqual([
      {
        name: "gpt-4o",
        provider: "openai",
        model: "gpt-4o-2024-08-06",
        base_url: "https://api.openai.com/v1",
        api_key_env: "OPENAI_API_KEY",
        weight: 2,
        fallbacks: ["claude"]
      },
      { name: "claude", provider: "anthropic", model: "claude-sonnet-4-5", api_key_env: "ANTHROPIC_API_KEY" }
    ])
    expect(registry.settings).toEqual({
      retry: { max_retries: 3, initial_delay_ms: 200, max_delay_ms: 8000 },
      timeouts: { request_ms: 600_000, first_token_ms: 30_000 },
      cooldown: { failures: 3, duration_ms: 30_000 },
      limits: { on_store_failure: "open" },
      cache: { max_entries: 10000, max_bytes: 268435456, max_entry_bytes: 4194304 },
      responses: { ttl_s: 2592000, max_entries: 10000, max_bytes: 268435456, max_entry_bytes: 4194304 }
    })
    expect(registry.keys).toEqual([])
  })

  it("fills every setting when settings is absent", () => {
    const registry = decoded("models:\n  - { name: m, provider: mock }\n")
    expect(registry.settings).toEqual({
      retry: { max_retries: 2, initial_delay_ms: 200, max_delay_ms: 8000 },
      timeouts: { request_ms: 600_000, first_token_ms: 60_000 },
      cooldown: { failures: 3, duration_ms: 30_000 },
      limits: { on_store_failure: "open" },
      cache: { max_entries: 10000, max_bytes: 268435456, max_entry_bytes: 4194304 },
      responses: { ttl_s: 2592000, max_entries: 10000, max_bytes: 268435456, max_entry_bytes: 4194304 }
    })
    expect(builtInRegistry.settings).toEqual(registry.settings)
  })

  it("accepts the same document as JSON", () => {
    const registry = decoded(JSON.stringify(Yaml.parse(example)))
    expect(registry).toEqual(decoded(example))
  })

  it("names the entry and the field of an unknown provider", () => {
    const message = failure(example.replace("provider: anthropic", "provider: anthropics"))
    expect(message).toContain(`models[1] (claude).provider: Expected "openai" | "anthropic" | "gemini" | "mock", actual "anthropics"`)
    expect(message.split("\n")).toHaveLength(2)
  })

  it("names a missing provider", () => {
    expect(failure(withLine("    provider: openai", undefined))).toContain("models[0] (gpt-4o).provider: is missing")
  })

  it("refuses a base_url that is not http(s)", () => {
    const message = failure(withLine("    base_url: https://api.openai.com/v1", "    base_url: ftp://api.openai.com"))
    expect(message).toContain("models[0] (gpt-4o).base_url: must be an http(s) URL")
    expect(message).not.toContain("Expected undefined")
  })

  it("refuses a negative or zero weight", () => {
    expect(failure(withLine("    weight: 2", "    weight: -1"))).toContain("models[0] (gpt-4o).weight")
    expect(failure(withLine("    weight: 2", "    weight: 0"))).toContain("models[0] (gpt-4o).weight")
  })

  it("refuses an api_key_env that is not a variable name", () => {
    expect(failure(withLine("    api_key_env: OPENAI_API_KEY", "    api_key_env: sk-abc123"))).toContain(
      "models[0] (gpt-4o).api_key_env: must be an environment variable name"
    )
  })

  it("refuses a fallback to an unknown name", () => {
    expect(failure(withLine("    fallbacks: [claude]", "    fallbacks: [claude, gpt-5]"))).toContain(
      `models[0] (gpt-4o).fallbacks: "gpt-5" is not a model name in this file`
    )
  })

  it("refuses a fallback to the model itself", () => {
    expect(failure(withLine("    fallbacks: [claude]", "    fallbacks: [gpt-4o]"))).toContain(
      `models[0] (gpt-4o).fallbacks: "gpt-4o" is the model itself`
    )
  })

  it("refuses unknown keys in an entry, in settings and at the top", () => {
    expect(failure(withLine("    weight: 2", "    weight: 2\n    api_key: sk-secret"))).toContain(
      "models[0] (gpt-4o).api_key: is unexpected"
    )
    expect(failure(example.replace("retry: { max_retries: 3 }", "retry: { max_retries: 3, backoff: 2 }"))).toContain(
      "settings.retry.backoff: is unexpected"
    )
    expect(failure(example.replace("settings:", "setings:"))).toContain("setings: is unexpected")
  })

  it("refuses settings out of range, naming each", () => {
    const message = failure(
      example
        .replace("retry: { max_retries: 3 }", "retry: { max_retries: 11, initial_delay_ms: -1 }")
        .replace("first_token_ms: 30000", "first_token_ms: 0")
    )
    expect(message).toContain("settings.retry.max_retries")
    expect(message).toContain("settings.retry.initial_delay_ms")
    expect(message).toContain("settings.timeouts.first_token_ms")
  })

  it("reports every problem at once", () => {
    const message = failure(
      example.replace("provider: anthropic", "provider: nope").replace("weight: 2", "weight: -2")
    )
    expect(message).toContain("models[0] (gpt-4o).weight")
    expect(message).toContain("models[1] (claude).provider")
  })

  it("refuses an empty model list and a document that is not a mapping", () => {
    expect(failure("models: []\n")).toContain("models: must list at least one model")
    expect(failure("settings: {}\n")).toContain("models: is missing")
    expect(failure("just some text\n")).toContain("(root)")
    expect(failure("")).toContain("(root)")
  })
})

describe("cache and hedge", () => {
  it("decode per model with their defaults, and settings.cache bounds", () => {
    const registry = decoded(
      "models:\n  - { name: m, provider: mock, cache: { ttl_s: 60 }, hedge: { after_ms: 800 } }\n  - { name: m, provider: mock }\n" +
        "settings:\n  cache: { max_entries: 5 }\n"
    )
    expect(registry.models[0]).toMatchObject({ cache: { ttl_s: 60, shared: false }, hedge: { after_ms: 800, max: 1 } })
    expect(registry.settings.cache).toEqual({ max_entries: 5, max_bytes: 268435456, max_entry_bytes: 4194304 })
  })

  it("refuse a ttl or a delay that is not a positive integer, and two entries of one name that disagree", () => {
    expect(failure("models:\n  - { name: m, provider: mock, cache: { ttl_s: 0 } }\n")).toContain("models[0] (m).cache.ttl_s")
    expect(failure("models:\n  - { name: m, provider: mock, hedge: { after_ms: 10, max: 0 } }\n")).toContain("models[0] (m).hedge.max")
    expect(failure("models:\n  - { name: m, provider: mock, cache: { ttl_s: 1, extra: 1 } }\n")).toContain("models[0] (m).cache.extra")
    expect(
      failure("models:\n  - { name: m, provider: mock, cache: { ttl_s: 60 } }\n  - { name: m, provider: mock, cache: { ttl_s: 61 } }\n")
    ).toContain('models[1] (m).cache: differs from another entry of "m"')
  })

  it("api: responses on openai entries only, chat or responses; settings.responses bounds", () => {
    const registry = decoded("models:\n  - { name: g, provider: openai, api: responses }\n  - { name: h, provider: openai, api: chat }\nsettings:\n  responses: { ttl_s: 60 }\n")
    expect(registry.models.map((entry) => entry.api)).toEqual(["responses", "chat"])
    expect(registry.settings.responses).toEqual({ ttl_s: 60, max_entries: 10000, max_bytes: 268435456, max_entry_bytes: 4194304 })
    expect(failure("models:\n  - { name: c, provider: anthropic, api: responses }\n")).toContain('models[0] (c).api: "responses" is for openai deployments only')
    expect(failure("models:\n  - { name: g, provider: openai, api: messages }\n")).toContain("models[0] (g).api")
    expect(failure("models:\n  - { name: m, provider: mock }\nsettings:\n  responses: { ttl_s: 0 }\n")).toContain("settings.responses.ttl_s")
  })
})

describe("readRegistryFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "llm-proxy-registry-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const write = (name: string, text: string): string => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  const read = (path: string) => readRegistryFile(path).pipe(Effect.provide(NodeFileSystem.layer))

  it.effect("reads YAML", () =>
    Effect.map(read(write("models.yaml", example)), (registry) => {
      expect(registry.models.map((entry) => entry.name)).toEqual(["gpt-4o", "claude"])
      expect(registry.settings.retry.max_retries).toBe(3)
    }))

  it.effect("reads JSON", () =>
    Effect.map(read(write("models.json", JSON.stringify(Yaml.parse(example), null, 2))), (registry) => {
      expect(registry.models[0]?.fallbacks).toEqual(["claude"])
      expect(registry.settings.timeouts.first_token_ms).toBe(30_000)
    }))

  it.effect("names CONFIG_FILE and the path when the file cannot be read", () =>
    Effect.gen(function* () {
      const path = join(dir, "missing.yaml")
      const error = yield* Effect.flip(read(path))
      expect(error).toBeInstanceOf(RegistryError)
      expect(error.message).toContain(`CONFIG_FILE ${path} cannot be read`)
      const directory = yield* Effect.flip(read(dir))
      expect(directory.message).toContain(`CONFIG_FILE ${dir} cannot be read`)
    }))

  it.effect("names CONFIG_FILE when the text is not YAML", () =>
    Effect.gen(function* () {
      const path = write("broken.yaml", "models:\n  - name: [unclosed\n    provider: mock\n")
      const error = yield* Effect.flip(read(path))
      expect(error.message).toContain(`CONFIG_FILE ${path} is not valid YAML or JSON`)
    }))

  it.effect("names CONFIG_FILE, the entry and the field when the registry is invalid", () =>
    Effect.gen(function* () {
      const path = write("invalid.yaml", example.replace("provider: anthropic", "provider: antropic"))
      const error = yield* Effect.flip(read(path))
      expect(error.message).toContain(`CONFIG_FILE ${path} is not a valid model registry`)
      expect(error.message).toContain("models[1] (claude).provider")
    }))
})

describe("fromFile", () => {
  const build = (env: ReadonlyArray<readonly [string, string]>) =>
    fromFile(decoded(example), 0).pipe(
      Effect.provide(Transport.layer()),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(env)))
    )

  it.effect("builds each deployment with its upstream model, weight and fallbacks", () =>
    Effect.gen(function* () {
      const registry = yield* build([
        ["OPENAI_API_KEY", "sk-openai"],
        ["ANTHROPIC_API_KEY", "sk-anthropic"]
      ])
      expect(registry.models.map((model) => model.name)).toEqual(["gpt-4o", "claude"])
      const gpt = registry.lookup("gpt-4o")
      expect(gpt?.fallbacks).toEqual(["claude"])
      expect(gpt?.ownedBy).toBe("openai")
      expect(gpt?.deployments).toHaveLength(1)
      expect(gpt?.deployments[0]).toMatchObject({ name: "gpt-4o", providerKind: "openai", upstreamModel: "gpt-4o-2024-08-06", weight: 2 })
      expect(registry.lookup("claude")?.deployments[0]).toMatchObject({ providerKind: "anthropic", weight: 1 })
      expect(registry.lookup("gpt-4o-2024-08-06")).toBeUndefined()
      expect(registry.settings.retry.max_retries).toBe(3)
    }))

  it.effect("names the entry and the variable when api_key_env is unset", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(build([["OPENAI_API_KEY", "sk-openai"]]))
      expect(error).toBeInstanceOf(RegistryError)
      expect(error.message).toContain("models[1] (claude).api_key_env")
      expect(error.message).toContain("ANTHROPIC_API_KEY")
      expect(error.message).not.toContain("sk-openai")
    }))

  it.effect("builds the built-in registry without any variable", () =>
    Effect.gen(function* () {
      const registry = yield* fromFile(builtInRegistry, 0).pipe(
        Effect.provide(Transport.layer()),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
      )
      expect(registry.models.map((model) => model.name)).toEqual(["mock"])
      const completion = yield* registry.lookup("mock")!.deployments[0]!.provider.complete({
        model: "mock",
        messages: [{ role: "user", content: "hello there" }]
      })
      expect(completion.choices[0]?.message.content).toBe("hello there")
    }))
})

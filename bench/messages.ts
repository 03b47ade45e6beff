/**
 * What serving Anthropic's Messages API costs beside chat completions: one proxy (core 0), the same upstreams —
 * the bench's OpenAI-compatible upstream (`bench`: every Messages request translated to chat completions and back)
 * and the built-in mock (`bench-mock`, no upstream at all: the gateway's own cost alone) — asked through
 * `POST /v1/chat/completions` and `POST /v1/messages`, non-stream and stream, c=50, the runs interleaved repeat by
 * repeat. Reported: req/s and gateway CPU per request of each, and Messages ÷ chat (the target: ≥ 80 %, i.e. the
 * translation costs at most 20 % of throughput).
 *
 * Beside them, `POST /v1/responses` streamed (OpenAI's Responses API, translated to chat completions and back as
 * typed events) to both upstreams, reported ÷ chat streamed the same way.
 *
 * Runs with every bench that measures the proxy; `--no-messages` leaves it out.
 */
import type { Loader } from "./loader.js"
import { failures, loadGateway } from "./measure.js"
import type { RunSample } from "./measure.js"
import type { Options } from "./options.js"
import { chatBody, messagesBody, responsesBody } from "./payloads.js"
import { median } from "./stats.js"
import { proxyKey, startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

const connections = 50

type Api = "chat" | "messages" | "responses"
type Kind = "ns" | "stream"
type Model = "bench" | "bench-mock"

/** One scenario's name: `chat-ns-bench`, `messages-stream-bench-mock`… */
export type MessagesScenarioName = `${Api}-${Kind}-${Model}`

const scenarios: ReadonlyArray<{ readonly name: MessagesScenarioName; readonly api: Api; readonly kind: Kind; readonly model: Model }> = (
  ["bench", "bench-mock"] as const
).flatMap((model) => [
  ...(["ns", "stream"] as const).flatMap((kind) => (["chat", "messages"] as const).map((api) => ({ name: `${api}-${kind}-${model}` as const, api, kind, model }))),
  { name: `responses-stream-${model}` as const, api: "responses" as const, kind: "stream" as const, model }
])

/** Where each dialect is asked, how it authenticates, what it sends, and the text its streams end with. */
const dialects: Readonly<Record<Api, { readonly path: string; readonly headers: Readonly<Record<string, string>>; readonly body: (model: string, stream: boolean) => string; readonly streamEnd: string }>> = {
  chat: { path: "/v1/chat/completions", headers: { authorization: `Bearer ${proxyKey}` }, body: chatBody, streamEnd: "data: [DONE]" },
  messages: { path: "/v1/messages", headers: { "x-api-key": proxyKey, "anthropic-version": "2023-06-01" }, body: messagesBody, streamEnd: "event: message_stop" },
  responses: { path: "/v1/responses", headers: { authorization: `Bearer ${proxyKey}` }, body: responsesBody, streamEnd: "event: response.completed" }
}

export interface MessagesReport {
  readonly runs: Partial<Record<MessagesScenarioName, Array<RunSample>>>
  readonly errors: Array<string>
}

export const runMessages = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<MessagesReport> => {
  const report: MessagesReport = { runs: {}, errors: [] }
  console.log("\n== messages: POST /v1/messages and POST /v1/responses (streamed) beside POST /v1/chat/completions (OpenAI-compatible upstream, and the mock), interleaved")
  const proxy = await startProxy(backend, work, [], "proxy-messages", { registryLines: ["  - name: bench-mock", "    provider: mock"], env: {} })
  const measure = async (scenario: (typeof scenarios)[number], durationS: number): Promise<RunSample> => {
    const stream = scenario.kind === "stream"
    const dialect = dialects[scenario.api]
    return loadGateway(loader, proxy.pid, {
      url: `${proxy.origin}${dialect.path}`,
      headers: dialect.headers,
      body: dialect.body(scenario.model, stream),
      connections,
      durationS,
      ...(stream ? { expectSseText: dialect.streamEnd } : {})
    })
  }
  try {
    process.stdout.write(`  warm-up ${options.warmupS} s per scenario…`)
    for (const scenario of scenarios) await measure(scenario, Math.max(1, Math.round(options.warmupS / 2)))
    process.stdout.write(" done\n")
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      for (const scenario of scenarios) {
        const sample = await measure(scenario, options.durationS)
        ;(report.runs[scenario.name] ??= []).push(sample)
        if (failures(sample) > 0) report.errors.push(`${scenario.name}: ${failures(sample)} failed requests`)
        console.log(
          `  [${repeat}/${options.repeats}] ${scenario.name.padEnd(26)} ${sample.reqPerSec.toFixed(0).padStart(6)} req/s  p99 ${sample.latencyMs.p99.toFixed(2)} ms  failures ${failures(sample)}, ${sample.cpuUsPerRequest?.toFixed(0) ?? "—"} µs CPU/req`
        )
      }
    }
  } catch (error) {
    report.errors.push(error instanceof Error ? error.message : String(error))
  } finally {
    await proxy.stop()
  }
  return report
}

/** The table: per upstream and kind, chat and Messages side by side, and Messages ÷ chat. */
export const messagesTable = (report: MessagesReport): string => {
  const of = (name: MessagesScenarioName, pick: (sample: RunSample) => number) => median((report.runs[name] ?? []).map(pick))
  const rows = (["bench", "bench-mock"] as const).flatMap((model) =>
    (["ns", "stream"] as const).map((kind) => {
      const chat = of(`chat-${kind}-${model}`, (sample) => sample.reqPerSec)
      const messages = of(`messages-${kind}-${model}`, (sample) => sample.reqPerSec)
      const chatCpu = of(`chat-${kind}-${model}`, (sample) => sample.cpuUsPerRequest ?? Number.NaN)
      const messagesCpu = of(`messages-${kind}-${model}`, (sample) => sample.cpuUsPerRequest ?? Number.NaN)
      const label = `${model === "bench" ? "openai upstream" : "mock"} ${kind === "ns" ? "non-stream" : "stream"}`
      return `| ${label.padEnd(26)} | ${chat.toFixed(0).padStart(10)} | ${messages.toFixed(0).padStart(14)} | ${((100 * messages) / chat).toFixed(0).padStart(4)} % | ${chatCpu.toFixed(0).padStart(11)} | ${messagesCpu.toFixed(0).padStart(15)} |`
    })
  )
  const responsesRows = (["bench", "bench-mock"] as const).map((model) => {
    const chat = of(`chat-stream-${model}`, (sample) => sample.reqPerSec)
    const responses = of(`responses-stream-${model}`, (sample) => sample.reqPerSec)
    const chatCpu = of(`chat-stream-${model}`, (sample) => sample.cpuUsPerRequest ?? Number.NaN)
    const responsesCpu = of(`responses-stream-${model}`, (sample) => sample.cpuUsPerRequest ?? Number.NaN)
    const label = `${model === "bench" ? "openai upstream" : "mock"} stream`
    return `| ${label.padEnd(26)} | ${chat.toFixed(0).padStart(10)} | ${responses.toFixed(0).padStart(15)} | ${((100 * responses) / chat).toFixed(0).padStart(5)} % | ${chatCpu.toFixed(0).padStart(11)} | ${responsesCpu.toFixed(0).padStart(16)} |`
  })
  return [
    "| scenario (c=50)            | chat req/s | messages req/s | msg÷chat | chat µs/req | messages µs/req |",
    "|----------------------------|------------|----------------|----------|-------------|-----------------|",
    ...rows,
    "",
    "| scenario (c=50)            | chat req/s | responses req/s | resp÷chat | chat µs/req | responses µs/req |",
    "|----------------------------|------------|-----------------|-----------|-------------|------------------|",
    ...responsesRows
  ].join("\n")
}

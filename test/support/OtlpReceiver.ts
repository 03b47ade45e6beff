/**
 * An in-process OTLP/HTTP trace receiver: a node:http server on 127.0.0.1:0 that accepts `POST /v1/traces` in both
 * encodings a collector takes — `application/x-protobuf` and `application/json` — and keeps every span it is sent,
 * decoded into one shape.
 *
 * Protobuf is decoded with protobufjs from the message definitions below: the subset of the OTLP trace protocol
 * (opentelemetry-proto's collector/trace/v1, trace/v1, common/v1 and resource/v1) that spans use, written here with
 * the protocol's field numbers. @opentelemetry/otlp-transformer 0.223 ships no generated decoder (its protobuf
 * writer is hand-made and encodes only), so it cannot be used to read what it writes.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { createServer } from "node:http"
import type { IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import protobuf from "protobufjs"

const otlpTraceProto = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`

const ExportRequest = protobuf.parse(otlpTraceProto).root.lookupType("otlp.ExportTraceServiceRequest")

export type SpanKindName = "unspecified" | "internal" | "server" | "client" | "producer" | "consumer"
const kinds: ReadonlyArray<SpanKindName> = ["unspecified", "internal", "server", "client", "producer", "consumer"]
const statusCodes = ["unset", "ok", "error"] as const

/** One span as received, whatever its encoding. */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** Empty for a root span. */
  readonly parentSpanId: string
  readonly name: string
  readonly kind: SpanKindName
  readonly attributes: Readonly<Record<string, unknown>>
  readonly status: { readonly code: (typeof statusCodes)[number]; readonly message: string }
  readonly startNanos: number
  readonly endNanos: number
  readonly resource: Readonly<Record<string, unknown>>
  readonly encoding: "protobuf" | "json"
}

/** One export request as received. */
export interface ReceivedExport {
  readonly contentType: string
  readonly headers: IncomingHttpHeaders
  readonly spans: number
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`: what OTEL_EXPORTER_OTLP_ENDPOINT names. */
  readonly origin: string
  readonly spans: ReadonlyArray<ReceivedSpan>
  readonly exports: ReadonlyArray<ReceivedExport>
  /** Waits until spans matching `where` number at least `count`, and gives those. */
  readonly awaitSpans: (count: number, where?: (span: ReceivedSpan) => boolean) => Effect.Effect<ReadonlyArray<ReceivedSpan>>
}

type Json = Record<string, unknown>
const asObject = (value: unknown): Json => (typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {})
const asArray = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

/** An AnyValue (protobufjs' object form and OTLP/JSON share the field names) as a plain value. */
const valueOf = (value: unknown): unknown => {
  const any = asObject(value)
  if ("stringValue" in any) return any["stringValue"]
  if ("boolValue" in any) return any["boolValue"]
  if ("intValue" in any) return Number(any["intValue"])
  if ("doubleValue" in any) return Number(any["doubleValue"])
  if ("arrayValue" in any) return asArray(asObject(any["arrayValue"])["values"]).map(valueOf)
  if ("kvlistValue" in any) return attributesOf(asObject(any["kvlistValue"])["values"])
  return undefined
}

const attributesOf = (list: unknown): Record<string, unknown> =>
  Object.fromEntries(asArray(list).map((entry) => [String(asObject(entry)["key"]), valueOf(asObject(entry)["value"])]))

/** Both encodings' ids: protobuf bytes (base64 once converted to an object), OTLP/JSON hex. */
const idOf = (value: unknown, encoding: "protobuf" | "json"): string =>
  typeof value !== "string" ? "" : encoding === "json" ? value.toLowerCase() : Buffer.from(value, "base64").toString("hex")

const spansOf = (request: unknown, encoding: "protobuf" | "json"): ReadonlyArray<ReceivedSpan> =>
  asArray(asObject(request)["resourceSpans"]).flatMap((resourceSpans) => {
    const resource = attributesOf(asObject(asObject(resourceSpans)["resource"])["attributes"])
    return asArray(asObject(resourceSpans)["scopeSpans"]).flatMap((scopeSpans) =>
      asArray(asObject(scopeSpans)["spans"]).map((value): ReceivedSpan => {
        const span = asObject(value)
        const status = asObject(span["status"])
        return {
          traceId: idOf(span["traceId"], encoding),
          spanId: idOf(span["spanId"], encoding),
          parentSpanId: idOf(span["parentSpanId"], encoding),
          name: String(span["name"]),
          kind: kinds[Number(span["kind"] ?? 0)] ?? "unspecified",
          attributes: attributesOf(span["attributes"]),
          status: { code: statusCodes[Number(status["code"] ?? 0)] ?? "unset", message: String(status["message"] ?? "") },
          startNanos: Number(span["startTimeUnixNano"]),
          endNanos: Number(span["endTimeUnixNano"]),
          resource,
          encoding
        }
      })
    )
  })

/** Decodes one export request's body by its content type. */
export const decodeExport = (contentType: string, body: Buffer): ReadonlyArray<ReceivedSpan> => {
  if (contentType.startsWith("application/x-protobuf")) {
    const message = ExportRequest.decode(body)
    return spansOf(ExportRequest.toObject(message, { longs: String, bytes: String, enums: Number }), "protobuf")
  }
  if (contentType.startsWith("application/json")) return spansOf(JSON.parse(body.toString("utf8")), "json")
  throw new Error(`unexpected content type ${contentType}`)
}

/** Starts a receiver in the current scope. */
export const startReceiver: Effect.Effect<OtlpReceiver, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(async () => {
    const spans: Array<ReceivedSpan> = []
    const exports: Array<ReceivedExport> = []
    const waiters = new Set<() => void>()
    const server = createServer((request, response) => {
      const parts: Array<Buffer> = []
      request.on("data", (part: Buffer) => parts.push(part))
      request.on("end", () => {
        const contentType = request.headers["content-type"] ?? ""
        if (request.method !== "POST" || request.url !== "/v1/traces") {
          response.writeHead(404).end()
          return
        }
        try {
          const received = decodeExport(contentType, Buffer.concat(parts))
          spans.push(...received)
          exports.push({ contentType, headers: request.headers, spans: received.length })
        } catch (error) {
          response.writeHead(400, { "content-type": "text/plain" }).end(String(error))
          return
        }
        // An empty ExportTraceServiceResponse: full success.
        if (contentType.startsWith("application/json")) response.writeHead(200, { "content-type": "application/json" }).end("{}")
        else response.writeHead(200, { "content-type": "application/x-protobuf" }).end()
        for (const wake of waiters) wake()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const receiver: OtlpReceiver = {
      origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      spans,
      exports,
      awaitSpans: (count, where = () => true) =>
        Effect.async<ReadonlyArray<ReceivedSpan>>((resume) => {
          const check = () => {
            const matching = spans.filter(where)
            if (matching.length < count) return
            waiters.delete(check)
            resume(Effect.succeed(matching))
          }
          waiters.add(check)
          check()
          return Effect.sync(() => waiters.delete(check))
        })
    }
    return { server, receiver }
  }),
  ({ server }) =>
    Effect.promise(() => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
).pipe(Effect.map(({ receiver }) => receiver))

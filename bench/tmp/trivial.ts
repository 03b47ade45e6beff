import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import { createServer } from "node:http"
import { ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"

const mode = process.env.MODE ?? "plain"
const Payload = mode === "schema" ? ChatCompletionRequest : Schema.Struct({ model: Schema.String })
class G extends HttpApiGroup.make("g").add(HttpApiEndpoint.post("c", "/v1/chat/completions").setPayload(Payload).addSuccess(Schema.Struct({ ok: Schema.Boolean }))) {}
class A extends HttpApi.make("a").add(G) {}
const body = JSON.stringify({ id: "x", object: "chat.completion", choices: [] })
const GL = HttpApiBuilder.group(A, "g", (h) => h.handle("c", () => Effect.succeed(HttpServerResponse.text(body, { contentType: "application/json" }))))
const ApiL = HttpApiBuilder.api(A).pipe(Layer.provide(GL))
const S = HttpApiBuilder.serve().pipe(Layer.provide(ApiL), Layer.provide(NodeHttpServer.layer(createServer, { port: 19902, host: "127.0.0.1" })))
NodeRuntime.runMain(Layer.launch(S))

import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as App from "./App.js"

const describeStartupFailure = (error: { readonly _tag: string; readonly message?: string }) =>
  error._tag === "RegistryError" ? error.message : `Invalid configuration: ${String(error)}`

NodeRuntime.runMain(
  Layer.launch(App.layer).pipe(
    Effect.tapError((error) => Effect.sync(() => console.error(describeStartupFailure(error))))
  ),
  { disablePrettyLogger: true, disableErrorReporting: true }
)

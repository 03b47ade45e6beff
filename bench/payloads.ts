/** Request bodies of the benchmark. */

export const tinyMessages = [{ role: "user", content: "Say hello." }]

export const chatBody = (model: string, stream: boolean): string =>
  JSON.stringify({ model, messages: tinyMessages, stream, max_tokens: 32 })

/** The same request in Anthropic's Messages dialect. */
export const messagesBody = (model: string, stream: boolean): string =>
  JSON.stringify({ model, messages: tinyMessages, stream, max_tokens: 32 })

/**
 * The same request in OpenAI's Responses dialect; `store: false`, so that the figure is the translation's and the
 * stored responses' LRU does not fill over a run.
 */
export const responsesBody = (model: string, stream: boolean): string =>
  JSON.stringify({ model, input: tinyMessages, stream, max_output_tokens: 32, store: false })

const words = [
  "gateway", "latency", "token", "stream", "request", "upstream", "provider", "benchmark", "throughput", "model",
  "deployment", "router", "fallback", "retry", "timeout", "header", "payload", "schema", "encode", "decode",
  "effect", "fiber", "buffer", "socket", "kernel", "memory", "garbage", "collector", "profile", "sample"
]

/**
 * A chat request of about `tokens` tokens (≈ 4 characters each) spread over many user/assistant messages
 * of ~2,000 characters, like a long conversation.
 */
export const largeChatBody = (model: string, tokens = 100_000): string => {
  const targetChars = tokens * 4
  const messageChars = 2_000
  const messages: Array<{ role: string; content: string }> = [
    { role: "system", content: "You are a helpful assistant. Answer briefly." }
  ]
  let total = 0
  let seed = 7
  while (total < targetChars) {
    const parts: Array<string> = []
    let length = 0
    while (length < messageChars) {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
      const word = words[seed % words.length] ?? "token"
      parts.push(word)
      length += word.length + 1
    }
    const content = parts.join(" ")
    messages.push({ role: messages.length % 2 === 1 ? "user" : "assistant", content })
    total += content.length
  }
  if (messages.length % 2 === 1) messages.push({ role: "user", content: "Summarize the conversation." })
  return JSON.stringify({ model, messages, stream: false, max_tokens: 32 })
}

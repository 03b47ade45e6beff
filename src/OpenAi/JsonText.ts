/**
 * An answer's JSON text, made once. The response cache serializes what it records as it passes (a completion, a
 * stream's chunks: the entry's text and its size in bytes are made of them); the transports then write the same text
 * instead of serializing the value a second time, and a memory hit replays text already made. Values nobody recorded
 * cost one WeakMap lookup.
 */

const known = new WeakMap<object, string>()

/** The value's JSON text, kept for the writer that sends it next. Throws what JSON.stringify throws. */
export const jsonOf = (value: object): string => {
  let text = known.get(value)
  if (text === undefined) {
    text = JSON.stringify(value)
    known.set(value, text)
  }
  return text
}

/** The JSON text made for the value earlier, if any. */
export const knownJsonOf = (value: object): string | undefined => known.get(value)

// openai-client.cjs drives a stoker node's OpenAI-compatible routes with
// OpenAI's own Node client library (the `openai` npm package), as a user's
// program would, and prints what it saw as one JSON object on stdout for
// the Go test (local_engines_test.go) to check.
//
//   node openai-client.cjs <node_modules dir>
//
// Environment: BASE_URL (the local API's /v1), TOKEN (the API key: the
// local API's bearer token), CHAT_MODEL, IMAGE_MODEL, STT_MODEL, TTS_MODEL,
// TTS_VOICE, WAV (a WAV file to transcribe).
"use strict";
const path = require("path");
const fs = require("fs");
const OpenAI = require(path.join(process.argv[2], "openai"));
const { toFile } = OpenAI;

const env = process.env;
const client = new OpenAI({ baseURL: env.BASE_URL, apiKey: env.TOKEN, maxRetries: 0, timeout: 300000 });

async function main() {
  const out = {};
  const models = await client.models.list();
  out.models = [];
  for await (const m of models) out.models.push(m.id);

  const messages = [{ role: "user", content: "Say hello" }];
  const chat = await client.chat.completions.create({ model: env.CHAT_MODEL, messages, max_tokens: 16, temperature: 0 });
  out.chat = { id: chat.id, object: chat.object, content: chat.choices[0].message.content,
    finish: chat.choices[0].finish_reason, usage: chat.usage };

  const t0 = performance.now();
  const stream = await client.chat.completions.create({ model: env.CHAT_MODEL, messages, max_tokens: 16, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  const pieces = [];
  let role = "", finish = null, usage = null, firstMs = null;
  for await (const chunk of stream) {
    if (chunk.object !== "chat.completion.chunk") throw new Error("chunk object " + chunk.object);
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) {
      if (firstMs === null) firstMs = performance.now() - t0;
      pieces.push(c.delta.content);
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  out.stream = { role, pieces, finish, usage, firstMs, totalMs: performance.now() - t0 };

  const b64 = await client.images.generate({ model: env.IMAGE_MODEL, prompt: "a lighthouse at dusk", size: "64x64", response_format: "b64_json" });
  out.imageB64 = Buffer.from(b64.data[0].b64_json, "base64").subarray(0, 8).toString("hex");
  const url = await client.images.generate({ model: env.IMAGE_MODEL, prompt: "a lighthouse at dusk", size: "64x64" });
  const resp = await fetch(url.data[0].url);
  out.imageURL = { url: url.data[0].url, status: resp.status, type: resp.headers.get("content-type"),
    head: Buffer.from(await resp.arrayBuffer()).subarray(0, 8).toString("hex") };

  const file = await toFile(fs.readFileSync(env.WAV), "clip.wav", { type: "audio/wav" });
  const tr = await client.audio.transcriptions.create({ model: env.STT_MODEL, file, response_format: "verbose_json" });
  out.transcription = { text: tr.text, language: tr.language, duration: tr.duration };

  const speech = await client.audio.speech.create({ model: env.TTS_MODEL, voice: env.TTS_VOICE, input: "Welcome back, traveller.", response_format: "wav" });
  const audio = Buffer.from(await speech.arrayBuffer());
  out.speech = { bytes: audio.length, head: audio.subarray(0, 4).toString("latin1"), type: speech.headers.get("content-type") };

  try {
    await client.chat.completions.create({ model: "no-such-model", messages });
    out.unknownModel = { status: 0 };
  } catch (e) {
    out.unknownModel = { status: e.status, code: e.code, type: e.type };
  }
  try {
    await new OpenAI({ baseURL: env.BASE_URL, apiKey: "wrong", maxRetries: 0 }).chat.completions.create({ model: env.CHAT_MODEL, messages });
    out.wrongKey = { status: 0 };
  } catch (e) {
    out.wrongKey = { status: e.status };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});

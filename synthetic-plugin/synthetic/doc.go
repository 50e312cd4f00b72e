// Package synthetic is the synthetic engine: a stoker engine plugin that
// serves every task kind with deterministic placeholder outputs, and the
// worked example for anyone writing an engine plugin of their own.
//
// # What it produces
//
// Every output is a real file of the requested kind, derived from a SHA-256
// of the task's prompt (and seed, where the task has one), so the same task
// always yields the same bytes:
//
//   - image: a PNG, or a lossless WebP when the task asks for "webp" (spec
//     §6.2: synthetic honours webp, else png), of the task's width and
//     height (1 to [MaxImageSide]), showing a gradient, stripes and a disc
//     whose colours and geometry come from the hash.
//   - audio_tts: a 16 kHz mono 16-bit PCM WAV of one short tone per letter
//     or digit, with pauses at spaces and punctuation; Speed (0.25 to 4,
//     0 meaning 1) scales its length, at most [MaxSpeechSeconds].
//   - video: an animated GIF (extension "gif") of Seconds × FPS frames,
//     rounded up (FPS 0 means [DefaultFPS]; at most [MaxFPS] and
//     [MaxFrames]; each side 1 to [MaxVideoSide]). The task's default
//     extension is mp4, which cannot be encoded without ffmpeg; the
//     synthetic engine always returns gif and says so in the job log when
//     another extension was asked for.
//   - llm: an OpenAI-shaped chat.completion (spec §7.2) whose content is a
//     sentence of words picked by the hash of the last message. Words stand
//     in for tokens: MaxTokens cuts the answer (finish_reason "length") and
//     Stop strings end it early (finish_reason "stop").
//   - audio_stt: a whisper-shaped transcript {text, language, duration}
//     (spec §7.2, without segments) whose words are picked by the hash of
//     the input audio, with the duration read from its WAV header (0 when
//     the job has no audio file; a file that is not a WAV is bad input).
//
// It advertises only the synthetic model names of spec §8.1 and serves only
// the "synthetic" engine id (spec §6.4), so the studio can never route a
// real model's job to it.
//
// # How an engine plugs into the SDK
//
// A plugin is a program named <name>-plugin whose main hands an
// implementation of [plugins.Engine] to plugins.Serve; see
// synthetic-plugin/main.go, which is the whole of this plugin's main. The
// supervisor launches the program, calls Describe to learn what it serves,
// and calls Run once per job. Everything else follows from the contract on
// [plugins.Engine]:
//
//   - Describe answers at once and loads nothing ([Engine.Describe]).
//   - Run gets everything on local disk in the [plugins.RunRequest]: the
//     task with defaults applied, model files by role and input files. It
//     never downloads and never reads the supervisor's configuration.
//   - Run reports through [plugins.Events]: Progress often enough for the
//     stall watchdog, Log for lines the operator and studio should see,
//     Output for binary results in chunks (this engine encodes straight
//     into a writer that forwards 256 KiB chunks, so a large image is never
//     held whole), and Result for a JSON result.
//   - Run returns nil on success or a typed [plugins.JobError]: bad input
//     (the task fails the same way anywhere), unsupported ("cannot serve"),
//     out of memory, or an engine error. The kind decides whether the
//     studio retries.
//   - Run stops promptly when its context is cancelled (returning an error
//     of kind [plugins.ErrCancelled]) or when an Events call fails (the
//     receiver is gone; Run returns that error).
//
// [Blob] is exported for tests of the streaming path elsewhere in the
// module: it writes any number of deterministic bytes.
package synthetic

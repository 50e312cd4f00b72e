package plugins

import (
	"context"
	"strings"
	"unicode/utf8"
)

// ContractVersion is the version of the engine contract this SDK speaks. It is
// the go-plugin protocol version of the handshake and is reported by Describe.
// A change that breaks old plugins bumps it; additive proto fields do not.
const ContractVersion = 1

// TaskKind is a studio task kind (spec §6.2), snake_case on the wire.
type TaskKind string

// The task kinds of spec §6.2, in the order capabilities list them.
const (
	KindImage TaskKind = "image"
	KindLLM   TaskKind = "llm"
	KindSTT   TaskKind = "audio_stt"
	KindTTS   TaskKind = "audio_tts"
	KindVideo TaskKind = "video"
)

// AllKinds lists every task kind in the order spec §8.1 advertises them.
var AllKinds = []TaskKind{KindImage, KindLLM, KindSTT, KindTTS, KindVideo}

// Engine is the contract between the supervisor and an engine plugin. A
// plugin's main passes its Engine to [Serve]; the supervisor holds a [*Plugin]
// (from [Launch]) that implements the same interface over gRPC, so both sides speak Go types
// and never the generated proto ones.
//
// Methods may be called concurrently; the supervisor runs at most one job at a
// time per plugin today, but Describe and the optional [ModelManager] calls may
// arrive while a Run is in flight.
type Engine interface {
	// Describe reports what the plugin serves and whether it is ready. It
	// must answer quickly (the host bounds it with a start-up timeout) and
	// must not load models.
	Describe(ctx context.Context) (*Description, error)

	// Run executes one job. It blocks until the job is finished and reports
	// everything the job produces through ev, in order. The returned error is
	// the job's outcome: nil means success (ev received the output chunks or
	// the JSON result); a *JobError gives the failure its kind; any other
	// error is treated as an engine error. Cancelling ctx cancels the job;
	// Run should then return promptly.
	//
	// Run reports through a callback interface rather than returning a
	// channel so that the terminal outcome is the plain returned error and a
	// slow receiver applies back-pressure to the engine without a goroutine
	// in between.
	Run(ctx context.Context, req *RunRequest, ev Events) error
}

// Events receives what a running job produces. Every method returns an error
// once the receiver is gone (the job was cancelled or the host went away);
// the engine should stop and return then.
type Events interface {
	// Progress reports step of total units done ("step", "token",
	// "sample", "byte"...). The host's stall watchdog counts any event as a
	// sign of life, so long-running engines should report at least every few
	// seconds. Report as often as is convenient: progress is state, not a
	// queue. In a plugin (Serve) Progress records the newest value and
	// returns without waiting on the host; the SDK sends the first value of
	// a run at once, then at most one every 100 ms, always the newest, and
	// the value pending when Run returns before the outcome.
	Progress(step, total uint64, unit string) error
	// Log ships a job-related line to the operator's log (and the studio's
	// log stream). level is "debug", "info", "warn" or "error". A line
	// over MaxLogBytes is cut there, and the host passes on at most
	// LogBurst lines at once and LogRate a second per plugin (see
	// limits.go).
	Log(level, message string) error
	// Output appends p to the job's binary output, whose extension is ext
	// ("png", "webp", "wav", "gif"...). Chunks may be of any size; the
	// transport splits them so no message exceeds 512 KiB of data. ext
	// must be the same on every call of one job. Output does not keep p
	// after it returns, so the engine may reuse the buffer.
	Output(ext string, p []byte) error
	// Result sets the job's JSON result (llm, audio_stt). It must be a JSON
	// object or array and is sent to the studio verbatim. One over
	// MaxResultBytes is refused with a bad-input error, which the engine
	// should return.
	Result(json []byte) error
}

// TextStreamer is implemented by the Events of a run whose host asked for
// the text of an llm job's answer as it is generated
// (RunRequest.StreamText). Engines call it through StreamText.
type TextStreamer interface {
	// Text sends the next piece of the answer. Pieces are never merged,
	// dropped or reordered; joined, they are the text as generated (the
	// result may trim it or split a reasoning block from it). Every piece
	// comes before the result.
	Text(piece string) error
}

// StreamText sends piece as the next text of an llm job's answer when the
// host asked for it (RunRequest.StreamText) and ev can carry it, and does
// nothing otherwise. A piece over MaxTextPieceBytes is sent in parts; the
// text of one job together may be at most MaxResultBytes, and the error
// past it (bad input) should end the job. An error means the receiver is
// gone, as for every event.
//
// The wire carries text as UTF-8: each byte of piece that is not part of a
// valid UTF-8 sequence becomes U+FFFD, as encoding/json does to a result's
// strings, so the pieces join to what the result says.
func StreamText(ev Events, piece string) error {
	ts, ok := ev.(TextStreamer)
	if !ok || piece == "" {
		return nil
	}
	return ts.Text(validUTF8(piece))
}

// validUTF8 returns s with each byte outside a valid UTF-8 sequence
// replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// ModelManager is implemented by engines that keep models resident in memory
// between jobs. Engines that don't get empty listings and Unload answers
// "not resident".
type ModelManager interface {
	// Resident lists the models held in memory now.
	Resident(ctx context.Context) ([]ResidentModel, error)
	// Unload frees a resident model. Unloading a model that is not resident
	// is not an error.
	Unload(ctx context.Context, model string) error
}

// ResidentModel is one model an engine holds in memory.
type ResidentModel struct {
	Model string // studio model id, as in RunRequest.Model
	Bytes uint64 // memory held (host RAM plus device memory)
	// LastUsedUnixMs is when a job last used the model.
	LastUsedUnixMs int64
}

// Description is what Describe reports.
type Description struct {
	Name            string // plugin name, e.g. "llamacpp"
	Version         string // plugin version
	ContractVersion uint32 // ContractVersion the plugin was built against
	// Engines are the ModelSource engine ids served (spec §6.3), e.g.
	// "llama-cpp". The supervisor routes offers strictly by this id.
	Engines []string
	// Kinds are the task kinds served.
	Kinds []TaskKind
	// Models are advertised model ids per kind (spec §8.1), e.g.
	// "llama-cpp:*" or "synthetic-image".
	Models map[TaskKind][]string
	Device Device
	// Ready is false when the plugin cannot serve now; NotReadyReason
	// says why ("engine library not found").
	Ready          bool
	NotReadyReason string
}

// Device describes the compute the plugin runs on.
type Device struct {
	Backend     string // "cpu", "cuda", "vulkan", "metal"...
	Name        string // e.g. "NVIDIA H100" or the CPU model
	MemoryTotal uint64 // bytes
	MemoryFree  uint64 // bytes
}

// RunRequest carries everything a job needs. A plugin never downloads and
// never reads the supervisor's configuration: model files and inputs are
// already on local disk, and task defaults of spec §6.2 are already applied.
type RunRequest struct {
	JobID  string
	Model  string // studio model id (also the residency key)
	Engine string // modelSource.engine
	Task   Task
	// Files are the model files on local disk, by role ("diffusion-model",
	// "text-encoder", "text-encoder-vision", "vae", "lora", "model").
	Files    []ModelFile
	Defaults Defaults
	Inputs   Inputs
	// StreamText says the host wants the text of an llm job's answer as it
	// is generated (see StreamText): a client of the node's local API is
	// streaming it. An engine may ignore it; the answer then arrives in
	// one piece with the result.
	StreamText bool
}

// File returns the path of the first model file with role, or "".
func (r *RunRequest) File(role string) string {
	for _, f := range r.Files {
		if f.Role == role {
			return f.Path
		}
	}
	return ""
}

// ModelFile is one model file on local disk.
type ModelFile struct {
	Role string
	Path string
}

// Inputs are the task's input files, fetched by the supervisor; empty when
// the task has none.
type Inputs struct {
	InitImage string // from image/video initImageUrl, renamed by sniffed type
	Mask      string // from maskUrl
	RefImage  string // from refImageUrl
	Audio     string // from audio_stt inputUrl
}

// Defaults are the model's cliDefaults (spec §6.3).
type Defaults struct {
	CfgScale       float32
	Steps          uint32
	Width          uint32
	Height         uint32
	SamplingMethod string
	FlowShift      *float32
	ZeroCondT      bool
	OffloadToCPU   bool
	ContextSize    uint32 // 0: engine default
	// ChatTemplateKwargs is a JSON object, nil when absent.
	ChatTemplateKwargs []byte
}

// Task is the job's task: Kind plus exactly one non-nil parameter struct.
type Task struct {
	Kind  TaskKind
	Image *ImageTask
	LLM   *LLMTask
	STT   *STTTask
	TTS   *TTSTask
	Video *VideoTask
}

// Prompt is the task's full prompt as spec §7.4 defines it.
func (t *Task) Prompt() string {
	switch {
	case t.Image != nil:
		return t.Image.Prompt
	case t.LLM != nil:
		if n := len(t.LLM.Messages); n > 0 {
			return t.LLM.Messages[n-1].Content
		}
	case t.STT != nil:
		return t.STT.InputURL
	case t.TTS != nil:
		return t.TTS.Text
	case t.Video != nil:
		return t.Video.Prompt
	}
	return ""
}

// ImageTask holds spec §6.2 ImageParams with defaults applied
// (width/height 512, steps 20, ext "webp").
type ImageTask struct {
	Prompt         string
	NegativePrompt string
	Denoise        *float32 // nil: engine default (0.75 with an init image)
	CfgScale       float32  // 0: use Defaults.CfgScale
	SamplingMethod string   // "": use Defaults.SamplingMethod
	Width          uint32
	Height         uint32
	Steps          uint32
	Seed           *uint64
	Ext            string
}

// LLMTask holds spec §6.2 LlmParams with defaults applied
// (maxTokens 512, temperature 0.7).
type LLMTask struct {
	Messages    []Message
	System      string
	MaxTokens   uint32
	Temperature float32 // <= 0: greedy
	TopP        *float32
	Seed        *uint64
	Stop        []string
	// JSONSchema is the strict-output schema as JSON, nil when absent.
	JSONSchema []byte
	Reasoning  string
	// ChatTemplateKwargs is a JSON object overriding
	// Defaults.ChatTemplateKwargs, nil when absent.
	ChatTemplateKwargs []byte
}

// Message is one chat message.
type Message struct {
	Role    string
	Content string
}

// STTTask holds spec §6.2 AudioSttParams. The audio itself is at
// Inputs.Audio; InputURL is kept for the prompt echo of spec §7.4.
type STTTask struct {
	InputURL   string
	Language   string
	Translate  bool
	Prompt     string
	VAD        bool
	Timestamps string // "", "segment" or "word"
}

// TTSTask holds spec §6.2 AudioTtsParams with defaults applied
// (voice "default", ext "wav").
type TTSTask struct {
	Text     string
	Voice    string
	Speed    float32 // 0: natural (1.0)
	Language string
	Ext      string
}

// VideoTask holds spec §6.2 VideoParams with defaults applied
// (seconds 2, width/height 512, ext "mp4").
type VideoTask struct {
	Prompt         string
	NegativePrompt string
	Seconds        float32
	FPS            uint32 // 0: engine default
	Width          uint32
	Height         uint32
	Ext            string
}

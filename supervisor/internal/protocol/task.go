package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// TaskKind is a task kind (§6.2), snake_case on the wire.
type TaskKind string

// The task kinds of §6.2.
const (
	KindImage    TaskKind = "image"
	KindLLM      TaskKind = "llm"
	KindAudioSTT TaskKind = "audio_stt"
	KindAudioTTS TaskKind = "audio_tts"
	KindVideo    TaskKind = "video"
)

// Kinds lists every task kind in the order capabilities advertise them (§8.1).
func Kinds() []TaskKind {
	return []TaskKind{KindImage, KindLLM, KindAudioSTT, KindAudioTTS, KindVideo}
}

// Binary reports whether results of kind k are uploaded over HTTP multipart
// (image, audio_tts, video) rather than sent as completeJson (llm, audio_stt).
func (k TaskKind) Binary() bool { return k == KindImage || k == KindAudioTTS || k == KindVideo }

// ErrUnknownTaskKind is reported by [Task.Validate] for a kind outside §6.2.
// A worker answers such an offer as "cannot serve" (I-12).
var ErrUnknownTaskKind = errors.New("unknown task kind")

// Task is a job's task (§6.2): Kind plus exactly one non-nil parameter struct
// matching it. On the wire the parameters are flattened next to "kind".
//
// Decoding a task with an unknown kind succeeds with Kind set and no
// parameters; [Task.Validate] then reports [ErrUnknownTaskKind].
type Task struct {
	Kind  TaskKind
	Image *ImageParams
	LLM   *LlmParams
	STT   *AudioSttParams
	TTS   *AudioTtsParams
	Video *VideoParams

	// absent says which required string parameter the decoded task lacked
	// (or had as null), e.g. "missing prompt"; "" when none. A task built
	// in Go has none absent.
	absent string
}

// ImageParams are the parameters of an image task. Pointer fields are
// optional numbers: nil means absent, which differs from 0.
type ImageParams struct {
	Prompt         string   `json:"prompt"`
	NegativePrompt string   `json:"negativePrompt,omitempty"`
	InitImageURL   string   `json:"initImageUrl,omitempty"`
	MaskURL        string   `json:"maskUrl,omitempty"`
	RefImageURL    string   `json:"refImageUrl,omitempty"`
	Denoise        *float32 `json:"denoise,omitempty"`
	CfgScale       *float32 `json:"cfgScale,omitempty"`
	SamplingMethod string   `json:"samplingMethod,omitempty"`
	Width          *uint32  `json:"width,omitempty"`  // default 512
	Height         *uint32  `json:"height,omitempty"` // default 512
	Steps          *uint32  `json:"steps,omitempty"`  // default 20 ("unset" to sd-cpp)
	Seed           *uint64  `json:"seed,omitempty"`
	Ext            string   `json:"ext,omitempty"` // default "webp"
}

// Message is one chat message of an llm task.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LlmParams are the parameters of an llm task.
type LlmParams struct {
	Messages    []Message `json:"messages"`
	System      string    `json:"system,omitempty"`
	MaxTokens   *uint32   `json:"maxTokens,omitempty"`   // default 512
	Temperature *float32  `json:"temperature,omitempty"` // default 0.7; <= 0 greedy
	TopP        *float32  `json:"topP,omitempty"`
	Stop        []string  `json:"stop,omitempty"`
	// JSONSchema is any JSON value; nil when absent (or null).
	JSONSchema json.RawMessage `json:"jsonSchema,omitempty"`
	Reasoning  string          `json:"reasoning,omitempty"`
	// ChatTemplateKwargs is a JSON object; nil when absent (or null).
	ChatTemplateKwargs json.RawMessage `json:"chatTemplateKwargs,omitempty"`
}

// AudioSttParams are the parameters of an audio_stt task.
type AudioSttParams struct {
	InputURL   string `json:"inputUrl"`
	Language   string `json:"language,omitempty"`
	Translate  bool   `json:"translate,omitempty"`
	Prompt     string `json:"prompt,omitempty"`
	Vad        bool   `json:"vad,omitempty"`
	Timestamps string `json:"timestamps,omitempty"` // "segment" or "word"
}

// AudioTtsParams are the parameters of an audio_tts task.
type AudioTtsParams struct {
	Text     string   `json:"text"`
	Voice    string   `json:"voice,omitempty"` // default "default"
	Speed    *float32 `json:"speed,omitempty"`
	Language string   `json:"language,omitempty"`
	Ext      string   `json:"ext,omitempty"` // default "wav"
}

// VideoParams are the parameters of a video task.
type VideoParams struct {
	Prompt         string   `json:"prompt"`
	NegativePrompt string   `json:"negativePrompt,omitempty"`
	InitImageURL   string   `json:"initImageUrl,omitempty"`
	Seconds        *float32 `json:"seconds,omitempty"` // default 2.0
	Fps            *uint32  `json:"fps,omitempty"`
	Width          *uint32  `json:"width,omitempty"`  // default 512
	Height         *uint32  `json:"height,omitempty"` // default 512
	Ext            string   `json:"ext,omitempty"`    // default "mp4"
}

// Defaults of §6.2.
const (
	DefaultImageSize     = 512
	DefaultImageSteps    = 20
	DefaultImageExt      = "webp"
	DefaultMaxTokens     = 512
	DefaultTemperature   = float32(0.7)
	DefaultVoice         = "default"
	DefaultTTSExt        = "wav"
	DefaultVideoSeconds  = float32(2.0)
	DefaultVideoSize     = 512
	DefaultVideoExt      = "mp4"
	DefaultInitDenoise   = float32(0.75) // engine side, only with an init image
	DefaultVRAMThreshold = float32(12.0)
)

func u32(v uint32) *uint32   { return &v }
func f32(v float32) *float32 { return &v }

// WithDefaults returns a copy with the §6.2 defaults applied: width and
// height 512, steps 20, ext "webp". Other optional fields stay absent.
func (p ImageParams) WithDefaults() ImageParams {
	if p.Width == nil {
		p.Width = u32(DefaultImageSize)
	}
	if p.Height == nil {
		p.Height = u32(DefaultImageSize)
	}
	if p.Steps == nil {
		p.Steps = u32(DefaultImageSteps)
	}
	if p.Ext == "" {
		p.Ext = DefaultImageExt
	}
	return p
}

// WithDefaults returns a copy with maxTokens 512 and temperature 0.7 applied.
func (p LlmParams) WithDefaults() LlmParams {
	if p.MaxTokens == nil {
		p.MaxTokens = u32(DefaultMaxTokens)
	}
	if p.Temperature == nil {
		p.Temperature = f32(DefaultTemperature)
	}
	return p
}

// WithDefaults returns a copy; audio_stt has no defaults.
func (p AudioSttParams) WithDefaults() AudioSttParams { return p }

// WithDefaults returns a copy with voice "default" and ext "wav" applied.
func (p AudioTtsParams) WithDefaults() AudioTtsParams {
	if p.Voice == "" {
		p.Voice = DefaultVoice
	}
	if p.Ext == "" {
		p.Ext = DefaultTTSExt
	}
	return p
}

// WithDefaults returns a copy with seconds 2, 512×512 and ext "mp4" applied.
func (p VideoParams) WithDefaults() VideoParams {
	if p.Seconds == nil {
		p.Seconds = f32(DefaultVideoSeconds)
	}
	if p.Width == nil {
		p.Width = u32(DefaultVideoSize)
	}
	if p.Height == nil {
		p.Height = u32(DefaultVideoSize)
	}
	if p.Ext == "" {
		p.Ext = DefaultVideoExt
	}
	return p
}

// WithDefaults returns a deep-enough copy of t whose parameters have the
// §6.2 defaults applied. t itself is not changed.
func (t Task) WithDefaults() Task {
	out := Task{Kind: t.Kind}
	switch {
	case t.Image != nil:
		p := t.Image.WithDefaults()
		out.Image = &p
	case t.LLM != nil:
		p := t.LLM.WithDefaults()
		out.LLM = &p
	case t.STT != nil:
		p := t.STT.WithDefaults()
		out.STT = &p
	case t.TTS != nil:
		p := t.TTS.WithDefaults()
		out.TTS = &p
	case t.Video != nil:
		p := t.Video.WithDefaults()
		out.Video = &p
	}
	return out
}

// Ext returns the output extension of a binary task with defaults applied
// ("webp", "wav", "mp4" unless the task asks otherwise), and "" for JSON
// kinds.
func (t Task) Ext() string {
	d := t.WithDefaults()
	switch {
	case d.Image != nil:
		return d.Image.Ext
	case d.TTS != nil:
		return d.TTS.Ext
	case d.Video != nil:
		return d.Video.Ext
	}
	return ""
}

// Prompt returns the full prompt of §7.4, never truncated: image and video
// prompt, the content of the last llm message (empty if none), the audio_stt
// inputUrl, the audio_tts text.
func (t Task) Prompt() string {
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

// Validate reports the first problem with t: an unknown kind (wrapping
// [ErrUnknownTaskKind]), parameters that do not match the kind, or a missing
// required parameter (image/video prompt, llm messages and each message's
// role, audio_stt inputUrl, audio_tts text).
//
// A required string must be present, and may be empty, as in the reference
// worker (serde requires a String field and takes ""): an image with an
// empty prompt is a valid, unconditioned image job, and rejecting it would
// leave such jobs to no stoker node. An empty inputUrl is accepted too; its
// fetch fails the job.
func (t Task) Validate() error {
	n := 0
	for _, set := range []bool{t.Image != nil, t.LLM != nil, t.STT != nil, t.TTS != nil, t.Video != nil} {
		if set {
			n++
		}
	}
	var want bool
	switch t.Kind {
	case KindImage:
		want = t.Image != nil
	case KindLLM:
		want = t.LLM != nil
	case KindAudioSTT:
		want = t.STT != nil
	case KindAudioTTS:
		want = t.TTS != nil
	case KindVideo:
		want = t.Video != nil
	case "":
		return errors.New("task: missing kind")
	default:
		return fmt.Errorf("task: %w %q", ErrUnknownTaskKind, string(t.Kind))
	}
	if !want || n != 1 {
		return fmt.Errorf("task: parameters do not match kind %q", string(t.Kind))
	}
	if t.absent != "" {
		return fmt.Errorf("task: %s: %s", t.Kind, t.absent)
	}
	if t.LLM != nil {
		if t.LLM.Messages == nil {
			return errors.New("task: llm: missing messages")
		}
		if len(t.LLM.ChatTemplateKwargs) > 0 && !isJSONObject(t.LLM.ChatTemplateKwargs) {
			return errors.New("task: llm: chatTemplateKwargs is not an object")
		}
	}
	return nil
}

// required sets *dst to *v, or says that the field name is missing when v
// is nil: the wire structs below decode a required string as a pointer
// beside the params' own field, so absent (or null) and "" differ in the
// same pass that reads everything else.
func required(dst, v *string, name string) string {
	if v == nil {
		return "missing " + name
	}
	*dst = *v
	return ""
}

// wireMessage is a Message as decoded, its role a pointer to tell absent
// from "" (it shadows Message's own).
type wireMessage struct {
	Message
	Role *string `json:"role"`
}

// MarshalJSON writes {"kind": …} followed by the kind's parameters.
func (t Task) MarshalJSON() ([]byte, error) {
	var params any
	switch {
	case t.Image != nil:
		params = t.Image
	case t.LLM != nil:
		params = t.LLM
	case t.STT != nil:
		params = t.STT
	case t.TTS != nil:
		params = t.TTS
	case t.Video != nil:
		params = t.Video
	}
	kind, err := json.Marshal(string(t.Kind))
	if err != nil {
		return nil, err
	}
	if params == nil {
		return []byte(`{"kind":` + string(kind) + `}`), nil
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("task: %w", err)
	}
	return prependField("kind", kind, body), nil
}

// UnmarshalJSON reads a kind-tagged task. A missing kind is an error; an
// unknown kind is not (see [Task]).
func (t *Task) UnmarshalJSON(b []byte) error {
	kind, ok := peekString(b, "kind")
	if !ok {
		var head struct {
			Kind *string `json:"kind"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return fmt.Errorf("task: %w", err)
		}
		if head.Kind == nil {
			return errors.New("task: missing kind")
		}
		kind = *head.Kind
	}
	out := Task{Kind: TaskKind(kind)}
	var err error
	switch out.Kind {
	case KindImage:
		var w struct {
			ImageParams
			Prompt *string `json:"prompt"`
		}
		if err = json.Unmarshal(b, &w); err == nil {
			out.Image = &w.ImageParams
			out.absent = required(&out.Image.Prompt, w.Prompt, "prompt")
		}
	case KindLLM:
		var w struct {
			LlmParams
			Messages []wireMessage `json:"messages"`
		}
		if err = json.Unmarshal(b, &w); err == nil {
			out.LLM = &w.LlmParams
			if w.Messages != nil {
				out.LLM.Messages = make([]Message, len(w.Messages))
			}
			for i, m := range w.Messages {
				out.LLM.Messages[i] = m.Message
				if a := required(&out.LLM.Messages[i].Role, m.Role, "role"); a != "" && out.absent == "" {
					out.absent = fmt.Sprintf("messages[%d]: %s", i, a)
				}
			}
			compactRaw(&out.LLM.JSONSchema)
			compactRaw(&out.LLM.ChatTemplateKwargs)
			if len(out.LLM.Stop) == 0 {
				out.LLM.Stop = nil // absent and [] mean the same: no stop strings
			}
		}
	case KindAudioSTT:
		var w struct {
			AudioSttParams
			InputURL *string `json:"inputUrl"`
		}
		if err = json.Unmarshal(b, &w); err == nil {
			out.STT = &w.AudioSttParams
			out.absent = required(&out.STT.InputURL, w.InputURL, "inputUrl")
		}
	case KindAudioTTS:
		var w struct {
			AudioTtsParams
			Text *string `json:"text"`
		}
		if err = json.Unmarshal(b, &w); err == nil {
			out.TTS = &w.AudioTtsParams
			out.absent = required(&out.TTS.Text, w.Text, "text")
		}
	case KindVideo:
		var w struct {
			VideoParams
			Prompt *string `json:"prompt"`
		}
		if err = json.Unmarshal(b, &w); err == nil {
			out.Video = &w.VideoParams
			out.absent = required(&out.Video.Prompt, w.Prompt, "prompt")
		}
	}
	if err != nil {
		return fmt.Errorf("task: %s: %w", out.Kind, err)
	}
	*t = out
	return nil
}

// prependField returns the JSON object obj with "name":value inserted first.
func prependField(name string, value, obj []byte) []byte {
	key, _ := json.Marshal(name)
	var buf bytes.Buffer
	buf.Grow(len(key) + len(value) + len(obj) + 2)
	buf.WriteByte('{')
	buf.Write(key)
	buf.WriteByte(':')
	buf.Write(value)
	rest := bytes.TrimSpace(obj)
	rest = bytes.TrimSpace(rest[1:]) // drop '{'
	if len(rest) > 0 && rest[0] != '}' {
		buf.WriteByte(',')
	}
	buf.Write(rest)
	return buf.Bytes()
}

// compactRaw normalises a received raw JSON value: null becomes absent (nil)
// and insignificant whitespace is removed, so decoded values compare equal.
func compactRaw(r *json.RawMessage) {
	if len(*r) == 0 {
		return
	}
	t := bytes.TrimSpace(*r)
	if bytes.Equal(t, []byte("null")) {
		*r = nil
		return
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err == nil {
		*r = buf.Bytes()
	}
}

func isJSONObject(r json.RawMessage) bool {
	t := bytes.TrimSpace(r)
	return len(t) > 0 && t[0] == '{'
}

func isJSONContainer(r json.RawMessage) bool {
	t := bytes.TrimSpace(r)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

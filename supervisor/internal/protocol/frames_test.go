package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func testCaps() WorkerCapabilities {
	return WorkerCapabilities{
		MachineName: "render-07", Username: "ops", AgentVersion: "0.1.0", Engine: "multi",
		VramTotalGb: 23.99, VramThresholdGb: 20, AutoEnabled: true, AutoStart: true,
		SupportedModels: []string{"llama-cpp:*", "sd-cpp:*", "synthetic", "synthetic-image"},
		TaskKinds:       []TaskKind{KindImage, KindLLM},
		SupportedModelsPerKind: map[TaskKind][]string{
			KindImage: {"sd-cpp:*", "synthetic", "synthetic-image"},
			KindLLM:   {"llama-cpp:*"},
		},
		AutoUpdate: true, StartMinimised: true, OnlyWhenIdle: false, UserPresence: PresenceActive,
	}
}

func syntheticSource() *ModelSource {
	return &ModelSource{Engine: "synthetic", Files: []ModelFile{}, CliDefaults: &ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}}
}

// goldenFrames maps each file in testdata/frames to the frame it holds.
var goldenFrames = map[string]Frame{
	"hello":     Hello{AuthToken: "7c1e0f3a9b2d4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6", Capabilities: testCaps()},
	"heartbeat": Heartbeat{Capabilities: testCaps(), CurrentJobID: "job-311"},
	"heartbeat-idle": Heartbeat{Capabilities: WorkerCapabilities{
		MachineName: "render-07", Username: "ops", AgentVersion: "0.1.0", Engine: "multi",
		VramThresholdGb: 12, AutoStart: true,
		SupportedModels: []string{}, TaskKinds: []TaskKind{}, SupportedModelsPerKind: map[TaskKind][]string{},
	}},
	"accept":      Accept{JobID: "job-311"},
	"reject":      Reject{JobID: "job-312", Reason: ReasonBusy, Code: RejectBusy},
	"reject-seed": Reject{JobID: "job-313", Reason: "cannot serve video"},
	"completeJson": CompleteJSON{JobID: "job-311", Prompt: "Say hello", Result: json.RawMessage(
		`{"object":"chat.completion","model":"qwen3-4b","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15},"elapsed_ms":840}`)},
	"fail":       Fail{JobID: "job-311", Error: "sd-cli exited with Some(1): out of memory", Retryable: true},
	"fail-final": Fail{JobID: "job-314", Error: "cannot serve video", Retryable: false},
	"logBatch": LogBatch{Entries: []LogEntry{
		{Ts: "2026-06-11T09:14:03.512Z", Level: LevelInfo, Category: "ws", Message: "json result sent", JobID: "job-311"},
		{Ts: "2026-06-11T09:14:04.001Z", Level: LevelWarn, Category: "ws", Message: "disconnected; reconnect attempt 1 in 1000ms"},
	}},
	"readyForMore": ReadyForMore{},
	"welcome":      Welcome{WorkerID: "w-9f2c", ServerTime: "2026-06-11T09:13:58.204Z"},
	"offer": Offer{Claim: JobOfferClaim{
		JobID: "job-311", GameID: "g-elements", AssetName: "g-elements/dialogue/elder-line", Model: "qwen3-4b", VramGbEstimate: 6,
		Task: &Task{Kind: KindLLM, LLM: &LlmParams{Messages: []Message{{Role: "user", Content: "Say hello"}}, MaxTokens: ptr[uint32](64)}},
		ModelSource: &ModelSource{Engine: EngineLlamaCpp,
			Files:       []ModelFile{{Role: RoleModel, URL: "https://cdn.example/q.gguf", Filename: "q.gguf"}},
			CliDefaults: &ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1, ContextSize: ptr[uint32](8192)}},
	}},
	"offer-image": Offer{Claim: JobOfferClaim{
		JobID: "job-400", GameID: "g-golems", AssetName: "g-golems/creatures/moss-golem", Model: "z-image-turbo", VramGbEstimate: 9.5,
		Task: &Task{Kind: KindImage, Image: &ImageParams{
			Prompt: "a moss golem at dawn", NegativePrompt: "text, watermark",
			InitImageURL: "https://cdn.example/g/golem/latest.webp", MaskURL: "https://cdn.example/g/golem/mask.png",
			Denoise: ptr[float32](0.6), Width: ptr[uint32](1024), Height: ptr[uint32](1024), Seed: ptr[uint64](42), Ext: "webp"}},
		ModelSource: &ModelSource{Engine: EngineSdCpp, Files: []ModelFile{
			{Role: RoleDiffusionModel, URL: "https://huggingface.co/o/r/resolve/main/z_image_turbo-Q4_K.gguf", Filename: "z_image_turbo-Q4_K.gguf",
				ApproxBytes: ptr[uint64](4100000000), Sha256: "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"},
			{Role: RoleTextEncoder, URL: "https://huggingface.co/o/r2/resolve/main/Qwen3-4B-Q4_K_M.gguf", Filename: "Qwen3-4B-Q4_K_M.gguf"},
			{Role: RoleVAE, URL: "https://huggingface.co/o/r3/resolve/main/ae.safetensors", Filename: "ae.safetensors"},
		}, CliDefaults: &ModelCliDefaults{CfgScale: 1, Steps: 8, Width: 1024, Height: 1024, SamplingMethod: "euler"}},
	}},
	"offer-stt": Offer{Claim: JobOfferClaim{
		JobID: "job-500", GameID: "g-elements", AssetName: "g-elements/audio/clip-17", Model: "synthetic-stt",
		Task:        &Task{Kind: KindAudioSTT, STT: &AudioSttParams{InputURL: "https://r2.example/signed/clip-17.wav?sig=abc", Timestamps: "segment"}},
		ModelSource: syntheticSource(),
	}},
	"offer-tts": Offer{Claim: JobOfferClaim{
		JobID: "job-501", GameID: "g-elements", AssetName: "g-elements/audio/welcome", Model: "synthetic-tts", VramGbEstimate: 0.5,
		Task:        &Task{Kind: KindAudioTTS, TTS: &AudioTtsParams{Text: "Welcome back, traveller.", Voice: "narrator", Speed: ptr[float32](1.1), Ext: "wav"}},
		ModelSource: syntheticSource(),
	}},
	"offer-video": Offer{Claim: JobOfferClaim{
		JobID: "job-502", GameID: "g-boats", AssetName: "g-boats/clips/paper-boat", Model: "synthetic-video", VramGbEstimate: 4,
		Task: &Task{Kind: KindVideo, Video: &VideoParams{Prompt: "a paper boat drifting", Seconds: ptr[float32](3),
			Fps: ptr[uint32](12), Width: ptr[uint32](512), Height: ptr[uint32](512)}},
		ModelSource: syntheticSource(),
	}},
	"offer-llm-full": Offer{Claim: JobOfferClaim{
		JobID: "job-503", GameID: "g-elements", AssetName: "g-elements/dialogue/json", Model: "qwen3-4b", VramGbEstimate: 6,
		Task: &Task{Kind: KindLLM, LLM: &LlmParams{
			Messages: []Message{{Role: "system", Content: "Be terse."}, {Role: "user", Content: "List three colours"}},
			System:   "You are a game writer.", MaxTokens: ptr[uint32](128), Temperature: ptr[float32](0.2), TopP: ptr[float32](0.9),
			Stop: []string{"\n\n"}, JSONSchema: json.RawMessage(`{"type":"object","properties":{"colours":{"type":"array"}}}`),
			Reasoning: "low", ChatTemplateKwargs: json.RawMessage(`{"enable_thinking":false}`)}},
		ModelSource: &ModelSource{Engine: EngineLlamaCpp,
			Files: []ModelFile{{Role: RoleModel, URL: "https://cdn.example/q.gguf", Filename: "q.gguf", ApproxBytes: ptr[uint64](2500000000)}},
			CliDefaults: &ModelCliDefaults{CfgScale: 1, Steps: 8, Width: 1, Height: 1, FlowShift: ptr[float32](3), ZeroCondT: true,
				OffloadToCPU: true, ContextSize: ptr[uint32](4096), ChatTemplateKwargs: json.RawMessage(`{"enable_thinking":true}`)}},
	}},
	"heartbeatAck": HeartbeatAck{},
	"completeAck":  CompleteAck{JobID: "job-311"},
	"failAck":      FailAck{JobID: "job-311"},
	"error":        Error{Code: CodeProtocolViolation, Message: "accept for unknown jobId"},
}

// normJSON re-encodes a JSON document through any, so key order and
// whitespace do not matter.
func normJSON(t testing.TB, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestGoldenFrames(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "frames", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(goldenFrames) {
		t.Errorf("got %d golden files, want %d (one per table entry)", len(files), len(goldenFrames))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			want, ok := goldenFrames[name]
			if !ok {
				t.Fatalf("no table entry for %s", file)
			}
			golden, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := Encode(want)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if got, wantJ := normJSON(t, enc), normJSON(t, golden); got != wantJ {
				t.Errorf("Encode:\n got %s\nwant %s", got, wantJ)
			}
			if !bytes.HasPrefix(enc, []byte(`{"type":"`+TypeOf(want)+`"`)) {
				t.Errorf("Encode: got %s, want type first", enc)
			}
			got, err := Decode(golden)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode:\n got %#v\nwant %#v", got, want)
			}
			if o, ok := got.(Offer); ok {
				if err := o.Claim.Validate(); err != nil {
					t.Errorf("Validate: got %v, want nil", err)
				}
			}
		})
	}
}

func TestEncodeOmitsAbsentOptionals(t *testing.T) {
	tests := []struct {
		name   string
		frame  Frame
		absent []string
	}{
		{"heartbeat idle", Heartbeat{}, []string{"currentJobId", "userPresence", "null"}},
		{"reject without code", Reject{JobID: "j", Reason: "x"}, []string{"code", "null"}},
		{"completeJson without prompt", CompleteJSON{JobID: "j", Result: json.RawMessage(`{}`)}, []string{"prompt", "null"}},
		{"log entry without job", LogBatch{Entries: []LogEntry{{Ts: "t", Level: "info", Category: "ws", Message: "m"}}}, []string{"jobId", "null"}},
		{"nil batch", LogBatch{}, []string{"null"}},
		{"pointer frame", &Accept{JobID: "j"}, []string{"null"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range tt.absent {
				if bytes.Contains(b, []byte(key)) {
					t.Errorf("got %s, want no %q", b, key)
				}
			}
		})
	}
	b, _ := Encode(Heartbeat{})
	for _, key := range []string{`"supportedModels":[]`, `"taskKinds":[]`, `"supportedModelsPerKind":{}`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("got %s, want %s", b, key)
		}
	}
	b, _ = Encode(LogBatch{})
	if got, want := string(b), `{"type":"logBatch","entries":[]}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDecodeAcceptsNullAndUnknown(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Frame
	}{
		{"null currentJobId", `{"type":"heartbeat","capabilities":{"machineName":"m"},"currentJobId":null}`,
			Heartbeat{Capabilities: WorkerCapabilities{MachineName: "m", SupportedModels: []string{}, TaskKinds: []TaskKind{}, SupportedModelsPerKind: map[TaskKind][]string{}}}},
		{"null reject code", `{"type":"reject","jobId":"j","reason":"r","code":null}`, Reject{JobID: "j", Reason: "r"}},
		{"null prompt", `{"type":"completeJson","jobId":"j","result":[1],"prompt":null}`, CompleteJSON{JobID: "j", Result: json.RawMessage(`[1]`)}},
		{"unknown properties", `{"type":"welcome","workerId":"w","serverTime":"now","extra":{"a":[1,2]},"z":null}`, Welcome{WorkerID: "w", ServerTime: "now"}},
		{"type not first", `{"jobId":"j","type":"accept"}`, Accept{JobID: "j"}},
		{"empty log batch", `{"type":"logBatch","entries":[]}`, LogBatch{Entries: []LogEntry{}}},
		{"error without message", `{"type":"error","code":"worker_deleted"}`, Error{Code: CodeWorkerDeleted}},
		{"null optionals in task", `{"type":"offer","claim":{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,
			"task":{"kind":"audio_stt","inputUrl":"https://x/a.wav","language":null,"translate":null,"extra":1},
			"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1,"contextSize":null,"chatTemplateKwargs":null}}}}`,
			Offer{Claim: JobOfferClaim{JobID: "j", GameID: "g", AssetName: "a", Model: "m", VramGbEstimate: 1,
				Task:        &Task{Kind: KindAudioSTT, STT: &AudioSttParams{InputURL: "https://x/a.wav"}},
				ModelSource: syntheticSource()}}},
		{"null llm raw fields", `{"type":"offer","claim":{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,
			"task":{"kind":"llm","messages":[],"jsonSchema":null,"chatTemplateKwargs":null,"maxTokens":null},
			"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}}`,
			Offer{Claim: JobOfferClaim{JobID: "j", GameID: "g", AssetName: "a", Model: "m", VramGbEstimate: 1,
				Task:        &Task{Kind: KindLLM, LLM: &LlmParams{Messages: []Message{}}},
				ModelSource: syntheticSource()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		unknown bool // want ErrUnknownFrame rather than ErrMalformed
	}{
		{"unknown type", `{"type":"cancel","jobId":"j"}`, true},
		{"unknown type, odd fields", `{"type":"helloWorld","x":[}`, false},
		{"empty", ``, false},
		{"not json", `hello`, false},
		{"truncated", `{"type":"accept","jobId":"j"`, false},
		{"array", `[{"type":"accept"}]`, false},
		{"string", `"accept"`, false},
		{"null", `null`, false},
		{"no type", `{"jobId":"j"}`, false},
		{"null type", `{"type":null}`, false},
		{"numeric type", `{"type":7}`, false},
		{"wrong field type", `{"type":"accept","jobId":5}`, false},
		{"accept without jobId", `{"type":"accept"}`, false},
		{"reject without reason", `{"type":"reject","jobId":"j"}`, false},
		{"fail without retryable", `{"type":"fail","jobId":"j","error":"e"}`, false},
		{"fail with string retryable", `{"type":"fail","jobId":"j","error":"e","retryable":"yes"}`, false},
		{"completeJson scalar result", `{"type":"completeJson","jobId":"j","result":"text"}`, false},
		{"completeJson no result", `{"type":"completeJson","jobId":"j"}`, false},
		{"hello without token", `{"type":"hello","capabilities":{}}`, false},
		{"hello without capabilities", `{"type":"hello","authToken":"t"}`, false},
		{"heartbeat null capabilities", `{"type":"heartbeat","capabilities":null}`, false},
		{"welcome without workerId", `{"type":"welcome","serverTime":"now"}`, false},
		{"offer without claim", `{"type":"offer"}`, false},
		{"offer without jobId", `{"type":"offer","claim":{"task":{"kind":"image","prompt":"p"}}}`, false},
		{"offer claim not object", `{"type":"offer","claim":"job-1"}`, false},
		{"error without code", `{"type":"error","message":"m"}`, false},
		{"logBatch without entries", `{"type":"logBatch"}`, false},
		{"logBatch bad entry", `{"type":"logBatch","entries":[1]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("got %#v, want an error", f)
			}
			if got := errors.Is(err, ErrUnknownFrame); got != tt.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownFrame) = %v, want %v", err, got, tt.unknown)
			}
			if got := errors.Is(err, ErrMalformed); got == tt.unknown {
				t.Errorf("errors.Is(%v, ErrMalformed) = %v, want %v", err, got, !tt.unknown)
			}
		})
	}
}

func TestEncodeNil(t *testing.T) {
	if _, err := Encode(nil); err == nil {
		t.Error("Encode(nil): got nil error")
	}
}

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		code  ErrorCode
		close int
	}{
		{CodeAuthFailed, 4001}, {CodeProtocolViolation, 4002}, {CodeDuplicateWorker, 4003},
		{CodeWorkerDeleted, 4004}, {CodeInternalError, 1000},
	}
	for _, tt := range tests {
		if got := tt.code.CloseCode(); got != tt.close {
			t.Errorf("%s.CloseCode() = %d, want %d", tt.code, got, tt.close)
		}
		back, ok := ErrorCodeForClose(tt.close)
		if !ok || back != tt.code {
			t.Errorf("ErrorCodeForClose(%d) = %q, %v; want %q, true", tt.close, back, ok, tt.code)
		}
	}
	if _, ok := ErrorCodeForClose(1006); ok {
		t.Error("ErrorCodeForClose(1006): got ok, want not")
	}
	if got := ErrorCode("nope").CloseCode(); got != 1000 {
		t.Errorf("unknown code: got %d, want 1000", got)
	}
	var e error = Error{Code: CodeAuthFailed, Message: "bad token"}
	if got, want := e.Error(), "studio error auth_failed: bad token"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, tt := range []struct {
		code RejectCode
		want bool
	}{{RejectBusy, true}, {RejectPaused, true}, {"", false}, {"other", false}} {
		if got := tt.code.Transient(); got != tt.want {
			t.Errorf("%q.Transient() = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestHelloRedactsToken(t *testing.T) {
	h := Hello{AuthToken: "s3cr3t-token", Capabilities: testCaps()}
	for _, s := range []string{h.String(), h.GoString()} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("got %q, want the token redacted", s)
		}
	}
}

// BenchmarkDecodeOffer decodes a small llm offer, as the worker does for
// every job.
func BenchmarkDecodeOffer(b *testing.B) {
	frame := []byte(`{"type":"offer","claim":{"jobId":"job-123456","gameId":"g-1","assetName":"hero.png","model":"synthetic-llm","task":{"kind":"llm","messages":[{"role":"user","content":"Say hello to the farm"}],"maxTokens":16},"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}},"vramGbEstimate":0}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

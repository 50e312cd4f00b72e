package plugins

import (
	"errors"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// This file is the only one that knows the generated proto types: every
// conversion between them and the SDK's Go types lives here.

func describeToProto(d *Description) *enginev1.DescribeResponse {
	out := &enginev1.DescribeResponse{
		Name:            d.Name,
		Version:         d.Version,
		ContractVersion: d.ContractVersion,
		Engines:         d.Engines,
		Device: &enginev1.Device{
			Backend:          d.Device.Backend,
			Name:             d.Device.Name,
			MemoryTotalBytes: d.Device.MemoryTotal,
			MemoryFreeBytes:  d.Device.MemoryFree,
		},
		Ready:          d.Ready,
		NotReadyReason: d.NotReadyReason,
	}
	if out.ContractVersion == 0 {
		out.ContractVersion = ContractVersion
	}
	for _, k := range d.Kinds {
		out.Kinds = append(out.Kinds, string(k))
	}
	// Emit per-kind models in the canonical kind order so the wire form
	// is deterministic.
	for _, k := range AllKinds {
		if m, ok := d.Models[k]; ok {
			out.Models = append(out.Models, &enginev1.KindModels{Kind: string(k), Models: m})
		}
	}
	return out
}

func describeFromProto(p *enginev1.DescribeResponse) *Description {
	d := &Description{
		Name:            p.GetName(),
		Version:         p.GetVersion(),
		ContractVersion: p.GetContractVersion(),
		Engines:         p.GetEngines(),
		Device: Device{
			Backend:     p.GetDevice().GetBackend(),
			Name:        p.GetDevice().GetName(),
			MemoryTotal: p.GetDevice().GetMemoryTotalBytes(),
			MemoryFree:  p.GetDevice().GetMemoryFreeBytes(),
		},
		Ready:          p.GetReady(),
		NotReadyReason: p.GetNotReadyReason(),
	}
	for _, k := range p.GetKinds() {
		d.Kinds = append(d.Kinds, TaskKind(k))
	}
	if len(p.GetModels()) > 0 {
		d.Models = make(map[TaskKind][]string, len(p.GetModels()))
		for _, km := range p.GetModels() {
			d.Models[TaskKind(km.GetKind())] = append(d.Models[TaskKind(km.GetKind())], km.GetModels()...)
		}
	}
	return d
}

func runRequestToProto(r *RunRequest) *enginev1.RunRequest {
	out := &enginev1.RunRequest{
		JobId:      r.JobID,
		Model:      r.Model,
		Engine:     r.Engine,
		StreamText: r.StreamText,
		Task:       taskToProto(&r.Task),
		Defaults: &enginev1.CliDefaults{
			CfgScale:               r.Defaults.CfgScale,
			Steps:                  r.Defaults.Steps,
			Width:                  r.Defaults.Width,
			Height:                 r.Defaults.Height,
			SamplingMethod:         r.Defaults.SamplingMethod,
			FlowShift:              r.Defaults.FlowShift,
			ZeroCondT:              r.Defaults.ZeroCondT,
			OffloadToCpu:           r.Defaults.OffloadToCPU,
			ContextSize:            r.Defaults.ContextSize,
			ChatTemplateKwargsJson: r.Defaults.ChatTemplateKwargs,
		},
		Inputs: &enginev1.Inputs{
			InitImage: r.Inputs.InitImage,
			Mask:      r.Inputs.Mask,
			RefImage:  r.Inputs.RefImage,
			Audio:     r.Inputs.Audio,
		},
	}
	for _, f := range r.Files {
		out.Files = append(out.Files, &enginev1.ModelFile{Role: f.Role, Path: f.Path})
	}
	return out
}

func taskToProto(t *Task) *enginev1.Task {
	switch {
	case t.Image != nil:
		i := t.Image
		return &enginev1.Task{Kind: &enginev1.Task_Image{Image: &enginev1.ImageTask{
			Prompt: i.Prompt, NegativePrompt: i.NegativePrompt, Denoise: i.Denoise,
			CfgScale: i.CfgScale, SamplingMethod: i.SamplingMethod, Width: i.Width,
			Height: i.Height, Steps: i.Steps, Seed: i.Seed, Ext: i.Ext,
		}}}
	case t.LLM != nil:
		l := t.LLM
		p := &enginev1.LlmTask{
			System: l.System, MaxTokens: l.MaxTokens, Temperature: l.Temperature,
			TopP: l.TopP, Seed: l.Seed, Stop: l.Stop, JsonSchema: l.JSONSchema,
			Reasoning: l.Reasoning, ChatTemplateKwargsJson: l.ChatTemplateKwargs,
		}
		for _, m := range l.Messages {
			p.Messages = append(p.Messages, &enginev1.ChatMessage{Role: m.Role, Content: m.Content})
		}
		return &enginev1.Task{Kind: &enginev1.Task_Llm{Llm: p}}
	case t.STT != nil:
		s := t.STT
		return &enginev1.Task{Kind: &enginev1.Task_AudioStt{AudioStt: &enginev1.AudioSttTask{
			InputUrl: s.InputURL, Language: s.Language, Translate: s.Translate,
			Prompt: s.Prompt, Vad: s.VAD, Timestamps: s.Timestamps,
		}}}
	case t.TTS != nil:
		s := t.TTS
		return &enginev1.Task{Kind: &enginev1.Task_AudioTts{AudioTts: &enginev1.AudioTtsTask{
			Text: s.Text, Voice: s.Voice, Speed: s.Speed, Language: s.Language, Ext: s.Ext,
		}}}
	case t.Video != nil:
		v := t.Video
		return &enginev1.Task{Kind: &enginev1.Task_Video{Video: &enginev1.VideoTask{
			Prompt: v.Prompt, NegativePrompt: v.NegativePrompt, Seconds: v.Seconds,
			Fps: v.FPS, Width: v.Width, Height: v.Height, Ext: v.Ext,
		}}}
	}
	return &enginev1.Task{}
}

var errNoTask = errors.New("run request carries no task")

func runRequestFromProto(p *enginev1.RunRequest) (*RunRequest, error) {
	d := p.GetDefaults()
	r := &RunRequest{
		JobID:      p.GetJobId(),
		Model:      p.GetModel(),
		Engine:     p.GetEngine(),
		StreamText: p.GetStreamText(),
		Defaults: Defaults{
			CfgScale:           d.GetCfgScale(),
			Steps:              d.GetSteps(),
			Width:              d.GetWidth(),
			Height:             d.GetHeight(),
			SamplingMethod:     d.GetSamplingMethod(),
			FlowShift:          d.FlowShift,
			ZeroCondT:          d.GetZeroCondT(),
			OffloadToCPU:       d.GetOffloadToCpu(),
			ContextSize:        d.GetContextSize(),
			ChatTemplateKwargs: nilIfEmpty(d.GetChatTemplateKwargsJson()),
		},
		Inputs: Inputs{
			InitImage: p.GetInputs().GetInitImage(),
			Mask:      p.GetInputs().GetMask(),
			RefImage:  p.GetInputs().GetRefImage(),
			Audio:     p.GetInputs().GetAudio(),
		},
	}
	for _, f := range p.GetFiles() {
		r.Files = append(r.Files, ModelFile{Role: f.GetRole(), Path: f.GetPath()})
	}
	switch k := p.GetTask().GetKind().(type) {
	case *enginev1.Task_Image:
		i := k.Image
		r.Task = Task{Kind: KindImage, Image: &ImageTask{
			Prompt: i.GetPrompt(), NegativePrompt: i.GetNegativePrompt(), Denoise: i.Denoise,
			CfgScale: i.GetCfgScale(), SamplingMethod: i.GetSamplingMethod(), Width: i.GetWidth(),
			Height: i.GetHeight(), Steps: i.GetSteps(), Seed: i.Seed, Ext: i.GetExt(),
		}}
	case *enginev1.Task_Llm:
		l := k.Llm
		t := &LLMTask{
			System: l.GetSystem(), MaxTokens: l.GetMaxTokens(), Temperature: l.GetTemperature(),
			TopP: l.TopP, Seed: l.Seed, Stop: l.GetStop(), JSONSchema: nilIfEmpty(l.GetJsonSchema()),
			Reasoning: l.GetReasoning(), ChatTemplateKwargs: nilIfEmpty(l.GetChatTemplateKwargsJson()),
		}
		for _, m := range l.GetMessages() {
			t.Messages = append(t.Messages, Message{Role: m.GetRole(), Content: m.GetContent()})
		}
		r.Task = Task{Kind: KindLLM, LLM: t}
	case *enginev1.Task_AudioStt:
		s := k.AudioStt
		r.Task = Task{Kind: KindSTT, STT: &STTTask{
			InputURL: s.GetInputUrl(), Language: s.GetLanguage(), Translate: s.GetTranslate(),
			Prompt: s.GetPrompt(), VAD: s.GetVad(), Timestamps: s.GetTimestamps(),
		}}
	case *enginev1.Task_AudioTts:
		s := k.AudioTts
		r.Task = Task{Kind: KindTTS, TTS: &TTSTask{
			Text: s.GetText(), Voice: s.GetVoice(), Speed: s.GetSpeed(), Language: s.GetLanguage(), Ext: s.GetExt(),
		}}
	case *enginev1.Task_Video:
		v := k.Video
		r.Task = Task{Kind: KindVideo, Video: &VideoTask{
			Prompt: v.GetPrompt(), NegativePrompt: v.GetNegativePrompt(), Seconds: v.GetSeconds(),
			FPS: v.GetFps(), Width: v.GetWidth(), Height: v.GetHeight(), Ext: v.GetExt(),
		}}
	default:
		return nil, errNoTask
	}
	return r, nil
}

func jobErrorFromProto(p *enginev1.JobError) *JobError {
	kind := ErrorKind(p.GetKind())
	switch kind {
	case ErrEngine, ErrUnsupported, ErrBadInput, ErrNodeLimit, ErrOutOfMemory:
	default:
		// A plugin may only claim the kinds a plugin can know; anything
		// else (including supervisor-only kinds such as "poison") is an
		// engine error, so a plugin cannot make a job non-retryable by
		// inventing a kind.
		kind = ErrEngine
	}
	return &JobError{Kind: kind, Message: cutLine(p.GetMessage())}
}

func residentToProto(models []ResidentModel) *enginev1.ListResidentResponse {
	out := &enginev1.ListResidentResponse{}
	for _, m := range models {
		out.Models = append(out.Models, &enginev1.ResidentModel{
			Model: m.Model, Bytes: m.Bytes, LastUsedUnixMs: m.LastUsedUnixMs,
		})
	}
	return out
}

func residentFromProto(p *enginev1.ListResidentResponse) []ResidentModel {
	var out []ResidentModel
	for _, m := range p.GetModels() {
		out = append(out, ResidentModel{Model: m.GetModel(), Bytes: m.GetBytes(), LastUsedUnixMs: m.GetLastUsedUnixMs()})
	}
	return out
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

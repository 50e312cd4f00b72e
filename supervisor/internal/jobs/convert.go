package jobs

import (
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// This file turns the studio's claim into the engine contract's request:
// its task with the spec's defaults applied, the model's defaults, its
// files as the model store takes them, and its inputs. The tests hold the
// result for every kind in testdata/requests (convert_test.go).

// taskFromClaim converts a validated claim's task, with spec §6.2 defaults
// applied.
func taskFromClaim(t protocol.Task) plugins.Task {
	t = t.WithDefaults()
	out := plugins.Task{Kind: plugins.TaskKind(t.Kind)}
	switch {
	case t.Image != nil:
		p := t.Image
		out.Image = &plugins.ImageTask{
			Prompt: p.Prompt, NegativePrompt: p.NegativePrompt, Denoise: p.Denoise,
			CfgScale: deref(p.CfgScale), SamplingMethod: p.SamplingMethod,
			Width: deref(p.Width), Height: deref(p.Height), Steps: deref(p.Steps),
			Seed: p.Seed, Ext: p.Ext,
		}
	case t.LLM != nil:
		p := t.LLM
		l := &plugins.LLMTask{
			System: p.System, MaxTokens: deref(p.MaxTokens), Temperature: deref(p.Temperature),
			TopP: p.TopP, Stop: p.Stop, JSONSchema: nonNull(p.JSONSchema), Reasoning: p.Reasoning,
			ChatTemplateKwargs: nonNull(p.ChatTemplateKwargs),
		}
		for _, m := range p.Messages {
			l.Messages = append(l.Messages, plugins.Message{Role: m.Role, Content: m.Content})
		}
		out.LLM = l
	case t.STT != nil:
		p := t.STT
		out.STT = &plugins.STTTask{
			InputURL: p.InputURL, Language: p.Language, Translate: p.Translate,
			Prompt: p.Prompt, VAD: p.Vad, Timestamps: p.Timestamps,
		}
	case t.TTS != nil:
		p := t.TTS
		out.TTS = &plugins.TTSTask{Text: p.Text, Voice: p.Voice, Speed: deref(p.Speed), Language: p.Language, Ext: p.Ext}
	case t.Video != nil:
		p := t.Video
		out.Video = &plugins.VideoTask{
			Prompt: p.Prompt, NegativePrompt: p.NegativePrompt, Seconds: deref(p.Seconds),
			FPS: deref(p.Fps), Width: deref(p.Width), Height: deref(p.Height), Ext: p.Ext,
		}
	}
	return out
}

func defaultsFromClaim(d *protocol.ModelCliDefaults) plugins.Defaults {
	if d == nil {
		return plugins.Defaults{}
	}
	return plugins.Defaults{
		CfgScale: d.CfgScale, Steps: d.Steps, Width: d.Width, Height: d.Height,
		SamplingMethod: d.SamplingMethod, FlowShift: d.FlowShift, ZeroCondT: d.ZeroCondT,
		OffloadToCPU: d.OffloadToCPU, ContextSize: deref(d.ContextSize),
		ChatTemplateKwargs: nonNull(d.ChatTemplateKwargs),
	}
}

// ModelFiles returns the model files of a model source as the model store
// takes them.
func ModelFiles(src *protocol.ModelSource) []models.File {
	out := make([]models.File, 0, len(src.Files))
	for _, f := range src.Files {
		out = append(out, models.File{
			Role: f.Role, URL: f.URL, Filename: f.Filename,
			ApproxBytes: deref(f.ApproxBytes), SHA256: f.Sha256,
		})
	}
	return out
}

// input is one task input URL and where its local path goes.
type input struct {
	url  string
	kind models.InputKind
	dst  *string
}

// inputsOf lists the task's input URLs with the request fields their paths
// fill.
func inputsOf(t protocol.Task, in *plugins.Inputs) []input {
	var out []input
	add := func(url string, kind models.InputKind, dst *string) {
		if url != "" {
			out = append(out, input{url, kind, dst})
		}
	}
	switch {
	case t.Image != nil:
		add(t.Image.InitImageURL, models.InputInitImage, &in.InitImage)
		add(t.Image.MaskURL, models.InputMask, &in.Mask)
		add(t.Image.RefImageURL, models.InputRefImage, &in.RefImage)
	case t.Video != nil:
		add(t.Video.InitImageURL, models.InputInitImage, &in.InitImage)
	case t.STT != nil:
		add(t.STT.InputURL, models.InputAudio, &in.Audio)
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// nonNull returns nil for an absent or JSON-null value.
func nonNull(b []byte) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

package jobs

import (
	"math"

	"github.com/stokerhq/stoker/plugins"
)

// The bounds on a task's values, checked before anything is fetched or
// run. The studio is trusted to send sane jobs but not to be right: a
// width of 4294967295 would make an engine try to allocate the impossible.
// Each bound is far above what a real job asks for, so none ever refuses
// one; a job over a bound fails as node_limit, which is retryable (a bound
// is this node's, and the studio's attempt count ends the retries).
const (
	// MaxSide bounds an image or video width and height, in pixels. Real
	// jobs ask for 512 to 2048; WebP, the image engine's output format,
	// cannot encode a side over 16383.
	MaxSide = 16384
	// MaxSteps bounds the sampling steps of an image. Real jobs use 1 to
	// 150; 10000 is the most ComfyUI's sampler takes.
	MaxSteps = 10000
	// MaxVideoSeconds bounds a video's length. Video models make clips of
	// seconds; ten minutes is beyond any.
	MaxVideoSeconds = 600
	// MaxFPS bounds a video's frame rate; no video format in use goes
	// beyond 240.
	MaxFPS = 240
	// MaxTokens bounds an llm job's maxTokens. Engines clamp it to the
	// context left (spec §6.2); no model a node runs has a context of a
	// million tokens.
	MaxTokens = 1 << 20
	// MaxRequestText bounds the text a run request carries (prompts,
	// messages, stop strings, JSON schema, template arguments, ids): the
	// whole request must fit gRPC's default receive limit of 4 MiB in a
	// plugin (plugins built with this SDK, and plugins in other languages
	// with their gRPC's default). 3 MiB of text is about 750k tokens,
	// more than the context of any model a node runs.
	MaxRequestText = 3 << 20
)

// checkRequest returns a node_limit error when req is over a bound above,
// or a bad_input error for a value no node can run (a negative, NaN or
// infinite length of video).
func checkRequest(req *plugins.RunRequest) error {
	limit := func(what string, got, max uint64, unit string) error {
		if got > max {
			return plugins.Errorf(plugins.ErrNodeLimit, "%s %d is over this node's limit of %d%s", what, got, max, unit)
		}
		return nil
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	t := req.Task
	switch {
	case t.Image != nil:
		add(limit("image width", uint64(t.Image.Width), MaxSide, " pixels"))
		add(limit("image height", uint64(t.Image.Height), MaxSide, " pixels"))
		add(limit("image steps", uint64(t.Image.Steps), MaxSteps, ""))
	case t.Video != nil:
		s := float64(t.Video.Seconds)
		if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
			return plugins.Errorf(plugins.ErrBadInput, "video seconds %v: want a length of zero or more", s)
		}
		if s > MaxVideoSeconds {
			add(plugins.Errorf(plugins.ErrNodeLimit, "video seconds %.1f is over this node's limit of %d", s, MaxVideoSeconds))
		}
		add(limit("video width", uint64(t.Video.Width), MaxSide, " pixels"))
		add(limit("video height", uint64(t.Video.Height), MaxSide, " pixels"))
		add(limit("video fps", uint64(t.Video.FPS), MaxFPS, ""))
	case t.LLM != nil:
		add(limit("llm maxTokens", uint64(t.LLM.MaxTokens), MaxTokens, ""))
	}
	add(limit("model default width", uint64(req.Defaults.Width), MaxSide, " pixels"))
	add(limit("model default height", uint64(req.Defaults.Height), MaxSide, " pixels"))
	add(limit("model default steps", uint64(req.Defaults.Steps), MaxSteps, ""))
	add(limit("the task's text", uint64(requestText(req)), MaxRequestText, " bytes"))
	if len(errs) > 0 {
		return errs[0] // the first says enough; the others are alike
	}
	return nil
}

// requestText is the number of bytes of text req carries.
func requestText(req *plugins.RunRequest) int {
	n := len(req.JobID) + len(req.Model) + len(req.Engine) + len(req.Defaults.SamplingMethod) + len(req.Defaults.ChatTemplateKwargs)
	t := req.Task
	switch {
	case t.Image != nil:
		n += len(t.Image.Prompt) + len(t.Image.NegativePrompt) + len(t.Image.SamplingMethod) + len(t.Image.Ext)
	case t.LLM != nil:
		n += len(t.LLM.System) + len(t.LLM.JSONSchema) + len(t.LLM.Reasoning) + len(t.LLM.ChatTemplateKwargs)
		for _, m := range t.LLM.Messages {
			n += len(m.Role) + len(m.Content)
		}
		for _, s := range t.LLM.Stop {
			n += len(s)
		}
	case t.STT != nil:
		n += len(t.STT.InputURL) + len(t.STT.Language) + len(t.STT.Prompt) + len(t.STT.Timestamps)
	case t.TTS != nil:
		n += len(t.TTS.Text) + len(t.TTS.Voice) + len(t.TTS.Language) + len(t.TTS.Ext)
	case t.Video != nil:
		n += len(t.Video.Prompt) + len(t.Video.NegativePrompt) + len(t.Video.Ext)
	}
	return n
}

// The bounds on a binary result while it is spooled.
const (
	// DefaultMaxOutputBytes bounds a binary result. The largest real
	// ones: an image of 16383² at 4 bytes a pixel is 1 GiB uncompressed
	// (a WebP or PNG is far smaller), a few minutes of video a few
	// hundred MB. A result over it fails as bad input, not retryable:
	// every node has the same bound.
	DefaultMaxOutputBytes = 2 << 30
	// DefaultMinFreeBytes is the disk space the spool leaves free on its
	// file system: the model cache and the system share it. A result that
	// would eat into it fails as node_limit (a node with more disk may
	// take it).
	DefaultMinFreeBytes = 1 << 30
	// freeCheckEvery is how many spooled bytes pass between two checks of
	// the free space (a statfs costs microseconds; 64 MiB is a fraction of
	// a second of output).
	freeCheckEvery = 64 << 20
)

// errDiskFree is the node_limit error for a spool that would leave less than
// min free.
func errDiskFree(dir string, free, min uint64) error {
	return plugins.Errorf(plugins.ErrNodeLimit, "not enough disk to spool the result: %d bytes free under %s, and this node keeps %d free", free, dir, min)
}

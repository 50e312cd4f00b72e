package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// JobOfferClaim is the `claim` of an `offer` (§6.1).
//
// Decoding is lenient by design (see the package doc): once jobId is known,
// any problem with the rest of the claim (a wrong type, a cliDefaults number
// missing, an undecodable task) is kept and reported by [Validate], so the
// worker can reject that one job instead of dropping the session.
type JobOfferClaim struct {
	JobID          string  `json:"jobId"`
	GameID         string  `json:"gameId"`
	AssetName      string  `json:"assetName"`
	Model          string  `json:"model"`
	VramGbEstimate float32 `json:"vramGbEstimate"`
	// Task and ModelSource are required; nil means the studio left them out.
	Task        *Task        `json:"task"`
	ModelSource *ModelSource `json:"modelSource"`

	// invalid holds the decode error of a claim whose jobId was readable but
	// whose other fields were not.
	invalid error
	// absent names a required string the decoded claim lacked (or had as
	// null); "" when none. A claim built in Go has none absent.
	absent string
}

// Validate reports the first reason the claim must not be run, naming the
// field: a decode problem, a missing jobId, gameId, assetName, model, task or
// modelSource, or a problem found by [Task.Validate] or
// [ModelSource.Validate]. A nil result means the claim is complete.
//
// It accepts what the reference worker accepts: gameId and assetName must be
// present but may be empty strings (they are only logged; serde requires a
// String field and takes ""). jobId and model must not be empty: the job id
// names the upload route and the model the cache directory, and an empty one
// cannot be served (the reference would fail such a job at once).
func (c *JobOfferClaim) Validate() error {
	if c.invalid != nil {
		return c.invalid
	}
	switch {
	case c.JobID == "":
		return errors.New("claim: missing jobId")
	case c.absent != "":
		return fmt.Errorf("claim: missing %s", c.absent)
	case c.Model == "":
		return errors.New("claim: missing model")
	case c.Task == nil:
		return errors.New("claim: missing task")
	case c.ModelSource == nil:
		return errors.New("claim: missing modelSource")
	}
	if err := c.Task.Validate(); err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	if err := c.ModelSource.Validate(); err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	return nil
}

// UnmarshalJSON decodes a claim. It fails only when the value is not an
// object or jobId cannot be read; any other problem is kept for Validate.
func (c *JobOfferClaim) UnmarshalJSON(b []byte) error {
	type plain JobOfferClaim
	// gameId and assetName again, as pointers, to tell absent or null from
	// "" in the same pass: these fields shadow plain's.
	var p struct {
		plain
		GameID    *string `json:"gameId"`
		AssetName *string `json:"assetName"`
	}
	err := json.Unmarshal(b, &p)
	if err == nil {
		*c = JobOfferClaim(p.plain)
		if p.GameID != nil {
			c.GameID = *p.GameID
		}
		if p.AssetName != nil {
			c.AssetName = *p.AssetName
		}
		switch {
		case p.GameID == nil:
			c.absent = "gameId"
		case p.AssetName == nil:
			c.absent = "assetName"
		}
		return nil
	}
	var id struct {
		JobID *string `json:"jobId"`
	}
	if json.Unmarshal(b, &id) != nil || id.JobID == nil || *id.JobID == "" {
		return fmt.Errorf("claim: %w", err)
	}
	*c = JobOfferClaim{JobID: *id.JobID, invalid: fmt.Errorf("claim: %w", err)}
	return nil
}

// Engine ids of §6.3. The field is open: third-party plugins bring their own.
const (
	EngineSdCpp     = "sd-cpp"
	EngineLlamaCpp  = "llama-cpp"
	EngineOnnx      = "onnx"
	EngineParakeet  = "parakeet"
	EngineSynthetic = "synthetic"
)

// Model-file roles of §6.3.
const (
	RoleDiffusionModel    = "diffusion-model"
	RoleTextEncoder       = "text-encoder"
	RoleTextEncoderVision = "text-encoder-vision"
	RoleVAE               = "vae"
	RoleLoRA              = "lora"
	RoleModel             = "model"
)

// ModelSource says how to obtain and run the job's model (§6.3).
type ModelSource struct {
	Engine string      `json:"engine"`
	Files  []ModelFile `json:"files"` // may be empty; sent as [] when nil
	// CliDefaults is required; nil means the studio left it out.
	CliDefaults *ModelCliDefaults `json:"cliDefaults,omitempty"`
}

// ModelFile is one file of a model (§6.3).
type ModelFile struct {
	Role        string  `json:"role"`
	URL         string  `json:"url"`
	Filename    string  `json:"filename"`
	ApproxBytes *uint64 `json:"approxBytes,omitempty"`
	Sha256      string  `json:"sha256,omitempty"`
}

// ModelCliDefaults are a model's default run parameters (§6.3). The four
// numbers are mandatory on the wire: decoding a cliDefaults that lacks one
// fails, naming it.
type ModelCliDefaults struct {
	CfgScale       float32  `json:"cfgScale"`
	Steps          uint32   `json:"steps"`
	Width          uint32   `json:"width"`
	Height         uint32   `json:"height"`
	SamplingMethod string   `json:"samplingMethod,omitempty"`
	FlowShift      *float32 `json:"flowShift,omitempty"`
	ZeroCondT      bool     `json:"zeroCondT,omitempty"`
	OffloadToCPU   bool     `json:"offloadToCpu,omitempty"`
	ContextSize    *uint32  `json:"contextSize,omitempty"`
	// ChatTemplateKwargs is a JSON object; nil when absent (or null).
	ChatTemplateKwargs json.RawMessage `json:"chatTemplateKwargs,omitempty"`
}

// MarshalJSON always writes files as an array, never null.
func (m ModelSource) MarshalJSON() ([]byte, error) {
	type plain ModelSource
	p := plain(m)
	if p.Files == nil {
		p.Files = []ModelFile{}
	}
	return json.Marshal(p)
}

// UnmarshalJSON decodes a model source; absent or null files become empty.
func (m *ModelSource) UnmarshalJSON(b []byte) error {
	type plain ModelSource
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("modelSource: %w", err)
	}
	if p.Files == nil {
		p.Files = []ModelFile{}
	}
	*m = ModelSource(p)
	return nil
}

// Validate reports the first problem with m, naming the field: a missing
// engine or cliDefaults, or a file without role, url or filename, or whose
// filename is not a plain file name. An absent files array is taken as
// empty (it is harmless; the reference decoder would refuse it).
func (m *ModelSource) Validate() error {
	if m.Engine == "" {
		return errors.New("modelSource: missing engine")
	}
	for i, f := range m.Files {
		switch {
		case f.Role == "":
			return fmt.Errorf("modelSource: files[%d]: missing role", i)
		case f.URL == "":
			return fmt.Errorf("modelSource: files[%d]: missing url", i)
		case f.Filename == "":
			return fmt.Errorf("modelSource: files[%d]: missing filename", i)
		case !IsPlainFileName(f.Filename):
			return fmt.Errorf("modelSource: files[%d]: filename %q is not a plain file name", i, f.Filename)
		}
	}
	if m.CliDefaults == nil {
		return errors.New("modelSource: missing cliDefaults")
	}
	if len(m.CliDefaults.ChatTemplateKwargs) > 0 && !isJSONObject(m.CliDefaults.ChatTemplateKwargs) {
		return errors.New("modelSource: cliDefaults.chatTemplateKwargs is not an object")
	}
	return nil
}

// UnmarshalJSON fails when one of cfgScale, steps, width or height is absent
// or null, as the reference decoder does.
func (d *ModelCliDefaults) UnmarshalJSON(b []byte) error {
	type plain ModelCliDefaults
	// The four again, as pointers, to tell absent or null from 0 in the
	// same pass: these fields shadow plain's.
	var w struct {
		plain
		CfgScale *float32 `json:"cfgScale"`
		Steps    *uint32  `json:"steps"`
		Width    *uint32  `json:"width"`
		Height   *uint32  `json:"height"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("cliDefaults: %w", err)
	}
	var missing []string
	if w.CfgScale == nil {
		missing = append(missing, "cfgScale")
	}
	if w.Steps == nil {
		missing = append(missing, "steps")
	}
	if w.Width == nil {
		missing = append(missing, "width")
	}
	if w.Height == nil {
		missing = append(missing, "height")
	}
	if len(missing) > 0 {
		return fmt.Errorf("cliDefaults: missing %s", strings.Join(missing, ", "))
	}
	w.plain.CfgScale, w.plain.Steps, w.plain.Width, w.plain.Height = *w.CfgScale, *w.Steps, *w.Width, *w.Height
	compactRaw(&w.ChatTemplateKwargs)
	*d = ModelCliDefaults(w.plain)
	return nil
}

// IsPlainFileName reports whether name is a plain file name: not empty, not
// "." or "..", no path separator (/ or \), no NUL, and not absolute.
func IsPlainFileName(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, "..") && !(len(name) >= 2 && name[1] == ':')
}

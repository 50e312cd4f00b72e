package hostile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Job is an offer for the studio to make and follow to its end.
type Job struct {
	ID string
	// Claim is the raw claim JSON; when empty, a claim is built from
	// Model, Engine and Task (no model files, dummy cliDefaults).
	Claim  string
	Model  string
	Engine string
	Task   string // the task JSON, e.g. {"kind":"llm","messages":[...]}
}

// LLMJob is a small job on the synthetic engine, which every kit run has.
func LLMJob(id string) Job {
	return Job{ID: id, Model: "synthetic-llm", Engine: protocol.EngineSynthetic,
		Task: `{"kind":"llm","messages":[{"role":"user","content":"say hello"}],"maxTokens":16}`}
}

// ImageJob is a small image job on the synthetic engine (a binary result,
// uploaded).
func ImageJob(id string) Job {
	return Job{ID: id, Model: "synthetic-image", Engine: protocol.EngineSynthetic,
		Task: `{"kind":"image","prompt":"a red square","width":64,"height":64,"steps":1}`}
}

func (j Job) claim() string {
	if j.Claim != "" {
		return j.Claim
	}
	id, _ := json.Marshal(j.ID)
	model, _ := json.Marshal(j.Model)
	engine, _ := json.Marshal(j.Engine)
	return fmt.Sprintf(`{"jobId":%s,"gameId":"hostile","assetName":"hostile/asset","model":%s,"vramGbEstimate":1,"task":%s,`+
		`"modelSource":{"engine":%s,"files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`, id, model, j.Task, engine)
}

// Outcome is what came of a job.
type Outcome struct {
	Rejected *protocol.Reject
	Accepted bool
	JSON     *protocol.CompleteJSON
	Fail     *protocol.Fail
	Uploaded int64 // result bytes; 0 when none
}

// Completed reports whether the job delivered a result.
func (o Outcome) Completed() bool { return o.JSON != nil || o.Uploaded > 0 }

func (o Outcome) String() string {
	switch {
	case o.Rejected != nil:
		return fmt.Sprintf("rejected (%s): %s", o.Rejected.Code, o.Rejected.Reason)
	case o.JSON != nil:
		return "completed (completeJson)"
	case o.Uploaded > 0:
		return fmt.Sprintf("completed (upload of %d bytes)", o.Uploaded)
	case o.Fail != nil:
		return fmt.Sprintf("failed (retryable %v): %s", o.Fail.Retryable, o.Fail.Error)
	case o.Accepted:
		return "accepted, no outcome"
	}
	return "no answer"
}

// short returns a job id fit for a message: a hostile one can be megabytes.
func short(id string) string {
	if len(id) <= 64 {
		return id
	}
	return fmt.Sprintf("%s…(%d bytes)", id[:32], len(id))
}

// errSessionEnded is a job's session ending before its outcome.
var errSessionEnded = errors.New("the session ended before the job's outcome")

// Offer sends an offer for j without following it.
func (c *Conn) Offer(j Job) error {
	return c.SendRaw(websocket.TextMessage, []byte(`{"type":"offer","claim":`+j.claim()+`}`))
}

// Run offers j and waits for its outcome: a reject, or an accept followed
// by completeJson, fail or an upload. A session that ends first is an
// error wrapping errSessionEnded (the job is lost to this session; a real
// studio would requeue it).
func (c *Conn) Run(ctx context.Context, j Job) (Outcome, error) {
	frames, stop := c.watch(j.ID)
	defer stop()
	uploaded := c.st.uploadDone(j.ID)
	var out Outcome
	if err := c.Offer(j); err != nil {
		return out, fmt.Errorf("offer %s: %w", short(j.ID), err)
	}
	for {
		select {
		case f := <-frames:
			switch v := f.(type) {
			case protocol.Reject:
				out.Rejected = &v
				return out, nil
			case protocol.Accept:
				out.Accepted = true
			case protocol.CompleteJSON:
				out.JSON = &v
				return out, nil
			case protocol.Fail:
				out.Fail = &v
				return out, nil
			}
		case <-uploaded:
			out.Uploaded, _ = c.st.uploaded(j.ID)
			return out, nil
		case <-c.done:
			// The upload travels on another connection and may still land.
			select {
			case <-uploaded:
				out.Uploaded, _ = c.st.uploaded(j.ID)
				return out, nil
			default:
			}
			return out, fmt.Errorf("job %s: %w (%v)", short(j.ID), errSessionEnded, c.readErr)
		case <-ctx.Done():
			return out, fmt.Errorf("job %s: %s, then %w", short(j.ID), out, ctx.Err())
		}
	}
}

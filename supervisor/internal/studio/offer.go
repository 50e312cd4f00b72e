package studio

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// handleOffer applies §9.5: paused → reject(paused); busy → reject(busy);
// invalid claim or not admitted → reject(reason); else reserve the slot and
// hand the job to the jobs' goroutine (serveJobs), which accepts before it
// runs. It never blocks on the socket and starts nothing for an offer it
// refuses: rejects go through the session's bounded reject queue (R9, see
// refusals.go). The lines it logs for refused offers are rate-limited; an
// offer that is run is always logged, by the job runner (see
// JobRunner.RunJob).
func (s *session) handleOffer(ctx context.Context, claim *protocol.JobOfferClaim) {
	c := s.c
	if c.offersOff() {
		s.refusePaused(claim)
		return
	}
	if !c.reserve() {
		// The job in the slot may be reporting its outcome right now; the
		// studio offers the next one as soon as it has it, so one offer
		// (never more: a flood must not start a goroutine each) waits for
		// the slot instead of being rejected busy. freed is taken before
		// busy is looked at again: a release after this point closes it,
		// and one before it shows as a free slot (releaseSlot frees the
		// slot before it clears finishing), so the offer neither waits out
		// finishingWait for a slot already free nor is refused for it.
		freed := c.slotFreed()
		if !c.busy.Load() {
			s.admit(claim)
			return
		}
		if c.finishing.Load() && c.offerWaiting.CompareAndSwap(false, true) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.offerWaiting.Store(false)
				t := time.NewTimer(finishingWait)
				defer t.Stop()
				select {
				case <-freed:
				case <-t.C:
				case <-ctx.Done():
				}
				s.admit(claim)
			}()
			return
		}
		s.refuse(claim, "rejecting offer: worker is already busy", nil, protocol.ReasonBusy, protocol.RejectBusy)
		return
	}
	s.start(claim)
}

// refusePaused refuses an offer while the worker is paused or stopping.
func (s *session) refusePaused(claim *protocol.JobOfferClaim) {
	s.refuse(claim, "rejecting offer: worker is paused", nil, protocol.ReasonPaused, protocol.RejectPaused)
}

// refuse logs a refused offer (rate-limited, one kind of line per msg) and
// queues its reject.
func (s *session) refuse(claim *protocol.JobOfferClaim, msg string, cause error, reason string, code protocol.RejectCode) {
	log := s.limited(msg)
	args := []any{"job", clipLog(claim.JobID), "game", clipLog(claim.GameID), "asset", clipLog(claim.AssetName),
		"model", clipLog(claim.Model), "vram", claim.VramGbEstimate}
	if cause != nil {
		log.Warn(msg, append(args, "error", cause)...)
	} else {
		log.Info(msg, args...)
	}
	s.reject(claim.JobID, reason, code)
}

// rejectCodeOf is the reject code an Admit error carries (see JobRunner),
// or none.
func rejectCodeOf(err error) protocol.RejectCode {
	var coded interface{ RejectCode() protocol.RejectCode }
	if errors.As(err, &coded) {
		return coded.RejectCode()
	}
	return ""
}

// finishingWait bounds how long an offer waits for a slot whose job is
// reporting its outcome before it is rejected busy.
const finishingWait = 2 * time.Second

// admit reserves the slot for an offer that waited for it, or rejects it
// busy.
func (s *session) admit(claim *protocol.JobOfferClaim) {
	if !s.c.reserve() {
		s.refuse(claim, "rejecting offer: worker is still busy", nil, protocol.ReasonBusy, protocol.RejectBusy)
		return
	}
	s.start(claim)
}

// start validates and admits a claim whose slot is reserved, and hands it
// to serveJobs. The pause is checked again now that the slot is held: a
// Shutdown that found the slot free has set it before, so no job starts
// after Shutdown saw the worker idle.
func (s *session) start(claim *protocol.JobOfferClaim) {
	c := s.c
	if c.offersOff() {
		c.releaseSlot()
		s.refusePaused(claim)
		return
	}
	if err := claim.Validate(); err != nil {
		c.releaseSlot()
		s.refuse(claim, "rejecting invalid offer", err, fmt.Sprintf("invalid offer: %v", err), "")
		return
	}
	if err := c.cfg.Jobs.Admit(claim); err != nil {
		c.releaseSlot()
		s.refuse(claim, "rejecting offer the worker cannot serve", err, err.Error(), rejectCodeOf(err))
		return
	}
	// The offer's line (§9.5: job, game, asset, model, vram) is the
	// runner's "job started", written as the job starts: one line per job,
	// not two at the same moment.
	c.jobStarts <- jobStart{s, claim}
}

// jobStart is a job handed to serveJobs: its claim and the session that
// accepts it.
type jobStart struct {
	s     *session
	claim *protocol.JobOfferClaim
}

// serveJobs runs the jobs start hands it, one after another, until Run
// closes jobStarts. One goroutine for every job of the client's life: a
// job's calls go deep (the runner, the engine host, gRPC, the reporter),
// and a goroutine of its own per job grew its stack, by copying, every
// time. The one slot (I-10) means at most one job waits in the channel,
// behind the end of the one before it.
func (c *Client) serveJobs() {
	defer c.jobs.Done()
	for j := range c.jobStarts {
		c.runJob(c.jobsCtx, j.s, j.claim)
	}
}

// runJob accepts the job, runs it, hands its outcome on and releases the
// slot (R4, I-10, I-14). ctx is the jobs' context: the job outlives its
// session.
func (c *Client) runJob(ctx context.Context, s *session, claim *protocol.JobOfferClaim) {
	release := sync.OnceFunc(c.releaseSlot)
	defer release()
	rep := c.newReporter(s, claim.JobID, s.log)
	if err := s.send(protocol.Accept{JobID: claim.JobID}); err != nil {
		rep.log().Error("accept send failed; job abandoned", "error", err)
		return
	}
	c.setCurrentJob(claim.JobID)
	rep.release = release
	// A job with a binary result sends a heartbeat right after accept, as
	// the spec's transcript does: it reports the job at once and, once
	// acked, proves the studio has read the accept; the upload, which
	// travels on another connection, waits for that (reporter.Upload).
	// The heartbeat pump writes it while the job starts. A JSON result
	// follows the accept on this socket, so nothing waits for it there
	// (the transcript's job-402); the next beat reports the job.
	if claim.Task.Kind.Binary() {
		rep.acceptSeq = s.beatSoon()
	}
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprintf("job runner panicked: %v", r)
			out := Outcome{Err: errors.New(msg), Retryable: true, Reported: rep.isReported()}
			if !out.Reported {
				out.ReportErr = rep.Fail(ctx, msg, true)
				out.Reported = out.ReportErr == nil
			}
			rep.log().Error("job runner panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()), "fail_sent", out.Reported)
			c.jobDone(claim, out)
		}
	}()
	// The runner logs the job's end; the session only hands it on.
	c.jobDone(claim, c.cfg.Jobs.RunJob(ctx, claim, rep))
}

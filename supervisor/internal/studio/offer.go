package studio

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// handleOffer applies §9.5: paused → reject(paused); busy → reject(busy);
// invalid claim or not admitted → reject(reason); else reserve the slot and
// start the job goroutine, which accepts before it runs. It never blocks on
// the socket: rejects are fire-and-forget (R9).
func (s *session) handleOffer(ctx context.Context, claim *protocol.JobOfferClaim) {
	c := s.c
	s.log.Info("offer received", "job", claim.JobID, "game", claim.GameID, "asset", claim.AssetName,
		"model", claim.Model, "vram", claim.VramGbEstimate)
	if c.paused.Load() {
		s.log.Info("rejecting offer: worker is paused", "job", claim.JobID)
		s.reject(claim.JobID, protocol.ReasonPaused, protocol.RejectPaused)
		return
	}
	if !c.busy.CompareAndSwap(false, true) {
		if c.finishing.Load() {
			// The job in the slot is reporting its outcome right now; the
			// studio offers the next one as soon as it has it.
			freed := c.slotFreed()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				t := time.NewTimer(finishingWait)
				defer t.Stop()
				select {
				case <-freed:
				case <-t.C:
				case <-ctx.Done():
				}
				s.admit(ctx, claim)
			}()
			return
		}
		s.log.Info("rejecting offer: worker is already busy", "job", claim.JobID)
		s.reject(claim.JobID, protocol.ReasonBusy, protocol.RejectBusy)
		return
	}
	s.start(ctx, claim)
}

// finishingWait bounds how long an offer waits for a slot whose job is
// reporting its outcome before it is rejected busy.
const finishingWait = 2 * time.Second

// admit reserves the slot for an offer that waited for it, or rejects it
// busy.
func (s *session) admit(ctx context.Context, claim *protocol.JobOfferClaim) {
	if !s.c.busy.CompareAndSwap(false, true) {
		s.log.Info("rejecting offer: worker is still busy", "job", claim.JobID)
		s.reject(claim.JobID, protocol.ReasonBusy, protocol.RejectBusy)
		return
	}
	s.start(ctx, claim)
}

// start validates and admits a claim whose slot is reserved, and starts its
// job goroutine.
func (s *session) start(ctx context.Context, claim *protocol.JobOfferClaim) {
	c := s.c
	if err := claim.Validate(); err != nil {
		c.busy.Store(false)
		s.log.Warn("rejecting invalid offer", "job", claim.JobID, "error", err)
		s.reject(claim.JobID, fmt.Sprintf("invalid offer: %v", err), "")
		return
	}
	if err := c.cfg.Jobs.Admit(claim); err != nil {
		c.busy.Store(false)
		s.log.Warn("rejecting offer the worker cannot serve", "job", claim.JobID, "error", err)
		s.reject(claim.JobID, err.Error(), "")
		return
	}
	c.jobs.Add(1)
	go c.runJob(ctx, s, claim)
}

// reject sends a reject on its own goroutine; failure is only logged (R9).
func (s *session) reject(jobID, reason string, code protocol.RejectCode) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.send(protocol.Reject{JobID: jobID, Reason: reason, Code: code}); err != nil {
			s.log.Error("reject send failed", "job", jobID, "error", err)
		}
	}()
}

// runJob accepts the job, runs it and releases the slot (R4, I-10, I-14).
// ctx is Run's ctx: the job outlives its session.
func (c *Client) runJob(ctx context.Context, s *session, claim *protocol.JobOfferClaim) {
	defer c.jobs.Done()
	release := sync.OnceFunc(c.releaseSlot)
	defer release()
	log := s.log.With("job", claim.JobID)
	if err := s.send(protocol.Accept{JobID: claim.JobID}); err != nil {
		log.Error("accept send failed; job abandoned", "error", err)
		return
	}
	c.setCurrentJob(claim.JobID)
	// A heartbeat right after accept reports the job at once (the spec's
	// transcript does the same) and, once acked, proves the studio has
	// read the accept: the binary upload, which travels on another
	// connection, waits for that before it starts (see reporter.Upload).
	seq, err := s.sendHeartbeat()
	if err != nil {
		log.Warn("heartbeat after accept failed", "error", err)
	}
	rep := c.newReporter(s, claim.JobID, log)
	rep.release = release
	rep.acceptSeq = seq
	defer func() {
		if r := recover(); r != nil {
			log.Error("job runner panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if !rep.isReported() {
				if err := rep.Fail(ctx, fmt.Sprintf("job runner panicked: %v", r), true); err != nil {
					log.Error("fail send after panic failed", "error", err)
				}
			}
		}
	}()
	c.cfg.Jobs.RunJob(ctx, claim, rep)
	if !rep.isReported() {
		log.Warn("job runner returned without reporting an outcome")
	}
}

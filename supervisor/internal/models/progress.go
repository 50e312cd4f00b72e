package models

import (
	"fmt"
	"time"
)

// meter logs one download's progress at Config.ProgressInterval and feeds
// Config.OnProgress. It is called on the downloading goroutine only.
type meter struct {
	s           *Store
	model, file string
	total       int64
	start       time.Time
	base        int64 // bytes on disk when this transfer began
	next        time.Time
}

func newMeter(s *Store, model, file string, base, total int64) *meter {
	now := time.Now()
	return &meter{s: s, model: model, file: file, total: total, start: now, base: base,
		next: now.Add(s.cfg.ProgressInterval)}
}

// update reports done bytes if a progress interval has passed.
func (m *meter) update(done int64) {
	now := time.Now()
	if now.Before(m.next) {
		return
	}
	m.next = now.Add(m.s.cfg.ProgressInterval)
	p := m.progress(now, done)
	m.s.log.Info("download progress", "model", m.model, "file", m.file,
		"done", formatBytes(p.Done), "total", formatBytes(p.Total),
		"rate", formatBytes(int64(p.Rate))+"/s", "eta", formatETA(p.ETA))
	if m.s.cfg.OnProgress != nil {
		m.s.cfg.OnProgress(p)
	}
}

// finish reports the completed transfer.
func (m *meter) finish(done int64) {
	p := m.progress(time.Now(), done)
	p.Final = true
	m.s.log.Info("download complete", "model", m.model, "file", m.file,
		"bytes", p.Done, "elapsed", time.Since(m.start).Round(time.Millisecond),
		"rate", formatBytes(int64(p.Rate))+"/s")
	if m.s.cfg.OnProgress != nil {
		m.s.cfg.OnProgress(p)
	}
}

func (m *meter) progress(now time.Time, done int64) Progress {
	p := Progress{Model: m.model, File: m.file, Done: done, Total: m.total, ETA: -1,
		Fetched: done - m.base, Elapsed: now.Sub(m.start)}
	if el := p.Elapsed.Seconds(); el > 0 {
		p.Rate = float64(p.Fetched) / el
	}
	if m.total >= 0 && p.Rate > 0 && done <= m.total {
		p.ETA = time.Duration(float64(m.total-done) / p.Rate * float64(time.Second))
	}
	return p
}

// formatBytes renders n in binary units ("3.2 GiB"); "?" when negative.
func formatBytes(n int64) string {
	if n < 0 {
		return "?"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func formatETA(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return d.Round(time.Second).String()
}

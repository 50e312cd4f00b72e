package localapi

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"
)

//go:embed status.html
var pageSource string

// pageData is what status.html renders.
type pageData struct {
	Snap   *Snapshot
	Now    time.Time
	Uptime time.Duration
	// Key is what the pause and resume buttons send as their bearer
	// credential; "" for a page served to another machine.
	Key string
}

// page is the parsed status page; html/template escapes every value from
// the snapshot for its context.
type page struct{ tmpl *template.Template }

func newPage() (*page, error) {
	t, err := template.New("status").Funcs(template.FuncMap{
		"ago":      ago,
		"percent":  func(j *Job) string { return fmt.Sprintf("%.0f%%", 100*j.Ratio()) },
		"bytes":    humanBytes,
		"duration": roundDuration,
	}).Parse(pageSource)
	if err != nil {
		return nil, fmt.Errorf("localapi: status page: %w", err)
	}
	return &page{tmpl: t}, nil
}

func (p *page) render(w io.Writer, snap *Snapshot, now time.Time, key string) error {
	return p.tmpl.Execute(w, pageData{Snap: snap, Now: now, Uptime: uptime(snap, now), Key: key})
}

// ago says how long before now t was ("12s ago"), or "" for a zero t.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if d := now.Sub(t); d >= 0 {
		return roundDuration(d) + " ago"
	}
	return "in " + roundDuration(t.Sub(now))
}

// roundDuration shortens d to what a person reads at a glance.
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// humanBytes writes n in binary units ("1.5 GiB").
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

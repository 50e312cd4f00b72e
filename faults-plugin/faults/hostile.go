package faults

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/stokerhq/stoker/plugins"
)

// The hostile faults: a plugin that does not crash but sends too much, for
// too long, or lies about sizes. Those named raw-* and lie-* bypass the
// SDK's own bounds through the raw wire of [Serve], as a plugin written
// without the SDK could; the others go through the SDK's Events, as a
// careless plugin would.

// hostile runs the hostile fault f, if f is one; handled is false
// otherwise.
func (e *Engine) hostile(ctx context.Context, req *plugins.RunRequest, f Fault, ev plugins.Events) (handled bool, err error) {
	switch f.Name {
	case "huge-log":
		n, err := parseSize(f.Arg)
		if err != nil {
			return true, err
		}
		if err := ev.Log("info", strings.Repeat("x", n)); err != nil {
			return true, err
		}
	case "huge-result":
		n, err := parseSize(f.Arg)
		if err != nil {
			return true, err
		}
		return true, ev.Result(paddedJSON(n))
	case "raw-log", "raw-result", "raw-output", "lie-size":
		raw, err := rawFrom(ctx)
		if err != nil {
			return true, err
		}
		var msg []byte
		switch f.Name {
		case "raw-log":
			n, err := parseSize(f.Arg)
			if err != nil {
				return true, err
			}
			msg = rawLog(strings.Repeat("x", n))
		case "raw-result":
			n, err := parseSize(f.Arg)
			if err != nil {
				return true, err
			}
			msg = rawResult(paddedJSON(n))
		case "raw-output":
			n, err := parseSize(f.Arg)
			if err != nil {
				return true, err
			}
			msg = rawOutput("png", make([]byte, n))
		case "lie-size":
			msg = rawLyingOutput("png", 1<<30, []byte("sixteen bytes..."))
		}
		if err := raw.send(msg); err != nil {
			return true, err
		}
		if f.Name == "raw-result" || f.Name == "raw-output" {
			return true, nil // the SDK sends Done: the host has its outcome
		}
	case "lie-progress":
		if err := ev.Progress(math.MaxUint64, 10, "step"); err != nil {
			return true, err
		}
	case "log-flood":
		n, err := count(f.Arg)
		if err != nil {
			return true, err
		}
		for i := 0; n == 0 || i < n; i++ {
			if err := ev.Log("info", "flood line "+strconv.Itoa(i)); err != nil {
				return true, err
			}
			if ctx.Err() != nil {
				return true, plugins.Errorf(plugins.ErrCancelled, "faults: cancelled: %w", ctx.Err())
			}
		}
	case "stderr-flood":
		n, err := count(f.Arg)
		if err != nil {
			return true, err
		}
		for i := 0; n == 0 || i < n; i++ {
			if _, err := syscall.Write(2, []byte("faults: stderr flood line "+strconv.Itoa(i)+"\n")); err != nil {
				return true, fmt.Errorf("faults: stderr flood: %w", err)
			}
			if ctx.Err() != nil {
				return true, plugins.Errorf(plugins.ErrCancelled, "faults: cancelled: %w", ctx.Err())
			}
		}
	case "endless-output":
		chunk := make([]byte, 512<<10)
		for {
			if err := ev.Output("png", chunk); err != nil {
				return true, err
			}
			if ctx.Err() != nil {
				return true, plugins.Errorf(plugins.ErrCancelled, "faults: cancelled: %w", ctx.Err())
			}
		}
	default:
		return false, nil
	}
	return true, answer(req, req.Task.Prompt(), ev)
}

// parseSize reads a byte count such as "4096", "64KiB" or "40MiB".
func parseSize(s string) (int, error) {
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > math.MaxInt/mult {
		return 0, plugins.Errorf(plugins.ErrBadInput, "faults: size %q: want a byte count such as 4096, 64KiB or 40MiB", s)
	}
	return n * mult, nil
}

// count reads a repeat count; "" or 0 means without end.
func count(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, plugins.Errorf(plugins.ErrBadInput, "faults: count %q: want a non-negative integer", s)
	}
	return n, nil
}

// paddedJSON is a JSON object of exactly n bytes (at least 12).
func paddedJSON(n int) []byte {
	const frame = len(`{"pad":""}`)
	return []byte(`{"pad":"` + strings.Repeat("x", max(n-frame, 0)) + `"}`)
}

// The RunResponse fields and their messages' fields, as numbered in
// proto/engine/v1/engine.proto.
const (
	fieldLog    protowire.Number = 2
	fieldOutput protowire.Number = 3
	fieldResult protowire.Number = 4
)

func event(field protowire.Number, inner []byte) []byte {
	b := protowire.AppendTag(nil, field, protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

func rawLog(message string) []byte {
	var in []byte
	in = protowire.AppendTag(in, 1, protowire.BytesType)
	in = protowire.AppendString(in, "info")
	in = protowire.AppendTag(in, 2, protowire.BytesType)
	in = protowire.AppendString(in, message)
	return event(fieldLog, in)
}

func rawResult(js []byte) []byte {
	in := protowire.AppendTag(nil, 1, protowire.BytesType)
	return event(fieldResult, protowire.AppendBytes(in, js))
}

func rawOutput(ext string, data []byte) []byte {
	var in []byte
	in = protowire.AppendTag(in, 1, protowire.BytesType)
	in = protowire.AppendString(in, ext)
	in = protowire.AppendTag(in, 2, protowire.BytesType)
	in = protowire.AppendBytes(in, data)
	return event(fieldOutput, in)
}

// rawLyingOutput is an output chunk whose data field claims claimed bytes
// but carries only data.
func rawLyingOutput(ext string, claimed uint64, data []byte) []byte {
	var in []byte
	in = protowire.AppendTag(in, 1, protowire.BytesType)
	in = protowire.AppendString(in, ext)
	in = protowire.AppendTag(in, 2, protowire.BytesType)
	in = protowire.AppendVarint(in, claimed)
	in = append(in, data...)
	return event(fieldOutput, in)
}

// hugeDescription returns d with n model ids per kind: a Describe answer
// far larger than any host should take.
func hugeDescription(d *plugins.Description, n int) *plugins.Description {
	models := make([]string, n)
	for i := range models {
		models[i] = "faults-huge-" + strconv.Itoa(i)
	}
	d.Models = map[plugins.TaskKind][]string{plugins.KindLLM: models, plugins.KindImage: models}
	return d
}

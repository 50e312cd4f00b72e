package synthetic

import "fmt"

// chunkSize is how much binary output is gathered before one
// Events.Output call. The transport splits chunks further as it needs, so
// this only trades calls for memory.
const chunkSize = 256 << 10

// output is the io.Writer an encoder writes a job's binary output to. It
// forwards the bytes to Events.Output in chunks of chunkSize, so an output
// of any size costs one chunk of memory, and it fails every write once the
// job must stop, so the encoder stops too.
//
// Events.Output is given a slice that output reuses after the call
// returns, as io.Writer implementations are.
type output struct {
	j   *job
	ext string
	buf []byte
}

func newOutput(j *job, ext string) *output {
	return &output{j: j, ext: ext, buf: make([]byte, 0, chunkSize)}
}

func (o *output) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := o.j.check(); err != nil {
			return n, err
		}
		c := copy(o.buf[len(o.buf):cap(o.buf)], p)
		o.buf = o.buf[:len(o.buf)+c]
		p = p[c:]
		n += c
		if len(o.buf) == cap(o.buf) {
			if err := o.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush sends what has been gathered. The encoder's caller calls it once
// more after the encoder returns.
func (o *output) flush() error {
	if err := o.j.check(); err != nil {
		return err
	}
	if len(o.buf) == 0 {
		return nil
	}
	if err := o.j.ev.Output(o.ext, o.buf); err != nil {
		o.j.err = fmt.Errorf("sending output: %w", err)
		return o.j.err
	}
	o.buf = o.buf[:0]
	return nil
}

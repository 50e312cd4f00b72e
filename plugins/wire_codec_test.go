package plugins

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

func marshal(t testing.TB, r *enginev1.RunResponse) []byte {
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunFrameDecode(t *testing.T) {
	tests := []struct {
		name string
		msg  *enginev1.RunResponse
		fast bool
	}{
		{"chunk", &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{Ext: "png", Data: []byte("\x89PNG...")}}}, true},
		{"empty chunk", &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{}}}, true},
		{"progress", &enginev1.RunResponse{Event: &enginev1.RunResponse_Progress{Progress: &enginev1.Progress{Step: 3, Total: 9, Unit: "token"}}}, false},
		{"result", &enginev1.RunResponse{Event: &enginev1.RunResponse_Result{Result: &enginev1.JsonResult{Json: []byte(`{}`)}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := runFrame{buf: marshal(t, tt.msg)}
			ext, data, resp, err := f.decode()
			if err != nil {
				t.Fatal(err)
			}
			if got := resp == nil; got != tt.fast {
				t.Fatalf("fast path %v, want %v", got, tt.fast)
			}
			if tt.fast {
				want := tt.msg.GetOutput()
				if ext != want.GetExt() || !bytes.Equal(data, want.GetData()) {
					t.Errorf("got %q %q, want %q %q", ext, data, want.GetExt(), want.GetData())
				}
				return
			}
			if !proto.Equal(resp, tt.msg) {
				t.Errorf("got %v, want %v", resp, tt.msg)
			}
		})
	}
}

// FuzzRunFrameDecode: whatever the bytes, the fast path agrees with
// protobuf's own decoding.
func FuzzRunFrameDecode(f *testing.F) {
	f.Add(marshal(f, &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{Ext: "wav", Data: []byte("RIFF")}}}))
	f.Add(marshal(f, &enginev1.RunResponse{Event: &enginev1.RunResponse_Log{Log: &enginev1.LogLine{Level: "info", Message: "m"}}}))
	f.Add([]byte{0x1a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := runFrame{buf: b}
		ext, data, ok := outputChunk(fr.buf)
		if !ok {
			return
		}
		var want enginev1.RunResponse
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted bytes protobuf rejects: %v", err)
		}
		out := want.GetOutput()
		if out == nil || out.GetExt() != ext || !bytes.Equal(out.GetData(), data) {
			t.Fatalf("fast path %q %q, protobuf %v", ext, data, &want)
		}
	})
}

// FuzzJobsEvent: whatever the bytes, the walk that splits a JobsResponse
// agrees with protobuf's own decoding of it, or leaves an event that does
// not decode.
func FuzzJobsEvent(f *testing.F) {
	wrap := func(m *enginev1.JobsResponse) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	chunk := &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{Ext: "png", Data: []byte("data")}}}
	f.Add(wrap(&enginev1.JobsResponse{}))
	f.Add(wrap(&enginev1.JobsResponse{Job: 7, Event: chunk}))
	f.Add(wrap(&enginev1.JobsResponse{Job: 1 << 40, Event: &enginev1.RunResponse{}}))
	f.Add(append(wrap(&enginev1.JobsResponse{Job: 1}), wrap(&enginev1.JobsResponse{Job: 2, Event: chunk})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		job, event, err := jobsEvent(b)
		var want enginev1.JobsResponse
		werr := proto.Unmarshal(b, &want)
		if err != nil && werr == nil {
			t.Fatalf("jobsEvent error %v, protobuf none", err)
		}
		if err != nil {
			return
		}
		if werr != nil {
			// The walk leaves the event to be decoded on its own (the
			// run's checks do it), where the bad bytes must show.
			var ev enginev1.RunResponse
			if event == nil || proto.Unmarshal(event, &ev) == nil {
				t.Fatalf("jobsEvent split bytes protobuf rejects (%v) into a good event %x", werr, event)
			}
			return
		}
		if job != want.GetJob() || (event == nil) != (want.Event == nil) {
			t.Fatalf("job %d event %x; protobuf %v", job, event, &want)
		}
		if event == nil {
			return
		}
		var got enginev1.RunResponse
		if err := proto.Unmarshal(event, &got); err != nil || !proto.Equal(&got, want.Event) {
			t.Fatalf("event %v (%v), protobuf %v", &got, err, want.Event)
		}
	})
}

package protocol

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func addGoldenSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "frames", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"offer","claim":{"jobId":"j","task":{"kind":"image","width":"x"}}}`))
	f.Add([]byte(`{"type":"cancel"}`))
	f.Add([]byte(`{"type":"completeJson","jobId":"j","result":[ 1, {"a" : null} ]}`))
}

// FuzzDecode checks that Decode never panics and that every decoded frame
// re-encodes and decodes to the same value.
func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			return
		}
		if o, ok := fr.(Offer); ok && (o.Claim.invalid != nil || o.Claim.absent != "" || (o.Claim.Task != nil && o.Claim.Task.absent != "")) {
			// A claim kept only for its jobId, or lacking a required string
			// (which re-encodes as empty), is not meant to round-trip;
			// Validate must still explain it.
			if o.Claim.Validate() == nil {
				t.Fatalf("invalid claim validates: %s", data)
			}
			return
		}
		enc, err := Encode(fr)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", fr, err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(x)): %v\nin:  %s\nout: %s", err, data, enc)
		}
		if !reflect.DeepEqual(back, fr) {
			t.Fatalf("round trip changed the frame:\nin:   %s\nout:  %s\nfirst:  %#v\nsecond: %#v", data, enc, fr, back)
		}
	})
}

// FuzzValidateClaim checks that claim decoding and validation never panic.
func FuzzValidateClaim(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			return
		}
		if o, ok := fr.(Offer); ok {
			_ = o.Claim.Validate()
			if o.Claim.Task != nil {
				_ = o.Claim.Task.Prompt()
				_ = o.Claim.Task.WithDefaults()
				_ = o.Claim.Task.Ext()
			}
		}
	})
}

package protocol

import (
	"encoding/json"
	"testing"
)

func TestPeekString(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantOK  bool
		comment string
	}{
		{`{"type":"offer","claim":{"type":"x"}}`, "offer", true, "nested keys are not top level"},
		{` { "a" : [1, {"type":"x"}, "}"] , "type" : "accept" } `, "accept", true, "skips containers and strings with brackets"},
		{`{"a":"\"type\":","type":"hello"}`, "hello", true, "an escaped quote inside a value"},
		{`{"a":"x\\","type":"hello"}`, "hello", true, "an escaped backslash before the closing quote"},
		{`{"a":["\\\"]","type":"x"],"type":"hello"}`, "hello", true, "an escaped quote after an escaped backslash"},
		{`{"a":1.5e3,"b":true,"c":null,"type":"welcome"}`, "welcome", true, "scalars"},
		{`{"type":"offer","type":"accept"}`, "", false, "twice: encoding/json takes the last"},
		{`{"Type":"offer"}`, "", false, "another case: encoding/json matches it"},
		{`{"type":"offer","TYPE":"x"}`, "", false, "a case variant after the key"},
		{`{"typ\u0065":"offer"}`, "", false, "an escape in a name"},
		{`{"type":"off\u0065r"}`, "", false, "an escape in the value"},
		{`{"type":"offér"}`, "", false, "non-ASCII in the value"},
		{`{"type":null}`, "", false, "not a string"},
		{`{"type":7}`, "", false, "not a string"},
		{`{"a":1}`, "", false, "absent"},
		{`{}`, "", false, "empty"},
		{`[]`, "", false, "not an object"},
		{`{"type":"offer"`, "", false, "cut short"},
		{`{"a":[1,2,"type":"offer"}`, "", false, "unbalanced"},
	}
	for _, tt := range tests {
		got, ok := peekString([]byte(tt.in), "type")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: peekString(%s) = %q, %v; want %q, %v", tt.comment, tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzPeekString checks that whatever peekString is sure of, encoding/json
// reads the same from a valid document.
func FuzzPeekString(f *testing.F) {
	addGoldenSeeds(f)
	f.Add([]byte(`{"a":{"type":"x"},"type":"offer"}`))
	f.Add([]byte(`{"Type":"offer"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := peekString(data, "type")
		if !ok || !json.Valid(data) {
			return
		}
		var head struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			t.Fatalf("peeked %q from %s, which encoding/json cannot read: %v", got, data, err)
		}
		if head.Type == nil || *head.Type != got {
			t.Fatalf("peeked %q from %s; encoding/json reads %v", got, data, head.Type)
		}
	})
}

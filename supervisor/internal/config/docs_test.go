package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyIsDocumented keeps docs/operations.md's key table in step
// with Config: every key has a row there.
func TestEveryKeyIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		key := rt.Field(i).Tag.Get("toml")
		if !strings.Contains(doc, "\n| `"+key+"` |") {
			t.Errorf("key %s has no row in docs/operations.md's configuration table", key)
		}
	}
}

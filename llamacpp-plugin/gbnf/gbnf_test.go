package gbnf

import (
	"errors"
	"strings"
	"testing"
)

func TestFromJSONSchemaRules(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		// want are lines the grammar must contain.
		want []string
	}{
		{
			name:   "any value",
			schema: `true`,
			want:   []string{"root ::= value", "value ::= object | array | string | number | boolean | null"},
		},
		{
			name:   "annotations only",
			schema: `{"title":"x","description":"anything"}`,
			want:   []string{"root ::= value"},
		},
		{
			name:   "object required then optional in order",
			schema: `{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"},"c":{"type":"boolean"}},"required":["a"]}`,
			want: []string{
				`root-value ::= "{" ws root-a-kv ("," ws root-b-kv)? ("," ws root-c-kv)? "}" ws`,
				`root-a-kv ::= "\"a\"" ws ":" ws integer`,
				`root-b-kv ::= "\"b\"" ws ":" ws string`,
			},
		},
		{
			name:   "object all optional",
			schema: `{"type":"object","properties":{"x":{"type":"null"},"y":{"type":"number"}}}`,
			want:   []string{`root-value ::= "{" ws (root-x-kv ("," ws root-y-kv)? | root-y-kv)? "}" ws`},
		},
		{
			name:   "closed empty object",
			schema: `{"type":"object","additionalProperties":false}`,
			want:   []string{`root ::= "{" ws "}" ws`},
		},
		{
			name:   "open object",
			schema: `{"type":"object"}`,
			want:   []string{"root ::= object"},
		},
		{
			name:   "bounded array",
			schema: `{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4}`,
			want:   []string{`root-value ::= "[" ws root-item ("," ws root-item){1,3} "]" ws`, "root-item ::= integer"},
		},
		{
			name:   "tuple",
			schema: `{"type":"array","prefixItems":[{"type":"string"},{"const":1}],"items":false}`,
			want:   []string{`root-value ::= "[" ws string "," ws "1" ws "]" ws`},
		},
		{
			name:   "string length",
			schema: `{"type":"string","minLength":1,"maxLength":3}`,
			want:   []string{`root-string ::= "\"" char{1,3} "\"" ws`},
		},
		{
			name:   "enum of mixed values with escapes",
			schema: `{"enum":["a\"b", 3, null, "<x>", "tab\there"]}`,
			want:   []string{`root ::= ("\"a\\\"b\"" | "3" | "null" | "\"<x>\"" | "\"tab\\there\"") ws`},
		},
		{
			name:   "nullable union",
			schema: `{"type":["string","null"]}`,
			want:   []string{"root ::= (string | null)"},
		},
		{
			name:   "recursive ref",
			schema: `{"$defs":{"n":{"type":"object","properties":{"next":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["next"]}},"$ref":"#/$defs/n"}`,
			want:   []string{"root ::= n", `n-next-kv ::= "\"next\"" ws ":" ws (n | null)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := FromJSONSchema([]byte(tt.schema))
			if err != nil {
				t.Fatalf("FromJSONSchema: %v", err)
			}
			lines := strings.Split(g, "\n")
			for _, w := range tt.want {
				found := false
				for _, l := range lines {
					if l == w {
						found = true
					}
				}
				if !found {
					t.Errorf("grammar lacks line\n  %s\ngot:\n%s", w, g)
				}
			}
			if !strings.HasPrefix(g, "root ::= ") {
				t.Errorf("grammar does not start with the root rule:\n%s", g)
			}
			again, _ := FromJSONSchema([]byte(tt.schema))
			if again != g {
				t.Errorf("output not deterministic:\n%s\nvs\n%s", g, again)
			}
		})
	}
}

func TestFromJSONSchemaRejects(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		want   error
		// msg is a fragment the message must contain, to keep it clear.
		msg string
	}{
		{"not json", `{"type":`, ErrInvalid, "invalid"},
		{"trailing data", `{} {}`, ErrInvalid, "trailing"},
		{"empty", ``, ErrInvalid, "empty"},
		{"scalar schema", `42`, ErrInvalid, "want an object"},
		{"false schema", `false`, ErrUnsupported, "accepts nothing"},
		{"pattern", `{"type":"string","pattern":"^a+$"}`, ErrUnsupported, `"pattern"`},
		{"format", `{"type":"string","format":"date-time"}`, ErrUnsupported, `"format"`},
		{"minimum", `{"type":"integer","minimum":3}`, ErrUnsupported, `"minimum"`},
		{"allOf", `{"allOf":[{"type":"string"}]}`, ErrUnsupported, `"allOf"`},
		{"nested unsupported", `{"type":"object","properties":{"a":{"not":{}}}}`, ErrUnsupported, `"not"`},
		{"additionalProperties schema", `{"type":"object","additionalProperties":{"type":"string"}}`, ErrUnsupported, "additionalProperties"},
		{"remote ref", `{"$ref":"https://example.com/s.json"}`, ErrUnsupported, "$ref"},
		{"dangling ref", `{"$ref":"#/$defs/missing"}`, ErrInvalid, "points nowhere"},
		{"unknown type", `{"type":"date"}`, ErrInvalid, `"date"`},
		{"huge maxLength", `{"type":"string","maxLength":100000}`, ErrUnsupported, "maxLength"},
		{"negative minItems", `{"type":"array","minItems":-1}`, ErrInvalid, "minItems"},
		{"max below min", `{"type":"array","minItems":3,"maxItems":1}`, ErrInvalid, "maxItems"},
		{"required not in properties", `{"type":"object","properties":{"a":{}},"required":["b"]}`, ErrUnsupported, `"b"`},
		{"empty enum", `{"enum":[]}`, ErrInvalid, "enum"},
		{"duplicate key", `{"type":"string","type":"number"}`, ErrInvalid, "duplicate"},
		{"deep nesting", strings.Repeat(`{"items":`, 100) + `{}` + strings.Repeat(`}`, 100), ErrUnsupported, "deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := FromJSONSchema([]byte(tt.schema))
			if err == nil {
				t.Fatalf("got grammar, want error:\n%s", g)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want an error wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not mention %q", err, tt.msg)
			}
		})
	}
}

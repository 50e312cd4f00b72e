// Package gbnf converts a JSON Schema into a GBNF grammar, the grammar format
// llama.cpp's grammar sampler enforces during generation. It is pure Go and
// is used by the llamacpp plugin for the llm task's jsonSchema.
//
// # Supported subset
//
// The converter is strict: a keyword it cannot enforce is an error (wrapping
// [ErrUnsupported]) rather than silently ignored, so a caller never gets
// output that looks valid but does not follow the schema.
//
//   - true, {} and schemas with only annotations: any JSON value.
//   - type: "object", "array", "string", "number", "integer", "boolean",
//     "null", or an array of them (a union).
//   - object: properties (emitted in the schema's order, required ones
//     first), required, additionalProperties false (the default when
//     properties are given: no other keys). An object schema without
//     properties and without additionalProperties: false accepts any object.
//   - array: items (one schema), prefixItems (tuples), minItems, maxItems.
//   - string: minLength, maxLength (up to 1024).
//   - enum and const with any JSON values.
//   - anyOf, oneOf (as alternatives; oneOf's exclusivity is not enforced).
//   - $ref to "#", "#/$defs/<name>" or "#/definitions/<name>", recursion
//     included.
//   - Annotations ignored: $schema, $id, $comment, title, description,
//     default, examples, deprecated, readOnly, writeOnly.
//
// Not supported (an error): pattern, format, minimum/maximum and the other
// numeric bounds, allOf, not, if/then/else, patternProperties,
// additionalProperties as a schema or true alongside properties,
// propertyNames, uniqueItems, contains, dependent*, unevaluated*, remote
// $refs, and counts above 1024.
//
// Whitespace between tokens is optional and bounded (a space, or a newline
// and up to 20 indentation characters), as in llama.cpp's own converter.
package gbnf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrUnsupported is wrapped by errors for schemas outside the supported
// subset.
var ErrUnsupported = errors.New("unsupported JSON Schema construct")

// ErrInvalid is wrapped by errors for input that is not a valid schema.
var ErrInvalid = errors.New("invalid JSON Schema")

const (
	maxDepth  = 64   // nesting of subschemas
	maxCount  = 1024 // bounds in minLength, maxItems...
	maxProps  = 256  // properties of one object
	maxRules  = 4096 // rules of one grammar
	maxSchema = 1 << 20
)

// FromJSONSchema returns a GBNF grammar whose start rule is "root" and
// which accepts exactly the JSON texts (with bounded optional whitespace)
// that schema describes, within the subset in the package documentation.
// The output is deterministic for a given input.
func FromJSONSchema(schema []byte) (string, error) {
	if len(schema) > maxSchema {
		return "", fmt.Errorf("%w: schema of %d bytes exceeds %d", ErrUnsupported, len(schema), maxSchema)
	}
	root, err := parse(schema)
	if err != nil {
		return "", err
	}
	c := &converter{root: root, rules: map[string]string{}, refs: map[string]string{}}
	body, err := c.visit(root, "root", 0)
	if err != nil {
		return "", err
	}
	c.rules["root"] = body
	return c.String(), nil
}

// node is a decoded schema value that keeps object key order.
type node struct {
	kind  byte // 'o' object, 'a' array, 'b' bool, 'v' other scalar
	keys  []string
	props map[string]*node
	items []*node
	b     bool
	raw   json.RawMessage // compact JSON of the value
}

func (n *node) get(k string) *node {
	if n.kind != 'o' {
		return nil
	}
	return n.props[k]
}

func parse(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the schema", ErrInvalid)
	}
	return n, nil
}

func parseValue(dec *json.Decoder, depth int) (*node, error) {
	if depth > 4*maxDepth {
		return nil, errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("empty schema")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o', props: map[string]*node{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				if _, dup := n.props[k]; dup {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				n.keys = append(n.keys, k)
				n.props[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			n.raw = n.compact()
			return n, nil
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			n.raw = n.compact()
			return n, nil
		}
	case bool:
		return &node{kind: 'b', b: t, raw: json.RawMessage(strconv.FormatBool(t))}, nil
	}
	raw, err := marshal(tok)
	if err != nil {
		return nil, err
	}
	return &node{kind: 'v', raw: raw}, nil
}

// marshal encodes v as compact JSON without HTML escaping, so literals match
// what a model naturally writes ("<" rather than "\u003c").
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// compact re-encodes an object or array (keys in source order).
func (n *node) compact() json.RawMessage {
	var b bytes.Buffer
	switch n.kind {
	case 'o':
		b.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			b.Write(n.props[k].raw)
		}
		b.WriteByte('}')
	case 'a':
		b.WriteByte('[')
		for i, it := range n.items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(it.raw)
		}
		b.WriteByte(']')
	}
	return b.Bytes()
}

type converter struct {
	root  *node
	rules map[string]string // name -> body
	refs  map[string]string // $ref -> rule name
}

// String renders the grammar: root first, then the other rules by name.
func (c *converter) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "root ::= %s\n", c.rules["root"])
	names := make([]string, 0, len(c.rules))
	for k := range c.rules {
		if k != "root" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s ::= %s\n", k, c.rules[k])
	}
	return b.String()
}

var ruleNameRe = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// add defines a rule with a name derived from hint and returns the name. A
// rule with an identical body is reused.
func (c *converter) add(hint, body string) (string, error) {
	base := strings.Trim(ruleNameRe.ReplaceAllString(hint, "-"), "-")
	if base == "" || base == "root" {
		base = "root-value"
	}
	name := base
	for i := 1; ; i++ {
		old, ok := c.rules[name]
		if !ok {
			break
		}
		if old == body {
			return name, nil
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	if len(c.rules) >= maxRules {
		return "", fmt.Errorf("%w: grammar needs more than %d rules", ErrUnsupported, maxRules)
	}
	c.rules[name] = body
	return name, nil
}

// primitive rules, added on first use.
var primitives = map[string]string{
	"ws":            `| " " | "\n" [ \t]{0,20}`,
	"char":          `[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})`,
	"string":        `"\"" char* "\"" ws`,
	"integral-part": `[0] | [1-9] [0-9]{0,15}`,
	"number":        `("-"? integral-part) ("." [0-9]{1,16})? ([eE] [-+]? integral-part)? ws`,
	"integer":       `("-"? integral-part) ws`,
	"boolean":       `("true" | "false") ws`,
	"null":          `"null" ws`,
	"value":         `object | array | string | number | boolean | null`,
	"object":        `"{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws`,
	"array":         `"[" ws ( value ( "," ws value )* )? "]" ws`,
}

var primitiveDeps = map[string][]string{
	"string":  {"char", "ws"},
	"number":  {"integral-part", "ws"},
	"integer": {"integral-part", "ws"},
	"boolean": {"ws"},
	"null":    {"ws"},
	"value":   {"object", "array", "string", "number", "boolean", "null"},
	"object":  {"ws", "string", "value"},
	"array":   {"ws", "value"},
}

func (c *converter) prim(name string) string {
	if _, ok := c.rules[name]; ok {
		return name
	}
	c.rules[name] = primitives[name]
	for _, d := range primitiveDeps[name] {
		c.prim(d)
	}
	return name
}

var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true,
}

// known lists the keywords visit enforces.
var known = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true,
	"items": true, "prefixItems": true, "minItems": true, "maxItems": true,
	"minLength": true, "maxLength": true, "enum": true, "const": true,
	"anyOf": true, "oneOf": true, "$ref": true,
}

// visit returns a GBNF expression for schema s. name hints rule names.
func (c *converter) visit(s *node, name string, depth int) (string, error) {
	if depth > maxDepth {
		return "", fmt.Errorf("%w: schema nested deeper than %d", ErrUnsupported, maxDepth)
	}
	switch s.kind {
	case 'b':
		if !s.b {
			return "", fmt.Errorf("%w: schema false accepts nothing", ErrUnsupported)
		}
		return c.prim("value"), nil
	case 'o':
	default:
		return "", fmt.Errorf("%w: schema at %s is %s, want an object or boolean", ErrInvalid, name, s.raw)
	}
	for _, k := range s.keys {
		if !known[k] && !annotations[k] {
			return "", fmt.Errorf("%w: keyword %q (at %s)", ErrUnsupported, k, name)
		}
	}
	if r := s.get("$ref"); r != nil {
		if len(s.keys) > 1 && slices.ContainsFunc(s.keys, func(k string) bool { return k != "$ref" && known[k] }) {
			return "", fmt.Errorf("%w: $ref beside other keywords (at %s)", ErrUnsupported, name)
		}
		return c.ref(r, depth)
	}
	if v := s.get("const"); v != nil {
		return literal(v.raw) + " " + c.prim("ws"), nil
	}
	if e := s.get("enum"); e != nil {
		if e.kind != 'a' || len(e.items) == 0 {
			return "", fmt.Errorf("%w: enum must be a non-empty array (at %s)", ErrInvalid, name)
		}
		alts := make([]string, len(e.items))
		for i, it := range e.items {
			alts[i] = literal(it.raw)
		}
		return "(" + strings.Join(alts, " | ") + ") " + c.prim("ws"), nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if alt := s.get(kw); alt != nil {
			if alt.kind != 'a' || len(alt.items) == 0 {
				return "", fmt.Errorf("%w: %s must be a non-empty array (at %s)", ErrInvalid, kw, name)
			}
			var alts []string
			for i, sub := range alt.items {
				x, err := c.visit(sub, fmt.Sprintf("%s-%d", name, i), depth+1)
				if err != nil {
					return "", err
				}
				alts = append(alts, x)
			}
			return "(" + strings.Join(alts, " | ") + ")", nil
		}
	}
	t := s.get("type")
	if t == nil {
		// Infer the type from type-specific keywords, else anything.
		switch {
		case s.get("properties") != nil || s.get("additionalProperties") != nil:
			return c.object(s, name, depth)
		case s.get("items") != nil || s.get("prefixItems") != nil:
			return c.array(s, name, depth)
		case s.get("minLength") != nil || s.get("maxLength") != nil:
			return c.str(s, name)
		}
		return c.prim("value"), nil
	}
	var types []string
	switch t.kind {
	case 'v':
		var one string
		if err := json.Unmarshal(t.raw, &one); err != nil {
			return "", fmt.Errorf("%w: type %s (at %s)", ErrInvalid, t.raw, name)
		}
		types = []string{one}
	case 'a':
		for _, it := range t.items {
			var one string
			if err := json.Unmarshal(it.raw, &one); err != nil {
				return "", fmt.Errorf("%w: type %s (at %s)", ErrInvalid, it.raw, name)
			}
			types = append(types, one)
		}
	default:
		return "", fmt.Errorf("%w: type %s (at %s)", ErrInvalid, t.raw, name)
	}
	var alts []string
	for _, typ := range types {
		var x string
		var err error
		switch typ {
		case "object":
			x, err = c.object(s, name, depth)
		case "array":
			x, err = c.array(s, name, depth)
		case "string":
			x, err = c.str(s, name)
		case "number", "integer", "boolean", "null":
			x = c.prim(typ)
		default:
			err = fmt.Errorf("%w: unknown type %q (at %s)", ErrInvalid, typ, name)
		}
		if err != nil {
			return "", err
		}
		alts = append(alts, x)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return "(" + strings.Join(alts, " | ") + ")", nil
}

func (c *converter) ref(r *node, depth int) (string, error) {
	var ref string
	if err := json.Unmarshal(r.raw, &ref); err != nil {
		return "", fmt.Errorf("%w: $ref %s", ErrInvalid, r.raw)
	}
	if name, ok := c.refs[ref]; ok {
		return name, nil
	}
	var target *node
	var hint string
	switch {
	case ref == "#":
		target, hint = c.root, "root-ref"
	case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
		section, def, _ := strings.Cut(strings.TrimPrefix(ref, "#/"), "/")
		if defs := c.root.get(section); defs != nil {
			target = defs.get(def)
		}
		hint = def
	default:
		return "", fmt.Errorf("%w: $ref %q (only #, #/$defs/... and #/definitions/...)", ErrUnsupported, ref)
	}
	if target == nil {
		return "", fmt.Errorf("%w: $ref %q points nowhere", ErrInvalid, ref)
	}
	// Reserve the rule name first so recursive references resolve to it.
	name, err := c.add(hint, "\x00pending "+ref)
	if err != nil {
		return "", err
	}
	c.refs[ref] = name
	body, err := c.visit(target, name, depth+1)
	if err != nil {
		return "", err
	}
	c.rules[name] = body
	return name, nil
}

func (c *converter) count(s *node, key string, def int) (int, error) {
	v := s.get(key)
	if v == nil {
		return def, nil
	}
	n, err := strconv.Atoi(string(v.raw))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s must be a non-negative integer, got %s", ErrInvalid, key, v.raw)
	}
	if n > maxCount {
		return 0, fmt.Errorf("%w: %s %d exceeds %d", ErrUnsupported, key, n, maxCount)
	}
	return n, nil
}

// repeat renders x repeated between lo and hi times (hi < 0: unbounded).
func repeat(x string, lo, hi int) string {
	switch {
	case hi < 0 && lo == 0:
		return x + "*"
	case hi < 0 && lo == 1:
		return x + "+"
	case hi < 0:
		return fmt.Sprintf("%s{%d,}", x, lo)
	case lo == hi:
		return fmt.Sprintf("%s{%d}", x, lo)
	}
	return fmt.Sprintf("%s{%d,%d}", x, lo, hi)
}

func (c *converter) str(s *node, name string) (string, error) {
	lo, err := c.count(s, "minLength", 0)
	if err != nil {
		return "", err
	}
	hi, err := c.count(s, "maxLength", -1)
	if err != nil {
		return "", err
	}
	if hi >= 0 && hi < lo {
		return "", fmt.Errorf("%w: maxLength %d < minLength %d (at %s)", ErrInvalid, hi, lo, name)
	}
	if lo == 0 && hi < 0 {
		return c.prim("string"), nil
	}
	c.prim("char")
	return c.add(name+"-string", `"\"" `+repeat("char", lo, hi)+` "\"" `+c.prim("ws"))
}

func (c *converter) array(s *node, name string, depth int) (string, error) {
	lo, err := c.count(s, "minItems", 0)
	if err != nil {
		return "", err
	}
	hi, err := c.count(s, "maxItems", -1)
	if err != nil {
		return "", err
	}
	if hi >= 0 && hi < lo {
		return "", fmt.Errorf("%w: maxItems %d < minItems %d (at %s)", ErrInvalid, hi, lo, name)
	}
	ws := c.prim("ws")
	if p := s.get("prefixItems"); p != nil {
		if p.kind != 'a' {
			return "", fmt.Errorf("%w: prefixItems must be an array (at %s)", ErrInvalid, name)
		}
		if it := s.get("items"); it != nil && !(it.kind == 'b' && !it.b) {
			return "", fmt.Errorf("%w: items beside prefixItems (at %s); use items: false", ErrUnsupported, name)
		}
		parts := []string{`"[" ` + ws}
		for i, sub := range p.items {
			x, err := c.visit(sub, fmt.Sprintf("%s-%d", name, i), depth+1)
			if err != nil {
				return "", err
			}
			if i > 0 {
				parts = append(parts, `"," `+ws)
			}
			parts = append(parts, x)
		}
		parts = append(parts, `"]" `+ws)
		return c.add(name, strings.Join(parts, " "))
	}
	var item string
	if it := s.get("items"); it == nil {
		item = c.prim("value")
	} else {
		if it.kind == 'a' {
			return "", fmt.Errorf("%w: items as an array (at %s); use prefixItems", ErrUnsupported, name)
		}
		x, err := c.visit(it, name+"-item", depth+1)
		if err != nil {
			return "", err
		}
		if item, err = c.add(name+"-item", x); err != nil {
			return "", err
		}
	}
	var body string
	switch {
	case hi == 0:
		body = `"[" ` + ws + ` "]" ` + ws
	default:
		restLo, restHi := max(lo-1, 0), hi
		if hi > 0 {
			restHi = hi - 1
		}
		seq := item + " " + repeat(`("," `+ws+" "+item+")", restLo, restHi)
		if lo == 0 {
			seq = "(" + seq + ")?"
		}
		body = `"[" ` + ws + " " + seq + ` "]" ` + ws
	}
	return c.add(name, body)
}

func (c *converter) object(s *node, name string, depth int) (string, error) {
	props := s.get("properties")
	addl := s.get("additionalProperties")
	if addl != nil && addl.kind != 'b' {
		return "", fmt.Errorf("%w: additionalProperties as a schema (at %s)", ErrUnsupported, name)
	}
	if props == nil {
		if addl != nil && !addl.b {
			return `"{" ` + c.prim("ws") + ` "}" ` + c.prim("ws"), nil
		}
		return c.prim("object"), nil
	}
	if props.kind != 'o' {
		return "", fmt.Errorf("%w: properties must be an object (at %s)", ErrInvalid, name)
	}
	if addl != nil && addl.b {
		return "", fmt.Errorf("%w: additionalProperties true beside properties (at %s)", ErrUnsupported, name)
	}
	if len(props.keys) > maxProps {
		return "", fmt.Errorf("%w: %d properties exceed %d (at %s)", ErrUnsupported, len(props.keys), maxProps, name)
	}
	required := map[string]bool{}
	if r := s.get("required"); r != nil {
		if r.kind != 'a' {
			return "", fmt.Errorf("%w: required must be an array (at %s)", ErrInvalid, name)
		}
		for _, it := range r.items {
			var k string
			if err := json.Unmarshal(it.raw, &k); err != nil {
				return "", fmt.Errorf("%w: required entry %s (at %s)", ErrInvalid, it.raw, name)
			}
			if props.get(k) == nil {
				return "", fmt.Errorf("%w: required property %q is not in properties (at %s)", ErrUnsupported, k, name)
			}
			required[k] = true
		}
	}
	ws := c.prim("ws")
	kv := map[string]string{}
	var req, opt []string
	for _, k := range props.keys {
		x, err := c.visit(props.props[k], name+"-"+k, depth+1)
		if err != nil {
			return "", err
		}
		kn, _ := marshal(k)
		rule, err := c.add(name+"-"+k+"-kv", literal(kn)+" "+ws+` ":" `+ws+" "+x)
		if err != nil {
			return "", err
		}
		kv[k] = rule
		if required[k] {
			req = append(req, k)
		} else {
			opt = append(opt, k)
		}
	}
	var parts []string
	for i, k := range req {
		if i > 0 {
			parts = append(parts, `"," `+ws)
		}
		parts = append(parts, kv[k])
	}
	if len(opt) > 0 {
		// tail(i): the optional properties from i on, each optional, in order,
		// each preceded by a comma.
		tail := func(i int) string {
			var b strings.Builder
			for _, k := range opt[i:] {
				fmt.Fprintf(&b, ` ("," %s %s)?`, ws, kv[k])
			}
			return b.String()
		}
		if len(req) > 0 {
			parts = append(parts, strings.TrimSpace(tail(0)))
		} else {
			// No required property: the first one present has no comma.
			alts := make([]string, len(opt))
			for i, k := range opt {
				alts[i] = kv[k] + tail(i+1)
			}
			parts = append(parts, "("+strings.Join(alts, " | ")+")?")
		}
	}
	body := `"{" ` + ws + " " + strings.Join(parts, " ") + ` "}" ` + ws
	return c.add(name, body)
}

// literal renders a GBNF string literal matching exactly the bytes of s.
func literal(s []byte) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range string(s) {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

package config

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// Redacted stands for a secret's value in what Write prints.
const Redacted = "(redacted)"

// Write prints c as a TOML file, one key per line in the order of Config's
// fields, each with a comment saying where its value came from (origins;
// a key missing from it is marked default). Secrets print as Redacted when
// set. Apart from the secrets, the output loads back as the same config.
func (c *Config) Write(w io.Writer, origins Origins) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	for i := range rt.NumField() {
		key := rt.Field(i).Tag.Get("toml")
		if key == "" {
			continue
		}
		origin := origins[key]
		if origin == "" {
			origin = FromDefault
		}
		fmt.Fprintf(tw, "%s = %s\t# %s\n", key, tomlValue(rv.Field(i)), origin)
	}
	return tw.Flush()
}

// tomlValue writes one field's value as TOML.
func tomlValue(f reflect.Value) string {
	switch v := f.Interface().(type) {
	case secret.Value:
		if v.IsZero() {
			return `""`
		}
		return strconv.Quote(Redacted)
	case Duration:
		return strconv.Quote(v.D().String())
	case *bool:
		if v == nil {
			return "false"
		}
		return strconv.FormatBool(*v)
	}
	switch f.Kind() {
	case reflect.String:
		return strconv.Quote(f.String())
	case reflect.Bool:
		return strconv.FormatBool(f.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(f.Int(), 10)
	case reflect.Float32:
		return strconv.FormatFloat(f.Float(), 'g', -1, 32)
	case reflect.Slice:
		items := make([]string, f.Len())
		for i := range items {
			items[i] = tomlValue(f.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.Map:
		var items []string
		for _, k := range f.MapKeys() {
			items = append(items, strconv.Quote(k.String())+" = "+tomlValue(f.MapIndex(k)))
		}
		slices.Sort(items)
		if len(items) == 0 {
			return "{}"
		}
		return "{ " + strings.Join(items, ", ") + " }"
	}
	return strconv.Quote(fmt.Sprint(f.Interface()))
}

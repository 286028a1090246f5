package main

// Seed files: the YAML of keyhook import FILE, --seed and a bundle's
// keyhook.yaml, read with errors placed at FILE:LINE, and written by
// keyhook export (docs/configuration.md).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/keyhook/keyhook/engine"
)

// seedFile is a parsed seed (keyhook import, --seed) with its YAML nodes,
// which place an error at the line of the entry and field it is about.
type seedFile struct {
	path string
	// sections are the nodes of config, scripts, clients, users and
	// trusted_issuers.
	sections map[string]*yaml.Node
	seed     *engine.Seed
}

// readSeed reads and checks a seed file without touching any database:
// every entry must decode into its type, and scripts' source_file paths
// (relative to the file) must be readable. Errors read
// "FILE:LINE: clients[1].grant_types: ...".
func readSeed(path string) (*seedFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err // names the file
	}
	return parseSeed(path, raw, func(file string) (string, error) {
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(path), file)
		}
		src, err := os.ReadFile(file)
		return string(src), err
	})
}

// parseSeed parses raw, the seed file at path, reading scripts'
// source_file paths with source.
func parseSeed(path string, raw []byte, source func(file string) (string, error)) (*seedFile, error) {
	f := &seedFile{path: path, sections: map[string]*yaml.Node{}, seed: &engine.Seed{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, f.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return f, nil // an empty file imports nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, f.errorAt(root, "", "want a mapping with config, scripts, clients and users")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		f.sections[key.Value] = val
		switch key.Value {
		case "config":
			if err := f.decode(val, key.Value, &f.seed.Config); err != nil {
				return nil, err
			}
		case "scripts":
			if err := decodeList(f, key, val, &f.seed.Scripts); err != nil {
				return nil, err
			}
		case "clients":
			if err := decodeList(f, key, val, &f.seed.Clients); err != nil {
				return nil, err
			}
		case "users":
			if err := decodeList(f, key, val, &f.seed.Users); err != nil {
				return nil, err
			}
		case "trusted_issuers":
			if err := decodeList(f, key, val, &f.seed.TrustedIssuers); err != nil {
				return nil, err
			}
		default:
			return nil, f.errorAt(key, key.Value, "unknown section (want config, scripts, clients, users or trusted_issuers)")
		}
	}
	for i, c := range f.seed.Clients {
		if c.ClientID == "" { // a seed names its clients, to replace them on the next import
			return nil, f.errorAt(f.sections["clients"].Content[i], fmt.Sprintf("clients[%d].client_id", i), "is required in a seed")
		}
	}
	for i, s := range f.seed.Scripts {
		if s.SourceFile == "" {
			continue
		}
		src, err := source(s.SourceFile)
		if err != nil {
			item := f.sections["scripts"].Content[i]
			return nil, f.errorAt(fieldNode(item, "source_file"), fmt.Sprintf("scripts[%d].source_file", i), err.Error())
		}
		s.Source = src
	}
	return f, nil
}

// decodeList decodes the sequence val of section key into *out, one entry
// at a time so that an error names the entry.
func decodeList[T any](f *seedFile, key, val *yaml.Node, out *[]*T) error {
	if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
		return nil
	}
	if val.Kind != yaml.SequenceNode {
		return f.errorAt(val, key.Value, "want a list")
	}
	for i, item := range val.Content {
		v := new(T)
		if err := f.decode(item, fmt.Sprintf("%s[%d]", key.Value, i), v); err != nil {
			return err
		}
		*out = append(*out, v)
	}
	return nil
}

// decode decodes node into v through JSON, so that the engine's JSON
// names and types apply and unknown fields are refused.
func (f *seedFile) decode(node *yaml.Node, where string, v any) error {
	var doc any
	if err := node.Decode(&doc); err != nil {
		return f.errorAt(node, where, err.Error())
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return f.errorAt(node, where, err.Error())
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		field := te.Field
		msg := fmt.Sprintf("want %s, not %s", typeName(te.Type.String()), te.Value)
		if field == "" {
			return f.errorAt(node, where, msg)
		}
		return f.errorAt(fieldNode(node, strings.SplitN(field, ".", 2)[0]), where+"."+field, msg)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return f.errorAt(fieldNode(node, field), where+"."+field, "unknown field")
	}
	return f.errorAt(node, where, strings.TrimPrefix(err.Error(), "json: "))
}

// typeName says a Go type in the seed's terms.
func typeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "engine."), strings.HasPrefix(t, "*engine."):
		return "a mapping"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case t == "bool":
		return "true or false"
	}
	return "a " + t
}

// fieldNode is the key node of field in the mapping node, or node itself
// when it has none.
func fieldNode(node *yaml.Node, field string) *yaml.Node {
	if node.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == field {
				return node.Content[i]
			}
		}
	}
	return node
}

// errorAt is "FILE:LINE: WHERE: msg".
func (f *seedFile) errorAt(node *yaml.Node, where, msg string) error {
	if where != "" {
		msg = where + ": " + msg
	}
	return fmt.Errorf("%s:%d: %s", f.path, node.Line, msg)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError places a YAML syntax error at its line.
func (f *seedFile) yamlError(err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", f.path, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", f.path, strings.TrimPrefix(err.Error(), "yaml: "))
}

// fieldPrefix is the field an engine error's description starts with
// ("grant_types: ...", "redirect_uris[1]: ...").
var fieldPrefix = regexp.MustCompile(`^([a-z_]+)(\[\d+\])?: (.*)$`)

// explain places an error of engine.Import at the entry and field of the
// file it is about.
func (f *seedFile) explain(err error) error {
	var ie *engine.ImportError
	if !errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	msg := ie.Err.Error()
	var ee *engine.Error
	if errors.As(ie.Err, &ee) {
		msg = ee.Description
	}
	node := f.sections[ie.Section]
	where := ie.Section
	if ie.Section != "config" {
		where = fmt.Sprintf("%s[%d]", ie.Section, ie.Index)
		if node != nil && ie.Index < len(node.Content) {
			node = node.Content[ie.Index]
		}
	}
	if node == nil {
		return fmt.Errorf("%s: %s: %s", f.path, where, msg)
	}
	if m := fieldPrefix.FindStringSubmatch(msg); m != nil {
		// At the field's line, or the entry's when the field is absent.
		return f.errorAt(fieldNode(node, m[1]), where+"."+m[1]+m[2], m[3])
	}
	return f.errorAt(node, where, msg)
}

// writeYAML writes v, a JSON-shaped value, as YAML: numbers stay integers
// where they are (3600, not 3600.0 nor 1e+06).
func writeYAML(w io.Writer, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	defer enc.Close()
	return enc.Encode(plainNumbers(doc))
}

// plainNumbers replaces the json.Numbers in v by int64 or float64.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = plainNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = plainNumbers(e)
		}
	}
	return v
}

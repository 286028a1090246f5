// Command gen-dts writes scripts/keyhook.d.ts, the TypeScript declarations
// of the script API (docs/scripts.md, "Typed API"), from the Go types that
// describe it in package hooks (hooks/scriptapi.go) and their doc
// comments. Run it with go generate ./scripts; TestDeclarationsUpToDate
// fails when the committed file differs from what it writes.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log"
	"os"
	"reflect"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

func main() {
	out := flag.String("o", "keyhook.d.ts", "the file to write")
	src := flag.String("hooks", "../hooks", "the directory of package hooks, for the doc comments")
	flag.Parse()
	b, err := generate(*src)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
}

// shape is an interface of the declarations. The shapes a script only
// reads (context and what it holds) are readonly all the way down; the
// arguments it edits and what fetch takes and returns are not.
type shape struct {
	t        reflect.Type
	readonly bool
}

var shapes = []shape{
	{reflect.TypeFor[hooks.ScriptContext](), true},
	{reflect.TypeFor[hooks.ClientInfo](), true},
	{reflect.TypeFor[hooks.CallerInfo](), true},
	{reflect.TypeFor[hooks.TokenInfo](), true},
	{reflect.TypeFor[hooks.Confirmation](), true},
	{reflect.TypeFor[hooks.UserInfo](), true},
	{reflect.TypeFor[hooks.HTTPRequestInfo](), true},
	{reflect.TypeFor[hooks.FetchOptions](), false},
	{reflect.TypeFor[hooks.FetchResponse](), false},
	{reflect.TypeFor[hooks.IntrospectionResponse](), false},
	{reflect.TypeFor[hooks.TokenArg](), false},
	{reflect.TypeFor[hooks.AssertionArg](), false},
	{reflect.TypeFor[hooks.TokenExchangeRequest](), false},
	{reflect.TypeFor[hooks.ExchangeParty](), true},
	{reflect.TypeFor[hooks.RegistrationInfo](), true},
	{reflect.TypeFor[hooks.ClientMetadata](), false},
}

// hookFunction is a function a script may define (hooks.Function).
type hookFunction struct {
	name    hooks.Function
	arg     string // the first parameter, before context; empty for none
	argType reflect.Type
	returns string
	doc     string
}

var hookFunctions = []hookFunction{
	{hooks.FnModifyResponse, "response", reflect.TypeFor[hooks.IntrospectionResponse](), "boolean",
		"Edits the introspection answer of an active token in place; true keeps the edits, false discards them."},
	{hooks.FnModifyAccessToken, "token", reflect.TypeFor[hooks.TokenArg](), "boolean",
		"Edits the access token about to be issued; true issues it, false refuses it (400 invalid_grant)."},
	{hooks.FnModifyIDToken, "token", reflect.TypeFor[hooks.TokenArg](), "boolean",
		"Edits the ID token about to be issued; false discards the edits."},
	{hooks.FnModifyRefreshToken, "token", reflect.TypeFor[hooks.TokenArg](), "boolean",
		"Edits the claims stored with the refresh token; false issues no refresh token."},
	{hooks.FnAccessTokenLifetime, "", nil, "number",
		"A positive whole number of seconds (at most 10 years) overrides the access token's lifetime; anything else keeps it."},
	{hooks.FnIDTokenLifetime, "", nil, "number",
		"A positive whole number of seconds (at most 10 years) overrides the ID token's lifetime; anything else keeps it."},
	{hooks.FnRefreshTokenLifetime, "", nil, "number",
		"A positive whole number of seconds (at most 10 years) overrides the refresh token's lifetime; anything else keeps it."},
	{hooks.FnValidateAssertion, "assertion", reflect.TypeFor[hooks.AssertionArg](), "boolean",
		"Checks the assertion of a JWT bearer grant and may set assertion.subject; true accepts it, false refuses it (400 invalid_grant)."},
	{hooks.FnModifyTokenExchange, "request", reflect.TypeFor[hooks.TokenExchangeRequest](), "boolean",
		"Decides a token exchange (RFC 8693): true allows it as edited (scope, audience and resource may narrow), false refuses it (400 invalid_request)."},
	{hooks.FnValidateRegistration, "metadata", reflect.TypeFor[hooks.ClientMetadata](), "boolean",
		"Decides a dynamic client registration (registration scripts): edits the metadata in place; true goes on, false refuses it (400 invalid_client_metadata)."},
}

// docs holds the doc comments of package hooks: by type name, and by
// type name + "." + field name.
type docs map[string]string

func readDocs(dir string) (docs, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	d := docs{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					text := ts.Doc.Text()
					if text == "" && len(gd.Specs) == 1 {
						text = gd.Doc.Text()
					}
					d[ts.Name.Name] = text
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							d[ts.Name.Name+"."+n.Name] = fl.Doc.Text()
						}
					}
				}
			}
		}
	}
	return d, nil
}

func generate(hooksDir string) ([]byte, error) {
	d, err := readDocs(hooksDir)
	if err != nil {
		return nil, err
	}
	known := map[reflect.Type]bool{}
	for _, s := range shapes {
		known[s.t] = true
	}
	var b bytes.Buffer
	b.WriteString(`// Code generated by go generate ./scripts (scripts/gen-dts); DO NOT EDIT.

// The script API of keyhook (docs/scripts.md): what a script's hook
// functions receive and return. Reference this file from a script for
// completion and type checking in an editor:
//
//   /// <reference path="keyhook.d.ts" />
//
// A running server serves it at GET /admin/v1/scripts/api.d.ts.
`)
	for _, s := range shapes {
		b.WriteString("\n")
		comment(&b, "", d[s.t.Name()])
		fmt.Fprintf(&b, "interface %s {\n", s.t.Name())
		for i := range s.t.NumField() {
			f := s.t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			override := f.Tag.Get("ts")
			comment(&b, "  ", d[s.t.Name()+"."+f.Name])
			ro := ""
			if s.readonly {
				ro = "readonly "
			}
			if name == "-" {
				if override != "index" {
					return nil, fmt.Errorf("%s.%s: json:\"-\" without ts:\"index\"", s.t.Name(), f.Name)
				}
				fmt.Fprintf(&b, "  %s[name: string]: unknown;\n", ro)
				continue
			}
			optional := strings.Contains(opts, "omitempty")
			typ := override
			if typ == "" {
				typ, err = tsType(f.Type, s.readonly, known)
				if err != nil {
					return nil, fmt.Errorf("%s.%s: %w", s.t.Name(), f.Name, err)
				}
				if f.Type.Kind() == reflect.Pointer && !optional {
					typ += " | null"
				}
			}
			q := ""
			if optional {
				q = "?"
			}
			fmt.Fprintf(&b, "  %s%s%s: %s;\n", ro, name, q, typ)
		}
		b.WriteString("}\n")
	}
	ctx := reflect.TypeFor[hooks.ScriptContext]().Name()
	b.WriteString("\n// The hook functions keyhook calls when a script defines them.\n")
	for _, h := range hookFunctions {
		b.WriteString("\n")
		comment(&b, "", h.doc)
		params := "context: " + ctx
		if h.arg != "" {
			params = h.arg + ": " + h.argType.Name() + ", " + params
		}
		fmt.Fprintf(&b, "declare function %s(%s): %s;\n", h.name, params, h.returns)
	}
	return b.Bytes(), nil
}

// tsType is the TypeScript type of a field of Go type t.
func tsType(t reflect.Type, readonly bool, known map[reflect.Type]bool) (string, error) {
	switch t.Kind() {
	case reflect.String:
		return "string", nil
	case reflect.Bool:
		return "boolean", nil
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number", nil
	case reflect.Interface:
		return "unknown", nil
	case reflect.Pointer:
		return tsType(t.Elem(), readonly, known)
	case reflect.Struct:
		if !known[t] {
			return "", fmt.Errorf("%s is not one of the shapes", t)
		}
		return t.Name(), nil
	case reflect.Slice:
		e, err := tsType(t.Elem(), readonly, known)
		if err != nil {
			return "", err
		}
		if readonly {
			return "readonly " + e + "[]", nil
		}
		return e + "[]", nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return "", fmt.Errorf("map key %s", t.Key())
		}
		e, err := tsType(t.Elem(), readonly, known)
		if err != nil {
			return "", err
		}
		if readonly {
			return "Readonly<Record<string, " + e + ">>", nil
		}
		return "Record<string, " + e + ">", nil
	}
	return "", fmt.Errorf("no TypeScript type for %s (give a ts tag)", t)
}

// comment writes text as a JSDoc comment, which editors show on hover.
func comment(b *bytes.Buffer, indent, text string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return
	}
	lines := strings.Split(text, "\n")
	if len(lines) == 1 {
		fmt.Fprintf(b, "%s/** %s */\n", indent, text)
		return
	}
	fmt.Fprintf(b, "%s/**\n", indent)
	for _, l := range lines {
		fmt.Fprintf(b, "%s%s\n", indent, strings.TrimRight(" * "+l, " "))
	}
	fmt.Fprintf(b, "%s */\n", indent)
}

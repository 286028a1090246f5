package scripts

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"

	"github.com/keyhook/keyhook/hooks"
)

// ErrSourceTooLarge is wrapped by the error Check and Call return for a
// source longer than Options.MaxSourceBytes, so callers can tell an
// oversized script from one that does not compile.
var ErrSourceTooLarge = errors.New("scripts: source too large")

// wrapperPrefix opens the function that every script is compiled into
// (see compiled). It is kept on the script's first line so that line
// numbers in run-time errors match the stored source; only columns on
// line 1 are shifted, by len(wrapperPrefix).
const wrapperPrefix = "(function(){"

// compiled is one (Name, Version) of a script, compiled once and shared by
// every runtime of its pool (a *goja.Program is not tied to a runtime).
//
// The program is the script's source wrapped as the body of a function
// expression that ends by returning an array of the script's top-level
// bindings: "(function(){" + source + "\n;return [a, b, ...];\n})". Each
// call invokes that function afresh, so every top-level var, let, const,
// class and closure is new for every call; see the package documentation
// for why this is how state is kept from leaking between calls.
type compiled struct {
	prg *goja.Program
	// index maps a top-level binding name to its position in the array
	// the wrapper returns. A Call.Function missing from it cannot be
	// defined, which Call answers without taking a runtime.
	index map[string]int
	// once is set when the top level cannot hold state (see runsOnce):
	// then it runs once per runtime, as the README promises script authors, and calls
	// call the functions it made.
	once bool
	// names holds every identifier and string literal of the source: a
	// context key not among them can only be read through a computed
	// name, so it is not worth sending to a worker up front.
	names map[string]bool
}

// compileScript checks size, parses and compiles source, and builds the
// wrapped program. Source maps are disabled: goja's default parser reads
// the file a "//# sourceMappingURL=" comment names from the local disk,
// which would give script authors file access (and a hang on a FIFO).
func compileScript(name, source string, maxBytes int) (*compiled, error) {
	if len(source) > maxBytes {
		return nil, fmt.Errorf("%w: script %q is %d bytes, limit is %d", ErrSourceTooLarge, name, len(source), maxBytes)
	}
	prg, err := parser.ParseFile(nil, name, source, 0, parser.WithDisableSourceMaps)
	if err != nil {
		return nil, toSyntaxError(err, 0)
	}
	// Compile the script as written, exactly as goja.Compile(name, src,
	// false) would, so that errors the compiler (not the parser) finds
	// are reported with positions in the stored source.
	if _, err := goja.CompileAST(prg, false); err != nil {
		return nil, toSyntaxError(err, 0)
	}
	names := topLevelNames(prg)
	var b strings.Builder
	b.Grow(len(wrapperPrefix) + len(source) + 32 + 16*len(names))
	b.WriteString(wrapperPrefix)
	b.WriteString(source)
	b.WriteString("\n;return [")
	index := make(map[string]int, len(names))
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		index[n] = i
	}
	b.WriteString("];\n})")
	wprg, err := parser.ParseFile(nil, name, b.String(), 0, parser.WithDisableSourceMaps)
	if err != nil {
		return nil, toSyntaxError(err, len(wrapperPrefix))
	}
	p, err := goja.CompileAST(wprg, false)
	if err != nil {
		return nil, toSyntaxError(err, len(wrapperPrefix))
	}
	return &compiled{prg: p, index: index, once: runsOnce(prg), names: sourceNames(prg)}, nil
}

// sourceNames collects the identifiers (property names of dot
// expressions included) and string literals of a program.
func sourceNames(prg *ast.Program) map[string]bool {
	names := make(map[string]bool)
	walkAST(reflect.ValueOf(prg.Body), make(map[uintptr]bool), func(n any) {
		switch n := n.(type) {
		case *ast.Identifier:
			names[n.Name.String()] = true
		case *ast.StringLiteral:
			names[n.Value.String()] = true
		case *ast.TemplateElement:
			names[n.Parsed.String()] = true
		}
	})
	return names
}

// runsOnce reports whether a script's top level can run once per runtime
// instead of once per call without any call being able to see another's
// state. That holds when the top level only declares functions (plus
// directives and empty statements), which creates no state but the
// function objects and their bindings, and the script can neither change
// those bindings nor reach the function objects: every use of a
// top-level function's name is a call of it, and the script never says
// arguments (arguments.callee is the function object). The functions
// (and their prototype objects) are frozen besides. Generator functions
// are left out: their prototype objects are reachable from the
// generators they make. Anything else, or any doubt, runs the top level
// on every call. The check is by name, so a local variable that shadows
// a top-level function also makes the script run its top level per call.
func runsOnce(prg *ast.Program) bool {
	if len(prg.DeclarationList) > 0 {
		return false
	}
	top := make(map[string]bool)
	allowed := make(map[*ast.Identifier]bool)
	for _, st := range prg.Body {
		switch st := st.(type) {
		case *ast.FunctionDeclaration:
			f := st.Function
			if f == nil || f.Name == nil || f.Generator {
				return false
			}
			top[f.Name.Name.String()] = true
			allowed[f.Name] = true
		case *ast.EmptyStatement:
		case *ast.ExpressionStatement:
			if _, ok := st.Expression.(*ast.StringLiteral); !ok {
				return false
			}
		default:
			return false
		}
	}
	ok := true
	walkAST(reflect.ValueOf(prg.Body), make(map[uintptr]bool), func(n any) {
		switch n := n.(type) {
		case *ast.CallExpression:
			if id, isID := n.Callee.(*ast.Identifier); isID {
				allowed[id] = true
			}
		case *ast.Identifier:
			name := n.Name.String()
			if name == "arguments" || top[name] && !allowed[n] {
				ok = false
			}
		}
	})
	return ok
}

// walkAST visits every node under v (a goja AST node, or a slice or
// interface holding nodes), parents before children. Identifiers held by
// value (as in {a} shorthand properties) are visited as pointers to
// copies, so they are never the pointers visit has seen before.
func walkAST(v reflect.Value, seen map[uintptr]bool, visit func(any)) {
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			walkAST(v.Elem(), seen, visit)
		}
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		visit(v.Interface())
		walkFields(v.Elem(), seen, visit)
	case reflect.Slice:
		for i := range v.Len() {
			walkAST(v.Index(i), seen, visit)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[ast.Identifier]() {
			id := v.Interface().(ast.Identifier)
			visit(&id)
			return
		}
		walkFields(v, seen, visit)
	}
}

func walkFields(v reflect.Value, seen map[uintptr]bool, visit func(any)) {
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() {
			walkAST(v.Field(i), seen, visit)
		}
	}
}

// topLevelNames lists, without duplicates and in source order, the
// bindings a script creates at its top level: var declarations anywhere
// outside functions (goja hoists them into Program.DeclarationList),
// function declarations (also labelled ones), and top-level let, const
// and class declarations. Function declarations nested in blocks are not
// hoisted by goja, so they are not listed either.
func topLevelNames(prg *ast.Program) []string {
	var names []string
	seen := make(map[string]bool)
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, d := range prg.DeclarationList {
		for _, b := range d.List {
			bindingNames(b.Target, add)
		}
	}
	for _, st := range prg.Body {
		for {
			l, ok := st.(*ast.LabelledStatement)
			if !ok {
				break
			}
			st = l.Statement
		}
		switch st := st.(type) {
		case *ast.FunctionDeclaration:
			if st.Function != nil && st.Function.Name != nil {
				add(st.Function.Name.Name.String())
			}
		case *ast.ClassDeclaration:
			if st.Class != nil && st.Class.Name != nil {
				add(st.Class.Name.Name.String())
			}
		case *ast.LexicalDeclaration:
			for _, b := range st.List {
				bindingNames(b.Target, add)
			}
		}
	}
	return names
}

// bindingNames walks a binding target the way goja's compiler does
// (createBindings) and reports each identifier it binds.
func bindingNames(t ast.Expression, add func(string)) {
	switch t := t.(type) {
	case *ast.Identifier:
		add(t.Name.String())
	case *ast.ObjectPattern:
		for _, p := range t.Properties {
			switch p := p.(type) {
			case *ast.PropertyShort:
				add(p.Name.Name.String())
			case *ast.PropertyKeyed:
				bindingNames(p.Value, add)
			}
		}
		if t.Rest != nil {
			bindingNames(t.Rest, add)
		}
	case *ast.ArrayPattern:
		for _, e := range t.Elements {
			if e != nil {
				bindingNames(e, add)
			}
		}
		if t.Rest != nil {
			bindingNames(t.Rest, add)
		}
	case *ast.AssignExpression:
		bindingNames(t.Left, add)
	}
}

// lineColRe finds "Line 3:7" in messages of goja errors that lost their
// structured position (goja.Parse flattens parser errors to text).
var lineColRe = regexp.MustCompile(`Line (\d+):(\d+)`)

// toSyntaxError maps goja's parser and compiler errors to
// *hooks.SyntaxError with 1-based Line and Column. shift is the number of
// bytes the wrapper added before the source on line 1.
func toSyntaxError(err error, shift int) error {
	se := &hooks.SyntaxError{Message: err.Error()}
	switch e := err.(type) {
	case parser.ErrorList:
		if len(e) > 0 {
			se.Line, se.Column, se.Message = e[0].Position.Line, e[0].Position.Column, e[0].Message
		}
	case *parser.Error:
		se.Line, se.Column, se.Message = e.Position.Line, e.Position.Column, e.Message
	case *goja.CompilerSyntaxError:
		se.Message = e.Message
		if e.File != nil {
			p := e.File.Position(e.Offset)
			se.Line, se.Column = p.Line, p.Column
		}
	case *goja.CompilerReferenceError:
		se.Message = e.Message
		if e.File != nil {
			p := e.File.Position(e.Offset)
			se.Line, se.Column = p.Line, p.Column
		}
	}
	if se.Line == 0 {
		if m := lineColRe.FindStringSubmatch(se.Message); m != nil {
			se.Line, _ = strconv.Atoi(m[1])
			se.Column, _ = strconv.Atoi(m[2])
		}
	}
	if se.Line == 1 && se.Column > shift {
		se.Column -= shift
	}
	return se
}

package scripts

import _ "embed"

//go:generate go run ./gen-dts -o keyhook.d.ts -hooks ../hooks

// declarations is scripts/keyhook.d.ts: the TypeScript declarations of the
// script API, generated from the Go types in hooks/scriptapi.go
// (docs/scripts.md, "Typed API").
//
//go:embed keyhook.d.ts
var declarations string

// Declarations returns the TypeScript declarations of the script API
// (scripts/keyhook.d.ts), for editors and type checkers.
func Declarations() string { return declarations }

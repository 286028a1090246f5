package engine

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCheckResourceURI(t *testing.T) {
	for _, tc := range []struct {
		uri string
		ok  bool
	}{
		{"https://api.example.com", true},
		{"https://api.example.com/v1/", true},
		{"https://api.example.com/v1?tenant=1", true}, // discouraged, allowed (RFC 8707 §2)
		{"http://127.0.0.1:8080/api", true},
		{"urn:example:ledger", true},
		{"", false},
		{"/api", false},
		{"api", false},
		{"api.example.com/v1", false},
		{"//api.example.com", false},
		{"https://api.example.com#frag", false},
		{"https://api.example.com/#", false},
		{"https:///path", false},
		{"https://api.example.com/a b", false},
		{"https://api.example.com/\t", false},
		{"https://bücher.example", false},
		{"https://api.example.com/\x7f", false},
		{"https://%zz", false},
		{"https://api.example.com/" + strings.Repeat("a", MaxResourceLength), false},
	} {
		if err := checkResourceURI(tc.uri); (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.uri, err, tc.ok)
		}
	}
}

func TestCheckAllowedResources(t *testing.T) {
	if err := checkAllowedResources(nil); err != nil {
		t.Fatalf("none: %v", err)
	}
	if err := checkAllowedResources([]string{"https://a.example", "https://b.example"}); err != nil {
		t.Fatalf("two: %v", err)
	}
	if err := checkAllowedResources([]string{"https://a.example", "https://a.example"}); err == nil {
		t.Fatal("a duplicate was accepted")
	}
	many := make([]string, MaxAllowedResources+1)
	for i := range many {
		many[i] = "https://a.example/" + strings.Repeat("x", i+1)
	}
	if err := checkAllowedResources(many); err == nil {
		t.Fatal("too many were accepted")
	}
	if err := checkAllowedResources(many[:MaxAllowedResources]); err != nil {
		t.Fatalf("the most allowed: %v", err)
	}
}

func TestNarrowResources(t *testing.T) {
	const a, b, c = "https://a.example", "https://b.example", "https://c.example"
	client := &Client{ID: "app", AllowedResources: []string{a, b, c}}
	for _, tc := range []struct {
		name               string
		allowed            []string // nil: the client's list above
		granted, requested []string
		want               []string
		target             bool // invalid_target
	}{
		{name: "nothing granted, nothing asked", want: nil},
		{name: "all granted when none asked", granted: []string{a, b}, want: []string{a, b}},
		{name: "one of those granted", granted: []string{a, b}, requested: []string{b}, want: []string{b}},
		{name: "asked twice counts once", granted: []string{a, b}, requested: []string{b, b}, want: []string{b}},
		{name: "in the request's order", granted: []string{a, b}, requested: []string{b, a}, want: []string{b, a}},
		{name: "allowed but not granted", granted: []string{a}, requested: []string{c}, target: true},
		{name: "asked with nothing granted", requested: []string{a}, target: true},
		{name: "not allowed", granted: []string{a}, requested: []string{"https://x.example"}, target: true},
		{name: "malformed", granted: []string{a}, requested: []string{"a"}, target: true},
		{name: "no longer allowed, asked", allowed: []string{a}, granted: []string{a, b}, requested: []string{b}, target: true},
		{name: "no longer allowed, dropped", allowed: []string{a}, granted: []string{a, b}, want: []string{a}},
		{name: "none still allowed", allowed: []string{c}, granted: []string{a, b}, target: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := *client
			if tc.allowed != nil {
				cl.AllowedResources = tc.allowed
			}
			got, err := narrowResources(&cl, tc.granted, tc.requested)
			if tc.target {
				if !errors.Is(err, CodeInvalidTarget) {
					t.Fatalf("got %v, %v; want invalid_target", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	many := make([]string, MaxResourceParams+1)
	for i := range many {
		many[i] = a
	}
	if _, err := requestedResources(client, many); !errors.Is(err, CodeInvalidTarget) {
		t.Fatalf("too many: %v", err)
	}
	if got, err := requestedResources(client, many[:MaxResourceParams]); err != nil || !reflect.DeepEqual(got, []string{a}) {
		t.Fatalf("the most allowed: %v %v", got, err)
	}
}

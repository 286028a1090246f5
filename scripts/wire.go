package scripts

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// The wire format between the server and its script worker processes
// (see pool.go and worker.go). A frame is a 4-byte little-endian length,
// then that many bytes: a one-byte frame type and its payload. Payloads
// are built from unsigned varints, length-prefixed strings and plain
// values. A plain value is a tag byte and its data:
//
//	tagNull, tagFalse, tagTrue
//	tagInt    zigzag varint (int64)
//	tagFloat  8 bytes, IEEE 754, little-endian
//	tagString uvarint length, bytes
//	tagMap    uvarint n, n × (string key, value)
//	tagArray  uvarint n, n × value
//	tagLazy   (top-level context values only) fetched on first read
//
// The decoder trusts nothing: a worker is where hostile code runs, so
// every length is checked against what is left of the frame, nesting is
// bounded, and a malformed frame is an error, never a panic.

// Frame types.
const (
	frameReady     byte = iota + 1 // worker → server: started
	frameCall                      // server → worker: run a call
	frameSource                    // server → worker: a script's source, asked for by frameNeedSource
	frameNeedSrc                   // worker → server: send the source of the call's script
	frameNeedField                 // worker → server: compute a lazy context value
	frameField                     // server → worker: the value asked for
	frameLog                       // worker → server: a log record of the call
	frameResult                    // worker → server: the call's outcome
	frameRunning                   // worker → server: the call's runtime was just made; its time starts now
	frameSetup                     // worker → server: the call needs its script compiled or a runtime made first
	frameFetch                     // worker → server: make a context.fetch for the call (fetch.go)
	frameFetched                   // server → worker: its answer
)

// Value tags.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagMap
	tagArray
	tagLazy
)

// maxFrameBytes bounds one frame. Results are bounded by maxExportValues
// values; a frame larger than this is a protocol error, which ends the
// worker.
const maxFrameBytes = 256 << 20

// errMalformed reports a frame that does not decode.
var errMalformed = errors.New("scripts: malformed worker frame")

// encoder builds one frame: newFrame reserves its header, bytes returns
// it finished.
type encoder struct{ b []byte }

func newFrame(typ byte) *encoder {
	e := &encoder{b: make([]byte, 5, 256)}
	e.b[4] = typ
	return e
}

// bytes is the frame with its length filled in.
func (e *encoder) bytes() []byte {
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

func (e *encoder) byte(c byte)      { e.b = append(e.b, c) }
func (e *encoder) uvarint(u uint64) { e.b = binary.AppendUvarint(e.b, u) }
func (e *encoder) varint(i int64)   { e.b = binary.AppendVarint(e.b, i) }
func (e *encoder) string(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

// value appends a plain value. Values outside the JSON-like types are
// converted with plain first (as the in-process runtime does).
func (e *encoder) value(v any, depth int) error {
	if depth > maxDepth+2 {
		return fmt.Errorf("scripts: value nested deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.byte(tagNull)
	case bool:
		if x {
			e.byte(tagTrue)
		} else {
			e.byte(tagFalse)
		}
	case int64:
		e.byte(tagInt)
		e.varint(x)
	case float64:
		e.byte(tagFloat)
		e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(x))
	case string:
		e.byte(tagString)
		e.string(x)
	case map[string]any:
		e.byte(tagMap)
		e.uvarint(uint64(len(x)))
		for k, el := range x {
			e.string(k)
			if err := e.value(el, depth+1); err != nil {
				return err
			}
		}
	case []any:
		e.byte(tagArray)
		e.uvarint(uint64(len(x)))
		for _, el := range x {
			if err := e.value(el, depth+1); err != nil {
				return err
			}
		}
	case map[string]string:
		e.byte(tagMap)
		e.uvarint(uint64(len(x)))
		for k, el := range x {
			e.string(k)
			e.byte(tagString)
			e.string(el)
		}
	case []string:
		e.byte(tagArray)
		e.uvarint(uint64(len(x)))
		for _, el := range x {
			e.byte(tagString)
			e.string(el)
		}
	case hooks.Lazy:
		return e.value(x.Value(), depth)
	default:
		p, err := plain(v, depth)
		if err != nil {
			return err
		}
		switch p.(type) {
		case map[string]any, []any, nil, bool, int64, float64, string:
		default:
			return fmt.Errorf("scripts: cannot pass %T to a script", v)
		}
		return e.value(p, depth)
	}
	return nil
}

// decoder reads a frame's payload.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errMalformed
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	u, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return u
}

func (d *decoder) varint() int64 {
	i, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return i
}

// count reads a length that must be at most what is left, since every
// element takes at least one byte.
func (d *decoder) count() int {
	u := d.uvarint()
	if u > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(u)
}

func (d *decoder) string() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) bool() bool { return d.byte() == 1 }

// value reads a plain value. lazy, when not nil, is called for a tagLazy
// at the top level of a map at depth 0 (the context) with its key; a
// tagLazy anywhere else is malformed.
func (d *decoder) value(depth int, lazy func(key string) any, key string) any {
	if depth > maxDepth+2 {
		d.fail()
		return nil
	}
	switch d.byte() {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return d.varint()
	case tagFloat:
		if len(d.b) < 8 {
			d.fail()
			return nil
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
		return f
	case tagString:
		return d.string()
	case tagMap:
		n := d.count()
		m := make(map[string]any, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.string()
			var sub func(string) any
			if depth == 0 {
				sub = lazy
			}
			m[k] = d.value(depth+1, sub, k)
		}
		return m
	case tagArray:
		n := d.count()
		a := make([]any, n)
		for i := 0; i < n && d.err == nil; i++ {
			a[i] = d.value(depth+1, nil, "")
		}
		return a
	case tagLazy:
		if lazy == nil || depth != 1 {
			d.fail()
			return nil
		}
		return lazy(key)
	}
	d.fail()
	return nil
}

// writeFrame writes a frame made with newFrame.
func writeFrame(w io.Writer, e *encoder) error {
	if len(e.b)-4 > maxFrameBytes {
		return fmt.Errorf("scripts: worker frame of %d bytes exceeds the limit", len(e.b)-4)
	}
	_, err := w.Write(e.bytes())
	return err
}

// readFrame reads one frame.
func readFrame(r *bufio.Reader) (typ byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n < 1 || n > maxFrameBytes {
		return 0, nil, errMalformed
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// encodeFetchRequest appends a frameFetch's payload (after its id).
func encodeFetchRequest(f *encoder, req *fetchRequest) {
	f.string(req.url)
	f.string(req.method)
	f.uvarint(uint64(len(req.headers)))
	for k, v := range req.headers {
		f.string(k)
		f.string(v)
	}
	f.string(req.body)
	f.uvarint(uint64(max(req.timeout, 0)))
}

// decodeFetchRequest reads what encodeFetchRequest wrote.
func decodeFetchRequest(d *decoder) *fetchRequest {
	req := &fetchRequest{url: d.string(), method: d.string()}
	n := d.count()
	req.headers = make(map[string]string, n)
	for range n {
		k := d.string()
		req.headers[k] = d.string()
	}
	req.body = d.string()
	req.timeout = time.Duration(min(d.uvarint(), uint64(time.Hour)))
	return req
}

// decodeFetched reads a frameFetched's payload (after its id): the
// response, or the error the fetcher gave.
func decodeFetched(d *decoder) (*fetchResponse, error) {
	if msg := d.string(); msg != "" {
		return nil, &fetchError{outcome: d.string(), msg: strings.TrimPrefix(msg, "fetch: ")}
	}
	resp := &fetchResponse{status: int(min(d.uvarint(), 999))}
	n := d.count()
	resp.headers = make(map[string]string, n)
	for range n {
		k := d.string()
		resp.headers[k] = d.string()
	}
	resp.body = d.string()
	return resp, nil
}

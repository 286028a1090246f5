package hooks

import (
	"fmt"
	"math"
	"strconv"
)

// MaxLifetimeSeconds is the longest lifetime a token may be given: ten
// years of 365 days plus the two leap days they hold at most. It keeps
// expiries far inside time.Duration (about 292 years) and inside what
// every store and JSON reader handles as an integer.
const MaxLifetimeSeconds int64 = 10*365*86400 + 2*86400

// LifetimeSeconds reads the answer of a lifetime function
// (getAccessTokenLifetimeInSeconds and the like): whole seconds between 1
// and MaxLifetimeSeconds, as an integer or an integral float (JavaScript
// has only doubles, so 600 may come as 600.0). Anything else — fractions,
// NaN, infinities, zero, negatives, longer lifetimes, strings, objects —
// is not a lifetime, and ok is false.
func LifetimeSeconds(v any) (seconds int64, ok bool) {
	switch n := v.(type) {
	case int:
		return LifetimeSeconds(int64(n))
	case int64:
		if n >= 1 && n <= MaxLifetimeSeconds {
			return n, true
		}
	case float64:
		// The range check comes first: it also rules out NaN and the
		// infinities, and keeps the conversion below exact.
		if n >= 1 && n <= float64(MaxLifetimeSeconds) && n == math.Trunc(n) {
			return int64(n), true
		}
	}
	return 0, false
}

// lifetimeForLog describes a refused lifetime briefly: a script may have
// returned a megabyte of string or a deep object.
func lifetimeForLog(v any) string {
	switch n := v.(type) {
	case nil:
		// Runtimes export NaN and the infinities as null, as JSON does.
		return "undefined, null, NaN or an infinity"
	case int:
		return strconv.Itoa(n)
	case int64:
		return strconv.FormatInt(n, 10)
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(n)
	case string:
		if len(n) > 32 {
			n = n[:32] + "…"
		}
		return strconv.Quote(n)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

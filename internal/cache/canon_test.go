package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func canonical(t testing.TB, body string) (string, bool) {
	t.Helper()
	out, ok := Canonical(nil, []byte(body))
	return string(out), ok
}

func TestCanonicalEqual(t *testing.T) {
	for _, tc := range []struct{ name, a, b string }{
		{"key order", `{"b":1,"a":2,"c":{"y":1,"x":2}}`, `{"a":2,"c":{"x":2,"y":1},"b":1}`},
		{"whitespace", " {\n\t\"a\" : [ 1 , 2 ] ,\r\n\"b\":null } \n", `{"a":[1,2],"b":null}`},
		{"1.0 is 1", `1.0`, `1`},
		{"1e0 is 1", `1e0`, `1`},
		{"10E-1 is 1", `10E-1`, `1`},
		{"0.1e+1 is 1", `0.1e+1`, `1`},
		{"100 is 1e2", `100`, `1e2`},
		{"exponent with leading zeros", `1e0002`, `100.00`},
		{"-0 is 0", `-0`, `0`},
		{"0.0 is 0", `0.0`, `0`},
		{"0e7 is 0", `0e7`, `0`},
		{"-0.0e-5 is 0", `-0.0e-5`, `0`},
		{"negative", `-1.50`, `-15e-1`},
		{"escaped e acute", `"\u00e9"`, `"é"`},
		{"uppercase hex escape", `"\u00E9"`, `"é"`},
		{"escaped solidus", `"\/"`, `"/"`},
		{"escaped letters", `"\u0061b"`, `"ab"`},
		{"short escape vs unicode escape", `"\u000a"`, `"\n"`},
		{"escaped member names", `{"\u0061":1}`, `{"a":1}`},
		{"nested objects in arrays", `[{"b":1,"a":[{"d":1,"c":2}]},{}]`, `[ {"a":[{"c":2,"d":1}],"b":1} , { } ]`},
		{"surrogate pair vs literal emoji", `"\ud83d\ude00"`, `"😀"`},
		{"surrogate pair in upper case", `"\uD83D\uDE00"`, `"😀"`},
		{"64 levels", strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 64) + strings.Repeat(" ]", 64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, okA := canonical(t, tc.a)
			cb, okB := canonical(t, tc.b)
			if !okA || !okB {
				t.Fatalf("Canonical refused: %q ok=%v, %q ok=%v", tc.a, okA, tc.b, okB)
			}
			if ca != cb {
				t.Errorf("%q -> %q but %q -> %q; want equal", tc.a, ca, tc.b, cb)
			}
		})
	}
}

func TestCanonicalDifferent(t *testing.T) {
	for _, tc := range []struct{ name, a, b string }{
		{"17-digit integers", `12345678901234567`, `12345678901234568`},
		{"number vs string", `1`, `"1"`},
		{"array order", `[1,2]`, `[2,1]`},
		{"extra null member", `{"a":1}`, `{"a":1,"b":null}`},
		{"huge exponents", `1e400`, `1e401`},
		{"beyond float64 precision", `0.1`, `0.10000000000000001`},
		{"tiny numbers", `1e-400`, `2e-400`},
		{"sign", `-1`, `1`},
		{"null vs false", `null`, `false`},
		{"empty array vs object", `[]`, `{}`},
		{"escaped quote vs hash in name", `{"\"":1}`, `{"#":1}`},
		{"NUL vs empty string", `"\u0000"`, `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, okA := canonical(t, tc.a)
			cb, okB := canonical(t, tc.b)
			if !okA || !okB {
				t.Fatalf("Canonical refused: %q ok=%v, %q ok=%v", tc.a, okA, tc.b, okB)
			}
			if ca == cb {
				t.Errorf("%q and %q both -> %q; want different", tc.a, tc.b, ca)
			}
		})
	}
}

// TestCanonicalForm pins the exact canonical text, which ends up in cache
// keys: changing it invalidates every cached entry.
func TestCanonicalForm(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"literals", ` [ true , false , null ] `, `[true,false,null]`},
		{"integer", `42`, `42`},
		{"trailing zeros", `4200`, `42e2`},
		{"fraction", `5.10`, `51e-1`},
		{"small", `0.0025`, `25e-4`},
		{"negative exponent form", `-12.5E+3`, `-125e2`},
		{"zero", `-0.000e-9`, `0`},
		{"huge exponent", `1e2147483647`, `1e2147483647`},
		{"tiny exponent", `1e-2147483648`, `1e-2147483648`},
		{"exponent brought into range", `1000e-2147483650`, `1e-2147483647`},
		{"sorted by decoded bytes", `{"b":1,"#":2,"\"":3,"a":4,"é":5,"\u0000":6}`, `{"\u0000":6,"\"":3,"#":2,"a":4,"b":1,"é":5}`},
		{"string escapes", `"\"\\\/\b\f\n\r\t\u0001\u001F\u007f\u2028"`, "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\u2028\""},
		{"literal non-ASCII kept", `"日本"`, `"日本"`},
		{"nested sort", `{"z":{"b":[{"d":0,"c":0}],"a":1},"y":2}`, `{"y":2,"z":{"a":1,"b":[{"c":0,"d":0}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := canonical(t, tc.in)
			if !ok || got != tc.want {
				t.Errorf("Canonical(%q) = %q, %v; want %q, true", tc.in, got, ok, tc.want)
			}
		})
	}
}

func TestCanonicalRefused(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"invalid UTF-8 in a string", "\"a\xffb\""},
		{"invalid UTF-8 in a name", "{\"\xc3\":1}"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\""},
		{"duplicate key", `{"a":1,"a":2}`},
		{"duplicate key via escape", `{"a":1,"\u0061":2}`},
		{"duplicate key unsorted", `{"b":1,"a":2,"b":3}`},
		{"duplicate key nested", `[{"x":{"a":1,"a":1}}]`},
		{"lone high surrogate", `"\ud83d"`},
		{"lone low surrogate", `"\ude00"`},
		{"high surrogate then letter", `"\ud83dx"`},
		{"two high surrogates", `"\ud83d\ud83d"`},
		{"trailing garbage", `{} x`},
		{"two values", `1 2`},
		{"two objects", `{}{}`},
		{"empty body", ``},
		{"only whitespace", " \n"},
		{"nesting 65 deep", strings.Repeat("[", 65) + strings.Repeat("]", 65)},
		{"objects 65 deep", strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65)},
		{"leading zeros", `01`},
		{"negative leading zeros", `-01`},
		{"plus sign", `+1`},
		{"no integer part", `.5`},
		{"no fraction digits", `1.`},
		{"no exponent digits", `1e`},
		{"minus alone", `-`},
		{"NaN", `NaN`},
		{"Infinity", `-Infinity`},
		{"hex number", `0x10`},
		{"raw control char in string", "\"a\x01b\""},
		{"raw newline in string", "\"a\nb\""},
		{"exponent overflow", `1e99999999999`},
		{"exponent overflow after normalising", `10e2147483647`},
		{"exponent underflow", `1e-2147483649`},
		{"exponent with many digits", `1e` + strings.Repeat("9", 40)},
		{"unterminated string", `"abc`},
		{"unterminated array", `[1,2`},
		{"trailing comma", `[1,]`},
		{"trailing comma in object", `{"a":1,}`},
		{"missing colon", `{"a" 1}`},
		{"unquoted name", `{a:1}`},
		{"single quotes", `'a'`},
		{"bad escape", `"\x41"`},
		{"short unicode escape", `"\u00e"`},
		{"truncated literal", `tru`},
		{"capitalised literal", `True`},
		{"byte order mark", "\ufeff{}"},
		{"form feed is not whitespace", "\f1"},
		{"comment", `1 // one`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, ok := Canonical(dst, []byte(tc.in))
			if ok {
				t.Fatalf("Canonical(%q) = %q, true; want refused", tc.in, out)
			}
			if string(out) != "prefix" {
				t.Errorf("Canonical(%q) refused but left %q; want dst unchanged", tc.in, out)
			}
		})
	}
}

// TestMemberOrder checks the member sort against Go's string order of the
// decoded names (bytewise), escapes included.
func TestMemberOrder(t *testing.T) {
	names := []string{"", "a", "ab", "b", "\"", "#", "\\", "]", "\x00", "\x01", "\b", "\t", "\n",
		"\x1f", " ", "\x7f", "é", "😀", "a\n", "a\t", "a\x00", "a\"", "a#", "\\a", "\\\""}
	for _, x := range names {
		for _, y := range names {
			cx, ok1 := Canonical(nil, mustMarshal(t, x))
			cy, ok2 := Canonical(nil, mustMarshal(t, y))
			if !ok1 || !ok2 {
				t.Fatalf("refused %q or %q", x, y)
			}
			got := cmpCanonStrings(cx[1:len(cx)-1], cy[1:len(cy)-1])
			if want := strings.Compare(x, y); got != want {
				t.Errorf("cmpCanonStrings(%s, %s) = %d; want %d", cx, cy, got, want)
			}
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCanonicalAppends(t *testing.T) {
	out, ok := Canonical([]byte("k:"), []byte(`{"b":1,"a":2}`))
	if !ok || string(out) != `k:{"a":2,"b":1}` {
		t.Errorf("got %q, %v", out, ok)
	}
}

func TestBodyDigest(t *testing.T) {
	digest := func(ct, body string) [32]byte { return BodyDigest([]byte(ct), []byte(body)) }
	for _, tc := range []struct {
		name        string
		ctA, bodyA  string
		ctB, bodyB  string
		wantSameKey bool
	}{
		{"json", "application/json", `{"b":1.0,"a":2}`, "application/json", `{"a":2,"b":1}`, true},
		{"json with charset", "application/json; charset=utf-8", `1.0`, "application/json", `1`, true},
		{"json in upper case", "Application/JSON", `1.0`, "application/json", `1`, true},
		{"json with spaces", " application/json ;charset=UTF-8", `1.0`, "application/json", `1`, true},
		{"+json suffix", "application/vnd.api+json", `{"data": [1]}`, "application/json", `{"data":[1]}`, true},
		{"+json suffix upper case", "application/problem+JSON", `1.0`, "application/json", `1`, true},
		{"no content type", "", `1.0`, "application/json", `1`, true},
		{"text/plain is raw", "text/plain", `1.0`, "text/plain", `1`, false},
		{"text/plain raw is not canonical", "text/plain", `1`, "application/json", `1`, false},
		{"jsonp-like type is raw", "application/jsonp", `1.0`, "application/jsonp", `1`, false},
		{"bare +json subtype is raw", "application/+json", `1.0`, "application/+json", `1`, false},
		{"invalid json is raw", "application/json", `{"a":1,"a":1}`, "application/json", `{"a":1, "a":1}`, false},
		{"same invalid json", "application/json", `{"a":1,"a":1}`, "text/plain", `{"a":1,"a":1}`, true},
		{"content type does not enter the key", "application/json", `[1]`, "application/x+json", `[1]`, true},
		// The raw body below is, byte for byte, the canonical text of the
		// JSON body; the domain prefix keeps the digests apart.
		{"domain prefix", "text/plain", `{"a":1}`, "application/json", `{ "a" : 1 }`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := digest(tc.ctA, tc.bodyA), digest(tc.ctB, tc.bodyB)
			if (a == b) != tc.wantSameKey {
				t.Errorf("digest(%q, %q) == digest(%q, %q) is %v; want %v",
					tc.ctA, tc.bodyA, tc.ctB, tc.bodyB, a == b, tc.wantSameKey)
			}
		})
	}
}

// ---- Fuzzing, against an independent oracle built on encoding/json. ----

// oracleDecode decodes one JSON value with encoding/json, numbers kept as
// json.Number text.
func oracleDecode(s []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one value")
	}
	return v, nil
}

// oracleMaxExp bounds the exponents the oracle compares: big.Rat.SetString
// on 1e400000000 is slow or fails, so such numbers are skipped.
const oracleMaxExp = 10000

// oracleRat is the exact value of a JSON number, or skip.
func oracleRat(n json.Number) (r *big.Rat, skip bool) {
	s := string(n)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.ParseInt(s[i+1:], 10, 64)
		if err != nil || e > oracleMaxExp || e < -oracleMaxExp {
			return nil, true
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, true
	}
	return r, false
}

// oracleSame reports whether two decoded values are the same JSON value;
// skip is set when that depends on a number the oracle cannot compare.
func oracleSame(a, b any) (same, skip bool) {
	switch x := a.(type) {
	case nil:
		return b == nil, false
	case bool:
		y, ok := b.(bool)
		return ok && x == y, false
	case string:
		y, ok := b.(string)
		return ok && x == y, false
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false, false
		}
		rx, skipX := oracleRat(x)
		ry, skipY := oracleRat(y)
		if skipX || skipY {
			return false, true
		}
		return rx.Cmp(ry) == 0, false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false, false
		}
		return oracleSameAll(len(x), func(i int) (any, any) { return x[i], y[i] })
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false, false
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			if _, ok := y[k]; !ok {
				return false, false
			}
			keys = append(keys, k)
		}
		return oracleSameAll(len(keys), func(i int) (any, any) { return x[keys[i]], y[keys[i]] })
	}
	panic("unexpected type from encoding/json")
}

// oracleSameAll combines n element comparisons: one certain difference
// decides, else any skip makes the whole a skip.
func oracleSameAll(n int, pair func(int) (any, any)) (same, skip bool) {
	for i := range n {
		s, k := oracleSame(pair(i))
		if !s && !k {
			return false, false
		}
		skip = skip || k
	}
	return !skip, skip
}

// checkOne checks the properties of one input on its own and returns its
// canonical form, if any.
func checkOne(t *testing.T, in []byte) (canon []byte, v any, ok bool) {
	canon, ok = Canonical(nil, in)
	if !ok {
		return nil, nil, false
	}
	if !json.Valid(in) {
		t.Fatalf("Canonical accepted %q, which encoding/json calls invalid", in)
	}
	if !json.Valid(canon) {
		t.Fatalf("Canonical(%q) = %q, not valid JSON", in, canon)
	}
	again, ok := Canonical(nil, canon)
	if !ok || !bytes.Equal(again, canon) {
		t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, canon, again, ok)
	}
	v, err := oracleDecode(in)
	if err != nil {
		t.Fatalf("Canonical accepted %q, which encoding/json refuses: %v", in, err)
	}
	cv, err := oracleDecode(canon)
	if err != nil {
		t.Fatalf("encoding/json refuses canonical %q: %v", canon, err)
	}
	if same, skip := oracleSame(v, cv); !same && !skip {
		t.Fatalf("canonical form changed the value: %q -> %q", in, canon)
	}
	// encoding/json's re-encoding of the same value (sorted keys, its own
	// string escapes such as \u003c, numbers verbatim) must canonicalise
	// to the same text.
	if re, err := json.Marshal(v); err == nil {
		if c2, ok := Canonical(nil, re); !ok || !bytes.Equal(c2, canon) {
			t.Fatalf("%q -> %q but its re-encoding %q -> %q, %v", in, canon, re, c2, ok)
		}
	}
	return canon, v, true
}

func FuzzCanonical(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"b":1,"a":[1.0,"x"]}`, `{"a":[1,"x"],"b":1}`},
		{`1.0`, `10E-1`},
		{`0.1e+1`, `1e0`},
		{`-0`, `0.0`},
		{`"\u00e9"`, `"é"`},
		{`"\/"`, `"/"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`12345678901234567`, `12345678901234568`},
		{`0.1`, `0.10000000000000001`},
		{`1e400`, `1e401`},
		{`{"a":1}`, `{"a":1,"b":null}`},
		{`{"\"":1,"#":2}`, `{"#":2,"\"":1}`},
		{`[{"y":{"d":[],"c":{}},"x":true}]`, `[{"x":true,"y":{"c":{},"d":[]}}]`},
		{"\"\\u0000\\u001f\\t\"", "\"\\u0000\\u001F\\u0009\""},
		{`{"a":1,"\u0061":2}`, `{"a":2}`},
		{`1e99999999999`, `"\ud83d"`},
		{`100`, `1e2`},
		{`-12.5e-3`, `-0.0125`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ca, va, okA := checkOne(t, []byte(a))
		cb, vb, okB := checkOne(t, []byte(b))
		if !okA || !okB {
			return
		}
		same, skip := oracleSame(va, vb)
		if skip {
			return
		}
		if eq := bytes.Equal(ca, cb); eq != same {
			t.Fatalf("%q -> %q, %q -> %q: canonical equal %v, oracle same value %v", a, ca, b, cb, eq, same)
		}
	})
}

// ---- Benchmarks. ----

const benchSmall = `{"input":[5.1,3.5,1.4,0.2]}`

// benchRealistic is about 1 KiB: 20 members of numbers, strings and a
// nested array, keys not sorted, as a client would send them.
const benchRealistic = `{
  "model": "iris-classifier-v3",
  "request_id": "7f9c2a1e-4b6d-4e0f-9a51-3c2d8e7b6a10",
  "temperature": 0.7,
  "top_p": 0.95,
  "max_tokens": 256,
  "seed": 12345678901234567,
  "stream": false,
  "user": "customer-4821",
  "prompt": "Classify the following flower measurements (sepal length, sepal width, petal length, petal width, in centimetres) into one of the three species listed below, then explain the result briefly in the requested locale. Keep the explanation under fifty words and do not repeat the input values.",
  "stop": ["\n\n", "###"],
  "features": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [4.9, 3.1, 1.5, 0.1]],
  "weights": [0.25, 0.25, 0.25, 0.25],
  "threshold": 1.5e-3,
  "labels": ["setosa", "versicolor", "virginica"],
  "locale": "fr-FR",
  "note": "caf\u00e9 cr\u00e8me, \"quoted\"",
  "priority": 3,
  "metadata": {"source": "batch-job", "attempt": 1, "tags": ["nightly", "eu-west"], "trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
  "timeout_ms": 1500,
  "echo": null
}`

func BenchmarkCanonical(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"small", benchSmall},
		{"realistic_1KiB", benchRealistic},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			dst := make([]byte, 0, 2*len(body))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				out, ok := Canonical(dst[:0], body)
				if !ok {
					b.Fatal("refused")
				}
				dst = out
			}
		})
	}
}

func BenchmarkBodyDigest(b *testing.B) {
	for _, ct := range []string{"application/json", "text/plain"} {
		b.Run(strings.ReplaceAll(ct, "/", "_"), func(b *testing.B) {
			ct, body := []byte(ct), []byte(benchSmall)
			b.ReportAllocs()
			for b.Loop() {
				BodyDigest(ct, body)
			}
		})
	}
}

// TestNoAllocs holds Canonical and BodyDigest to their promise of no
// allocations per call for typical bodies once the pools are warm.
func TestNoAllocs(t *testing.T) {
	if poolIsLossy() {
		t.Skip("sync.Pool drops items on purpose here (race detector)")
	}
	dst := make([]byte, 0, 4096)
	small, realistic := []byte(benchSmall), []byte(benchRealistic)
	jsonType, textType := []byte("application/json"), []byte("text/plain")
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Canonical small", func() { Canonical(dst[:0], small) }},
		{"Canonical realistic", func() { Canonical(dst[:0], realistic) }},
		{"BodyDigest json", func() { BodyDigest(jsonType, realistic) }},
		{"BodyDigest raw", func() { BodyDigest(textType, realistic) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn() // warm the pools
			if n := testing.AllocsPerRun(100, tc.fn); n > 0 {
				t.Errorf("%v allocations per call; want 0", n)
			}
		})
	}
}

// poolIsLossy reports whether sync.Pool drops items put into it even
// without a GC, as it does at random under the race detector, which would
// make the allocation counts meaningless.
func poolIsLossy() bool {
	news := 0
	p := sync.Pool{New: func() any { news++; return new(int) }}
	for range 100 {
		p.Put(p.Get())
	}
	return news > 1
}

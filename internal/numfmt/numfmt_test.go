package numfmt

import "testing"

func TestFormats(t *testing.T) {
	x, y := 0.25, 1.5
	for _, c := range []struct{ got, want string }{
		{Percent(&x), "25.00%"}, {Percent(nil), "-"}, {Millis(&y), "1.500"}, {Millis(nil), "-"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

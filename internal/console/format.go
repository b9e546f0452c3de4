package console

import (
	"strconv"
	"time"
)

// dash stands for a number that is unknown: a share of nothing, a
// quantile of no requests.
const dash = "–"

// percent is a fraction as a percentage with the given decimals: 0.9, 1
// -> "90.0%".
func percent(x *float64, decimals int) string {
	if x == nil {
		return dash
	}
	return strconv.FormatFloat(*x*100, 'f', decimals, 64) + "%"
}

// decimal is x with the given decimals.
func decimal(x *float64, decimals int) string {
	if x == nil {
		return dash
	}
	return strconv.FormatFloat(*x, 'f', decimals, 64)
}

// millis is seconds as milliseconds with two decimals: 0.0123 -> "12.30".
func millis(seconds *float64) string {
	if seconds == nil {
		return dash
	}
	return strconv.FormatFloat(*seconds*1e3, 'f', 2, 64)
}

// count is a whole number.
func count(n int64) string { return strconv.FormatInt(n, 10) }

// clock is a moment as the console shows it: UTC to the second; dash for
// none.
func clock(t *time.Time) string {
	if t == nil || t.IsZero() {
		return dash
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// yesNo is a flag as a cell's text.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

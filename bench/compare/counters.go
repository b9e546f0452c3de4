package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// featureMetrics are the gateway's counters that show its features did
// their work in a cell: the split's variants, the rate limit's decisions,
// the shadow's outcomes, the cache's hits; and the Go runtime's, for
// what a mode costs in garbage (bytes allocated, collections run).
var featureMetrics = []string{
	"sluice_requests_total",
	"sluice_ratelimit_decisions_total",
	"sluice_shadow_requests_total",
	"sluice_cache_requests_total",
	"go_memstats_alloc_bytes_total",
	"go_gc_duration_seconds_count",
}

// parseCounters keeps the featureMetrics series of a Prometheus text
// exposition, keyed by the series as written (`name{label="v",...}`).
func parseCounters(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series := line[:i]
		name, _, _ := strings.Cut(series, "{")
		if !slices.Contains(featureMetrics, name) {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	return out
}

// sumCounters adds the series of metric name whose label key has value
// (any value when key is "").
func sumCounters(counters map[string]float64, name, key, value string) float64 {
	var total float64
	for series, v := range counters {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		if key == "" || labelValue(strings.TrimSuffix(labels, "}"), key) == value {
			total += v
		}
	}
	return total
}

// labelValue reads one label of `a="x",b="y"` (the gateway's label values
// hold no commas or quotes).
func labelValue(labels, key string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == key {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// featureChecks says, from a cell's counters, whether the mode's features
// ran as configured: a warning when they did not, and a short summary.
func featureChecks(target string, counters map[string]float64) (summary string, warnings []string) {
	requests := sumCounters(counters, "sluice_requests_total", "", "")
	if requests == 0 {
		return "", nil
	}
	pct := func(part, whole float64) float64 {
		if whole == 0 {
			return 0
		}
		return 100 * part / whole
	}
	mirrored := sumCounters(counters, "sluice_shadow_requests_total", "", "")
	dropped := sumCounters(counters, "sluice_shadow_requests_total", "outcome", "dropped")
	matched := sumCounters(counters, "sluice_shadow_requests_total", "outcome", "matched")
	switch target {
	case "sluice-full":
		b := sumCounters(counters, "sluice_requests_total", "variant", "b")
		limited := sumCounters(counters, "sluice_ratelimit_decisions_total", "decision", "limited")
		summary = fmt.Sprintf("variant b %.1f%%, rate-limited %.0f, mirrored %.1f%% (dropped %.1f%% of those)",
			pct(b, requests), limited, pct(mirrored, requests), pct(dropped, mirrored))
		if limited > 0 {
			warnings = append(warnings, fmt.Sprintf("the rate limit refused %.0f requests", limited))
		}
		if mirrored == 0 {
			warnings = append(warnings, "nothing was mirrored")
		} else if other := mirrored - matched - dropped; other > 0 {
			warnings = append(warnings, fmt.Sprintf("%.0f mirrored requests neither matched nor were dropped", other))
		}
	case "sluice-cached":
		hits := sumCounters(counters, "sluice_cache_requests_total", "result", "hit")
		summary = fmt.Sprintf("cache hits %.2f%%", pct(hits, requests))
		if pct(hits, requests) < 99 {
			warnings = append(warnings, fmt.Sprintf("only %.1f%% of requests were cache hits", pct(hits, requests)))
		}
	case "sluice-shadow-slow", "sluice-shadow-fast":
		summary = fmt.Sprintf("mirrored %.1f%% (dropped %.1f%% of those)", pct(mirrored, requests), pct(dropped, mirrored))
		// Since the gateway started: the warm-up and the run together.
		if alloc := sumCounters(counters, "go_memstats_alloc_bytes_total", "", ""); alloc > 0 {
			summary += fmt.Sprintf(", %.0f bytes allocated per request, %.0f collections",
				alloc/requests, sumCounters(counters, "go_gc_duration_seconds_count", "", ""))
		}
		if mirrored == 0 {
			warnings = append(warnings, "nothing was mirrored")
		}
	}
	return summary, warnings
}

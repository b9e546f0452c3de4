package limits

import "sync/atomic"

// Concurrency counts a route's requests in progress, to cap them
// (max_in_flight). The cap is the caller's, so that a reload can change it
// while the count goes on.
type Concurrency struct {
	n atomic.Int64
}

// Acquire counts one more request unless that would pass max; a request
// acquired must Release.
func (c *Concurrency) Acquire(max int64) bool {
	if c.n.Add(1) > max {
		c.n.Add(-1)
		return false
	}
	return true
}

// Release ends a request Acquire counted.
func (c *Concurrency) Release() { c.n.Add(-1) }

// InFlight is the number of requests counted now.
func (c *Concurrency) InFlight() int64 { return c.n.Load() }

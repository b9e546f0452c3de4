//go:build race

package proxy

// raceEnabled: the race detector is on, which changes what allocates
// (sync.Pool drops some of what it is given).
const raceEnabled = true

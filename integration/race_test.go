//go:build race

package integration

// raceEnabled builds the server under test with the race detector when the
// tests themselves run with it.
const raceEnabled = true

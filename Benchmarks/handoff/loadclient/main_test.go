package main

import "testing"

// Every value falls in the bin whose bounds enclose it, and bins are at most ≈3 % wide.
func TestBins(t *testing.T) {
	for v := uint64(0); v < 1<<27; v += 1 + v/97 {
		i := binOf(v)
		if lo, hi := binLow(i), binLow(i+1); v < lo || (i+1 < nBins && v >= hi) {
			t.Fatalf("value %d in bin %d [%d, %d)", v, i, lo, hi)
		}
		if lo, hi := binLow(i), binLow(i+1); lo >= 64 && float64(hi-lo)/float64(lo) > 1.0/32+1e-9 {
			t.Fatalf("bin %d [%d, %d) too wide", i, lo, hi)
		}
	}
}

func TestFindPid(t *testing.T) {
	for body, want := range map[string]int64{
		`{"message":"hi","ver":"1","pid":1234}`: 1234,
		`{"pid" : 7, "x":1}`:                    7,
		`{"message":"no"}`:                      0,
	} {
		if got := findPid([]byte(body)); got != want {
			t.Errorf("findPid(%s) = %d, want %d", body, got, want)
		}
	}
}

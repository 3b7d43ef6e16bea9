package sim

import (
	"math"
	"math/rand/v2"
)

// poisson draws a Poisson count of mean lambda. Small means multiply
// uniforms (Knuth), in time proportional to the mean; from 10 on it uses
// Hörmann's transformed rejection with squeeze (PTRS, 1993), in constant
// time, since a step at 20,000 req/s has a mean of 1,000.
func poisson(r *rand.Rand, lambda float64) int64 {
	switch {
	case lambda <= 0:
		return 0
	case lambda < 10:
		limit := math.Exp(-lambda)
		var k int64
		for p := r.Float64(); p > limit; p *= r.Float64() {
			k++
		}
		return k
	}
	sl := math.Sqrt(lambda)
	ll := math.Log(lambda)
	b := 0.931 + 2.53*sl
	a := -0.059 + 0.02483*b
	inva := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + lambda + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || us < 0.013 && v > us {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(inva)-math.Log(a/(us*us)+b) <= -lambda+k*ll-lg {
			return int64(k)
		}
	}
}
